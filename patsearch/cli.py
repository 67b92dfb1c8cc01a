"""The `patsearch` command: a thin typer front end over the patsearch library.

Commands parse options, call one library function and print its result. Library imports happen inside the
commands so that `patsearch --help` starts fast and a host that only profiles never imports the search stack.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer

from patsearch import flags

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Hardware-aware architecture search and profiling for PATNet.")


def _print_version(value: bool) -> None:
    if value:
        from patsearch.version import describe

        typer.echo(describe())
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Results, warnings and errors only: no notes or "
                                                            "progress."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also debug lines."),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version (and the git commit in a checkout) and exit."),
) -> None:
    """Notes and progress go to stderr through the library's loggers; results to stdout."""
    import logging

    from patsearch import log

    if quiet and verbose:
        from patsearch.errors import UserError

        raise UserError("--quiet and --verbose contradict each other; pass one of them")
    ctx.call_on_close(log.configure(log.QUIET if quiet else log.VERBOSE if verbose else log.DEFAULT))
    if verbose:
        from patsearch.version import describe

        logging.getLogger("patsearch.cli").debug("%s, python %s, command: %s", describe(), sys.version.split()[0],
                                                 " ".join(sys.argv[1:]))


def console():
    """A rich console that keeps tables readable when output is piped (rich assumes 80 columns there)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


@app.command()
def models(resolution: int = typer.Option(224, help="Input resolution for the FLOP counts."),
           ablations: bool = typer.Option(False, "--ablations", help="Also PATNet-T2's ablations (Tables 3, 4, "
                                          "5, 10) next to the paper's figures.")) -> None:
    """Table of the registered PATNet variants: params, FLOPs (trained and fused), depths, widths."""
    from rich.console import Console
    from rich.progress import track as rich_track

    from patsearch.reporting import ablations_table, variants_table

    status = Console(stderr=True)  # the bar goes to stderr and vanishes: stdout keeps only the tables

    def track(items, description):
        if not status.is_terminal:  # a live bar shows nothing in a pipe or log (it would leave a blank line)
            return items
        return rich_track(items, description=description, console=status, transient=True)

    console().print(variants_table(resolution=resolution, track=track))
    if ablations:
        console().print(ablations_table(resolution=resolution, track=track))


@app.command()
def info(
    arch: str = typer.Option(..., "--arch", help="Variant name (patnet_t2) or architecture YAML path."),
    resolution: int = typer.Option(224, help="Input resolution (multiple of 32)."),
    num_classes: int | None = typer.Option(None, help="Override the number of classes."),
) -> None:
    """One architecture's parameter and FLOP counts (fvcore, thop cross-check) with a per-stage breakdown."""
    from patsearch.reporting import arch_report

    console().print(arch_report(arch, resolution=resolution, num_classes=num_classes))


@app.command()
def export(
    ctx: typer.Context,
    arch: str | None = typer.Option(None, "--arch", help="Variant name or architecture YAML path; required unless "
                                                         "--options gives it."),
    onnx: Path | None = typer.Option(None, "--onnx", help="Output .onnx file; required unless --options gives "
                                                         "it."),
    options: Path | None = flags.options_file("ExportOptions"),
    checkpoint: Path | None = typer.Option(None, help="Trained checkpoint (from `patsearch train`)."),
    resolution: int = typer.Option(224, help="Input resolution of the exported graph."),
    opset: int = typer.Option(18, help="ONNX opset: 18 or newer (torch's dynamo exporter), or 17 (the deprecated "
                                       "TorchScript exporter)."),
    num_classes: int | None = typer.Option(None, help="Override the number of classes."),
) -> None:
    """Export the fused (deployment) model to ONNX."""
    from patsearch.errors import UserError
    from patsearch.export import ExportOptions, export_onnx

    for name, value in (("arch", arch), ("onnx", onnx)):
        if value is None and options is None:
            raise UserError(f"--{name} is required (or an --options file that sets {name})")
    values = dict(arch=arch, onnx=onnx, checkpoint=checkpoint, resolution=resolution, opset=opset,
                  num_classes=num_classes)
    out = export_onnx(ExportOptions.from_flags(values, file=options, given=_given_flags(ctx)))
    typer.echo(f"wrote {out}")


def _exit_interrupted(exc: KeyboardInterrupt, what: str) -> NoReturn:
    """One line saying how the job was stopped (Ctrl-C or SIGTERM) and ``what`` is left, and the shell's exit code
    for that stop."""
    from patsearch.termination import Terminated

    stopped = isinstance(exc, Terminated)
    typer.echo(f"{'stopped by SIGTERM' if stopped else 'interrupted'}: {what}", err=True)
    raise typer.Exit(Terminated.exit_code if stopped else 130) from None


def _given_flags(ctx: typer.Context) -> set[str]:
    """The command's parameters set on the command line (or by environment), not left at their defaults."""
    # by name: typer may vendor its own click, whose ParameterSource is another enum than click's
    return {name for name in ctx.params
            if getattr(ctx.get_parameter_source(name), "name", None) in ("COMMANDLINE", "ENVIRONMENT")}


@app.command()
def train(
    ctx: typer.Context,
    arch: str | None = typer.Option(None, "--arch", help="Variant (patnet_t2), architecture YAML (a search's "
                                                         "best.yaml) or timm peer (fasternet_t2); required unless "
                                                         "--options gives it."),
    options: Path | None = flags.options_file("TrainOptions"),
    data: Path | None = typer.Option(None, help="ImageNet-style folder (train/ and val/ of class folders); "
                                                   "default: the built-in synthetic set."),
    recipe: str = typer.Option("auto", help="Recipe name (patnet_t0..patnet_l, proxy) or YAML path; auto = the "
                                            "one that fits --arch."),
    epochs: int | None = typer.Option(None, help="Override the recipe's epochs (warm-up keeps its fraction)."),
    batch_size: int = typer.Option(256, help="Global batch size (split across processes)."),
    lr: float | None = typer.Option(None, help="Peak learning rate; default: the recipe's, scaled linearly from "
                                                  "its batch to --batch-size."),
    resolution: int | None = typer.Option(None, help="Train and test at this size (turns multi-scale off)."),
    multi_scale: str | None = typer.Option(None, help="none | random (Table 7) | schedule (192 then 224)."),
    out: Path | None = typer.Option(None, help="Run folder for checkpoints, metrics and TensorBoard "
                                                  "(default runs/<arch>)."),
    resume: str | None = typer.Option(None, help="'auto' (latest.pt in --out if present) or a checkpoint."),
    device: flags.TorchDevice = "auto",
    workers: int | None = typer.Option(None, help="Data loader processes per GPU process."),
    seed: int = typer.Option(0, help="Seed of the initial weights, data order, augmentation and synthetic set; "
                                      "--resume needs the run's own."),
    amp: bool | None = typer.Option(None, "--amp/--no-amp", help="Mixed precision (default: the recipe's)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model."),
    compile_option: list[str] = typer.Option([], "--compile-option", metavar="KEY=VALUE",
                                             help="An Inductor option for --compile (repeatable), e.g. "
                                                  "max_autotune=true. On CUDA, combo_kernels=true is added "
                                                  "unless set (3-4% faster PATNet-T0/T2 steps on an H200); "
                                                  "combo_kernels=false turns it off."),
    cuda_graph: bool = typer.Option(False, "--cuda-graph", help="Replay each training step from one CUDA graph "
                                                                "(GPU, one resolution, one process); with "
                                                                "--compile, the fastest GPU step."),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last",
                                       help="Channels-last (NHWC) memory layout, faster on GPUs."),
    fused_kernels: bool = typer.Option(False, "--fused-kernels", help="PATNet's Gaussian SE, gated BNs and PAT_sp "
                                                                      "gates as fused ops (Triton kernels on GPUs; "
                                                                      "the same function); pays only with "
                                                                      "--cuda-graph and no --compile."),
    sync_bn: bool = typer.Option(False, "--sync-bn", help="SyncBatchNorm under DDP (GPUs)."),
    checkpoint_every: int = typer.Option(0, help="Also save latest.pt every N steps (0: at epoch ends only)."),
    max_steps: int | None = typer.Option(None, help="Stop after this many optimiser steps."),
    eval_every: int = typer.Option(1, help="Evaluate every N epochs (and after the last)."),
    profile_steps: int = typer.Option(0, help="Write a torch.profiler trace of N steps to OUT/profile."),
    cache: str = typer.Option("auto", help="auto | memory | none: decode small images into memory once."),
    data_loader: str = typer.Option("auto", help="files (timm's pipeline in loader processes) | device (the set "
                                                 "decoded once into uint8 tensors on the GPU and augmented there: "
                                                 "sets that fit, several GPUs) | auto (device for the proxy "
                                                 "recipe, else files)."),
    synthetic_train: int = typer.Option(10_000, help="Synthetic set: training images."),
    synthetic_val: int = typer.Option(2_000, help="Synthetic set: validation images."),
    deterministic: bool = typer.Option(False, "--deterministic", help="Deterministic algorithms (slower)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="A live bar with ETA on a terminal, a "
                                                                         "plain line every 30 s elsewhere; "
                                                                         "--no-progress prints only the result."),
) -> None:
    """Train a network with the paper's recipe (DDP under torchrun; exact resume with --resume auto)."""
    import json

    from patsearch.errors import UserError
    from patsearch.train import Trainer, TrainOptions

    if arch is None and options is None:
        raise UserError("--arch is required (or an --options file that sets arch)")
    flags = dict(arch=arch, recipe=recipe, data=data, out=out, epochs=epochs, batch_size=batch_size, lr=lr,
                 resolution=resolution, multi_scale=multi_scale, amp=amp, device=device, workers=workers,
                 cache=cache, data_loader=data_loader, synthetic_train=synthetic_train, synthetic_val=synthetic_val,
                 seed=seed, resume=resume, checkpoint_every=checkpoint_every, max_steps=max_steps,
                 eval_every=eval_every, channels_last=channels_last, compile=compile, compile_option=compile_option,
                 cuda_graph=cuda_graph, fused_kernels=fused_kernels, sync_bn=sync_bn, deterministic=deterministic,
                 profile_steps=profile_steps, progress=progress)
    opts = TrainOptions.from_flags(flags, file=options, given=_given_flags(ctx)).with_run_folders()
    from patsearch.termination import sigterm_as_interrupt
    from patsearch.train.checkpoint import LATEST

    try:  # a scheduler's stop or `timeout` ends the run like Ctrl-C, between writes: no half-written file is left
        with sigterm_as_interrupt():
            result = Trainer(opts).fit()
    except KeyboardInterrupt as exc:
        latest = Path(opts.out_dir) / LATEST if opts.out_dir else None
        where = (f"{latest} holds the last checkpoint; rerun the same command with --resume auto to continue"
                 if latest is not None and latest.exists() else "no checkpoint was written yet")
        _exit_interrupted(exc, where)
    if result["is_main"]:  # under torchrun only rank 0 prints
        final = result["final"]
        typer.echo(json.dumps({"best_top1": result["best_top1"], "final": final, "out_dir": result["out_dir"]}))


@app.command(name="eval")
def evaluate(
    ctx: typer.Context,
    checkpoint: Path | None = typer.Option(None, help="Checkpoint written by `patsearch train` (best.pt / "
                                                      "latest.pt); required unless --options gives it."),
    options: Path | None = flags.options_file("EvalOptions"),
    arch: str | None = typer.Option(None, "--arch", help="Architecture (default: the one in the checkpoint)."),
    data: Path | None = typer.Option(None, help="ImageNet-style folder (its val/ or test/ split); default: the "
                                                   "built-in synthetic set."),
    resolution: int | None = typer.Option(None, help="Test resolution (default: the recipe's)."),
    batch_size: int = typer.Option(256, help="Images per evaluation batch (accuracy does not depend on it)."),
    device: flags.TorchDevice = "auto",
    workers: int | None = typer.Option(None, help="Data loader processes (default 0: the images are read in this "
                                                     "process)."),
    fused: bool = typer.Option(False, "--fused", help="Evaluate the deployment (fused) model (= --form fused)."),
    form: str | None = typer.Option(None, "--form", help="Form of the registry to evaluate: trained (default), "
                                                        "fused, fast, slicing."),
) -> None:
    """Top-1 / top-5 of a trained checkpoint."""
    import json

    from patsearch.errors import UserError
    from patsearch.train import EvalOptions, evaluate_checkpoint

    if checkpoint is None and options is None:
        raise UserError("--checkpoint is required (or an --options file that sets checkpoint)")
    values = dict(checkpoint=checkpoint, arch=arch, data=data, resolution=resolution, batch_size=batch_size,
                  device=device, workers=workers, fused=fused, form=form)
    opts = EvalOptions.from_flags(values, file=options, given=_given_flags(ctx))
    typer.echo(json.dumps(evaluate_checkpoint(opts)))


@app.command()
@flags.PROTOCOL
def profile(
    ctx: typer.Context,
    device: str | None = typer.Option(None, "--device", help="epyc | cpu | v100 | mi250 | h100 | h200 | cuda "
                                                             "(required unless --options gives it)."),
    options: Path | None = flags.options_file("ProfileOptions"),
    space: str | None = typer.Option(None, help="Search-space YAML or name in spaces/ (default: patnet)."),
    out: Path | None = typer.Option(None, help="Profile JSON (default: <device>-<protocol>.json in the user's "
                                                  "profile folder, $PATSEARCH_HOME/profiles or "
                                                  "~/.local/share/patsearch/profiles)."),
    protocol: dict | None = None,  # flags.PROTOCOL
    validate: int = typer.Option(0, help="Measure N held-out random architectures end to end; report fidelity "
                                         "(with --adapt: default 8)."),
    calibrate: int | None = typer.Option(None, help="Random architectures used to fit the calibration (with "
                                                       "--validate; default 40, with --adapt 14)."),
    adapt: bool = typer.Option(False, "--adapt", help="No layer table: adapt the nearest measured table to this "
                                                      "device from 14 + 8 networks measured here (CPU: about a minute "
                                                      "on an idle core, 3-4 beside other work)."),
    adapt_from: str | None = typer.Option(None, help="With --adapt: the table to adapt (device name or JSON; "
                                                        "default: the nearest one)."),
    seed: int = typer.Option(0, help="Seed of the validation samples."),
    trace: Path | None = typer.Option(None, help="Write torch.profiler traces of representative layers here."),
    plot: Path | None = typer.Option(None, help="Fidelity scatter PNG (default: next to the profile)."),
    fresh: bool = typer.Option(False, "--fresh", help="Start a new table instead of resuming the existing one."),
    passes: int = typer.Option(1, help="Measure every layer in this many separate passes and average them "
                                       "(shared or noisy hosts)."),
    refit: bool = typer.Option(False, "--refit", help="Measure nothing: refit the calibration and fidelity report "
                               "from the networks the profile (--out, or the device's) already holds (any host)."),
    partial: bool = typer.Option(False, "--partial", help="With --refit: score a validation that was cut short "
                                                          "over the networks it measured (the report lists the rest)."),
) -> None:
    """Measure the search space's layers on a device into a lookup table (resumable), then validate it."""
    import time

    from patsearch.errors import UserError
    from patsearch.profiler import ProfileOptions, build_profile
    from patsearch.profiler.run import refit_profile

    if device is None and options is None:
        raise UserError("--device is required (or an --options file that sets device)")
    values = dict(device=device, space=space, out=out, **protocol, validate=validate, calibrate=calibrate, seed=seed,
                  trace=trace, plot=plot, fresh=fresh, passes=passes, adapt=adapt, adapt_from=adapt_from, refit=refit,
                  partial=partial)
    opts = ProfileOptions.from_flags(values, file=options, given=_given_flags(ctx))
    if opts.refit:
        import json

        prof, report, calibrate = refit_profile(opts)
        missing = report.get("missing_networks") or []
        typer.echo(f"refit {prof.path}: {calibrate} calibration + {opts.validate} "
                   f"evaluation networks, seed {opts.seed}"
                   + (f"; {len(missing)} not measured, scored over the rest" if missing else ""))
        typer.echo(json.dumps({k: report[k] for k in ("calibration_model", "raw_sum", "calibrated") if k in report}))
        return
    started = time.perf_counter()
    result = build_profile(opts)
    summary = result.summary()
    what = (f"adapted from {result.provenance['adapted']['from']}" if result.provenance.get("adapted") else
            f"layer table measured in {result.provenance.get('build_seconds')} s over all runs")
    typer.echo(f"wrote {summary['path']}: {summary['entries']} layers, {summary['networks']} networks, "
               f"{summary['hardware']}, protocol {summary['protocol']}, {what}; "
               f"this command took {time.perf_counter() - started:.0f} s in all")
    from patsearch.profiler.validate import fidelity_lines, host_line

    for line in (fidelity_lines(result.fidelity) if result.fidelity else []) + [host_line(result.provenance)]:
        if line:
            typer.echo(line)


@app.command()
@flags.PROTOCOL.but("form")
def bench(
    ctx: typer.Context,
    device: str | None = typer.Option(None, "--device", help="epyc | cpu | v100 | mi250 | h100 | h200 | cuda "
                                                             "(required unless --options gives it)."),
    options: Path | None = flags.options_file("BenchOptions"),
    models: str | None = typer.Option(None, help="Comma-separated models (default: PATNet T0-L, FasterNet "
                                                    "T0-L and the paper's timm peers)."),
    arch: Path | None = typer.Option(None, "--arch", help="One architecture file to measure instead of --models; a "
                                                          "search's best.yaml gets the measurement recorded in it "
                                                          "(search.measured), next to the prediction."),
    forms: str = typer.Option("trained,fused", help="Forms to measure: trained, fused, fast (the fast inference "
                                                   "path; FasterNet gets the same generic tricks), slicing "
                                                   "(FasterNet's eager inference mode), comma-separated."),
    resolution: int = typer.Option(224, help="Input resolution."),
    protocol: dict | None = None,  # flags.PROTOCOL
    group: int = typer.Option(4, help="Models measured interleaved in one group."),
    rounds: int = typer.Option(1, help="Time each group this many times over; a row is the median of its rounds "
                                       "(steadier on a shared or noisy host)."),
    format: str = typer.Option("md", "--format", help="md | csv | json."),
    out: Path | None = typer.Option(None, help="Also write the table here (format from the suffix)."),
) -> None:
    """Table 1 style benchmark: params, FLOPs and throughput/latency of PATNet and peers, side by side."""
    from patsearch.errors import UserError
    from patsearch.profiler import BenchOptions, build_bench
    from patsearch.profiler.bench import write_result

    if device is None and options is None:
        raise UserError("--device is required (or an --options file that sets device)")
    values = dict(device=device, models=models, arch=arch, forms=forms, resolution=resolution, **protocol, group=group,
                  rounds=rounds, format=format, out=out)
    opts = BenchOptions.from_flags(values, file=options, given=_given_flags(ctx))
    result = build_bench(opts)
    typer.echo(result.render(opts.format))
    if opts.out is not None:
        typer.echo(f"wrote {write_result(result, opts.out)}")
    if opts.arch is not None:
        from patsearch.search.best_yaml import record_measured

        if record_measured(opts.arch, result) is not None:
            typer.echo(f"recorded the measurement in {opts.arch} (search.measured)")

_BUDGETS, _PROXY, _STUDY, _WORKERS, _RESULTS = flags.BUDGETS, flags.PROXY, flags.STUDY, flags.WORKERS, flags.RESULTS
_NETWORKS, _REFERENCE, _RUN = flags.NETWORKS, flags.REFERENCE, flags.RUN


@app.command()
@flags.TABLES
@flags.PROXY_SETTINGS
@flags.GPU_WORKERS
def search(
    ctx: typer.Context,
    options: Path | None = flags.options_file("SearchOptions", _STUDY),
    latency_budget: list[str] | None = typer.Option(
        None, "--latency-budget", metavar="BUDGET", rich_help_panel=_BUDGETS,
        help="35ms, 0.035s, 35000us; DEVICE=35ms for another device's table; DEVICE=patnet_t1: that network's "
             "prediction there. Repeatable."),
    min_throughput: list[str] | None = typer.Option(
        None, "--min-throughput", metavar="FLOOR", rich_help_panel=_BUDGETS,
        help="Throughput floor: h100=4000fps, or h200=fasternet_t2 (its prediction). Repeatable."),
    tables: dict | None = None,  # flags.TABLES
    proxy: dict | None = None,  # flags.PROXY_SETTINGS
    trials: int = typer.Option(8, rich_help_panel=_STUDY,
                               help="Distinct candidates to train, baselines included (infeasible ones are not "
                                    "counted); a rerun completes the study to this count."),
    timeout: float | None = typer.Option(None, rich_help_panel=_STUDY,
                                         help="Start no new trial after this many seconds."),
    seed: int = typer.Option(0, rich_help_panel=_STUDY, help="Sampler and proxy-training seed."),
    objective: str = typer.Option("single", rich_help_panel=_STUDY,
                                  help="single (top-1 under the constraints) | pareto (top-1 vs the first "
                                       "constraint)."),
    sampler: str = typer.Option("tpe", rich_help_panel=_STUDY, help="tpe | nsga2 | gp | random."),
    pruner: str = typer.Option("median", rich_help_panel=_STUDY,
                               help="median | hyperband | none (Pareto studies are never pruned)."),
    baselines: str = typer.Option("auto", rich_help_panel=_STUDY,
                                  help="Hand designs enqueued first: auto (PATNet variants and FasterNet points "
                                       "within the constraints), none, or names (patnet_t1,fasternet_t2)."),
    study_name: str | None = typer.Option(None, rich_help_panel=_STUDY,
                                          help="Default: derived from the space and budgets."),
    storage: str | None = typer.Option(None, rich_help_panel=_STUDY,
                                       help="sqlite:///f.db, journal:///f.log or postgresql://user@host/db "
                                            "(default: runs/<study>/study.db)."),
    runs_dir: Path = typer.Option(Path("runs"), rich_help_panel=_STUDY, help="Where studies and results go."),
    workers: dict | None = None,  # flags.GPU_WORKERS
    n_jobs: int = typer.Option(1, rich_help_panel=_WORKERS,
                               help="Worker threads in this process."),
    heartbeat_interval: int = typer.Option(10, rich_help_panel=_STUDY,
                                           help="Seconds between heartbeats; a trial silent for 3x this is failed "
                                                "and retried."),
    plots: bool = typer.Option(True, "--plots/--no-plots", rich_help_panel=_RESULTS,
                               help="Write PNG plots next to best.yaml."),
    show: str | None = typer.Option(None, "--show", metavar="STUDY", rich_help_panel=_RESULTS,
                                    help="Reprint the summary of an existing study and exit (writes nothing)."),
    rewrite: bool = typer.Option(False, "--rewrite", rich_help_panel=_RESULTS, help="With --show: also rewrite it."),
    fidelity: Path | None = typer.Option(None, rich_help_panel=_RESULTS,
                                         help="proxy-check report for the summary (default: a matching one in "
                                              "<runs-dir>/proxy-check/, else shipped)."),
    confirm_top: int | None = typer.Option(None, rich_help_panel=_RESULTS,
                                           help="Without rungs: retrain the best N and the baselines on more seeds "
                                                "(default: 3 on a GPU)."),
    confirm_seeds: int = typer.Option(3, rich_help_panel=_RESULTS, help="With --confirm-top: seeds per network."),
    rungs: str | None = typer.Option(None, rich_help_panel=_RESULTS,
                                     help="Epochs per rung, e.g. 5,15,45, or none (default: 1x,3x,9x the proxy's "
                                          "on a GPU, none on a CPU)."),
    rung_seeds: int = typer.Option(2, rich_help_panel=_RESULTS, help="Seeds at the last rung."),
    rung_keep: float = typer.Option(1 / 3, rich_help_panel=_RESULTS, show_default="1/3",
                                    help="Share each rung retrains."),
) -> None:
    """Optuna search of the space under latency/throughput budgets from lookup tables, scored by proxy training."""
    if show is not None:
        from patsearch.search import show_study

        show_study(show, storage=storage, runs_dir=str(runs_dir), console=console(), write=rewrite,
                   fidelity=str(fidelity) if fidelity else None)
        return
    if rewrite:
        from patsearch.errors import UserError

        raise UserError("--rewrite goes with --show STUDY (a search writes its files anyway)")
    from patsearch.search import SearchOptions, run_search

    values = dict(latency_budget=latency_budget, min_throughput=min_throughput, **tables, **proxy, trials=trials,
                  timeout=timeout, seed=seed, objective=objective, sampler=sampler, pruner=pruner,
                  baselines=baselines, study_name=study_name, storage=storage, runs_dir=runs_dir, **workers,
                  n_jobs=n_jobs, heartbeat_interval=heartbeat_interval, plots=plots,
                  fidelity=fidelity, confirm_top=confirm_top, confirm_seeds=confirm_seeds, rungs=rungs,
                  rung_seeds=rung_seeds, rung_keep=rung_keep)
    opts = SearchOptions.from_flags(values, file=options, given=_given_flags(ctx))
    from patsearch.search.api import OPTUNA_TRIAL_LOGGER
    from patsearch.termination import quiet_interruptions, sigterm_as_interrupt

    try:  # a scheduler's stop or `timeout` cleans up like Ctrl-C; Optuna's traceback of the trial is left out
        with sigterm_as_interrupt(), quiet_interruptions(OPTUNA_TRIAL_LOGGER):
            run_search(opts, console=console())
    except KeyboardInterrupt as exc:
        _exit_interrupted(exc, "every running trial is queued again; rerun the same command to resume")


@app.command(name="proxy-check")
@flags.TABLES
@flags.PROXY_SETTINGS
@flags.GPU_WORKERS
def proxy_check(
    ctx: typer.Context,
    options: Path | None = flags.options_file("FidelityOptions", _RUN),
    n: int = typer.Option(24, "--n", rich_help_panel=_NETWORKS,
                          help="Random networks within the budget, plus the named variants within it; a rerun "
                               "with a larger --n (or more seeds) grows the check."),
    budget: str = typer.Option("35ms", rich_help_panel=_NETWORKS, help="Latency budget the networks meet."),
    tables: dict | None = None,  # flags.TABLES
    variants: str = typer.Option("auto", rich_help_panel=_NETWORKS,
                                 help="Named variants to add: auto (those within budget), none, or names."),
    sample_seed: int = typer.Option(0, rich_help_panel=_NETWORKS, help="Seed of the random networks."),
    seeds: str = typer.Option("0,1", rich_help_panel=_PROXY,
                              help="Proxy seeds, comma-separated (the reference runs once: --reference-seeds)."),
    proxy: dict | None = None,  # flags.PROXY_SETTINGS
    also_proxy: list[str] = typer.Option([], rich_help_panel=_PROXY, metavar="CHANGES",
                                         help="Another proxy to measure against the same reference, as changes "
                                              "(e.g. epochs=2,resolution=64); repeatable."),
    exploratory_alternatives: bool = typer.Option(False, "--exploratory-alternatives", rich_help_panel=_PROXY,
                                                  help="Let --also-proxy train on more than 1/5 of the "
                                                       "reference's images; the report marks each."),
    reference_epochs: int | None = typer.Option(None, rich_help_panel=_REFERENCE, help="Default: 5x the proxy's."),
    reference_resolution: int | None = typer.Option(None, rich_help_panel=_REFERENCE, help="Default: 2x, up to 64."),
    reference: str | None = typer.Option(None, rich_help_panel=_REFERENCE,
                                         help="More settings as key=value pairs, e.g. train_samples=all,"
                                              "val_samples=all (the full splits)."),
    reference_seeds: int = typer.Option(1, rich_help_panel=_REFERENCE,
                                        help="Train each reference N times (seeds: the first proxy seed, +1, ...) "
                                             "and use the mean: one run's seed noise caps the tau a proxy shows."),
    workers: dict | None = None,  # flags.GPU_WORKERS
    stop_after: float | None = typer.Option(None, rich_help_panel=_RUN,
                                            help="Start no training after N seconds; a rerun continues."),
    runs_dir: Path = typer.Option(Path("runs"), rich_help_panel=_RUN,
                                  help="Where the report goes by default and folder subsets are linked."),
    out: Path | None = typer.Option(None, rich_help_panel=_RUN,
                                    help="Report JSON, its PNG and records beside it (default: in <runs-dir>)."),
    reuse_records: Path | None = typer.Option(None, rich_help_panel=_RUN,
                                              help="An earlier check's .records folder: its trainings of the same "
                                                   "network, settings and seed are copied, not retrained."),
) -> None:
    """Measure the proxy: its ranking of networks vs a 5x longer training, its seed noise, and free scores."""
    from patsearch.proxycheck import FidelityOptions, run_fidelity

    values = dict(n=n, budget=budget, **tables, variants=variants, sample_seed=sample_seed, seeds=seeds, **proxy,
                  also_proxy=also_proxy, exploratory_alternatives=exploratory_alternatives,
                  reference_epochs=reference_epochs, reference_resolution=reference_resolution, reference=reference,
                  reference_seeds=reference_seeds, **workers,
                  stop_after=stop_after, out=out, runs_dir=runs_dir, reuse_records=reuse_records)
    opts = FidelityOptions.from_flags(values, file=options, given=_given_flags(ctx))
    try:
        run_fidelity(opts, console=console())
    except KeyboardInterrupt:
        typer.echo("interrupted: finished trainings are recorded; rerun the same command to continue", err=True)
        raise typer.Exit(130) from None


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
