"""The `patsearch` command: a thin typer front end over the patsearch library.

Commands parse options, call one library function and print its result. Library imports happen inside the
commands so that `patsearch --help` starts fast and a host that only profiles never imports the search stack.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Hardware-aware architecture search and profiling for PATNet.")


def console():
    """A rich console that keeps tables readable when output is piped (rich assumes 80 columns there)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


@app.command()
def models(resolution: int = typer.Option(224, help="Input resolution for the FLOP counts.")) -> None:
    """Table of the registered PATNet variants: params, FLOPs (trained and fused), depths, widths."""
    from patsearch.reporting import variants_table

    console().print(variants_table(resolution=resolution))


@app.command()
def info(
    arch: str = typer.Option(..., "--arch", help="Variant name (patnet_t2) or architecture YAML path."),
    resolution: int = typer.Option(224, help="Input resolution (multiple of 32)."),
    num_classes: Optional[int] = typer.Option(None, help="Override the number of classes."),
) -> None:
    """One architecture's parameter and FLOP counts (fvcore, thop cross-check) with a per-stage breakdown."""
    from patsearch.reporting import arch_report

    console().print(arch_report(arch, resolution=resolution, num_classes=num_classes))


@app.command()
def export(
    arch: str = typer.Option(..., "--arch", help="Variant name or architecture YAML path."),
    onnx: Path = typer.Option(..., "--onnx", help="Output .onnx file."),
    checkpoint: Optional[Path] = typer.Option(None, help="Trained checkpoint (from `patsearch train`)."),
    resolution: int = typer.Option(224, help="Input resolution of the exported graph."),
    opset: int = typer.Option(17, help="ONNX opset (17 or newer)."),
    num_classes: Optional[int] = typer.Option(None, help="Override the number of classes."),
) -> None:
    """Export the fused (deployment) model to ONNX."""
    from patsearch.export import export_onnx

    out = export_onnx(arch, onnx, checkpoint=checkpoint, resolution=resolution, opset=opset,
                      num_classes=num_classes)
    typer.echo(f"wrote {out}")


def main() -> None:
    """Entry point: run the app, turning user errors into one line on stderr and exit code 2."""
    from patsearch.errors import UserError

    try:
        app()
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
