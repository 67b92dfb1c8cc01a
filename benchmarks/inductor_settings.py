"""``--inductor KEY=VALUE`` for the benchmark scripts: a ``torch._inductor.config`` option set for every model a run
compiles, so that both networks of a comparison get the same generic compile trick (the names and values are
checked by :mod:`patsearch.compile_options`, as ``patsearch train --compile-option`` checks them)."""
from __future__ import annotations

import argparse

from patsearch.compile_options import apply_globally, parse_compile_option


def apply_inductor_settings(pairs: list[str]) -> dict[str, object]:
    """Set ``torch._inductor.config`` options from ``KEY=VALUE`` strings (dotted keys reach sub-configs such as
    ``triton.persistent_reductions``; values are YAML scalars). Bad input exits with a one-line message."""
    try:
        return apply_globally(dict(parse_compile_option(pair) for pair in pairs))
    except ValueError as exc:
        raise SystemExit(f"--inductor: {exc}") from None


def add_inductor_argument(parser: argparse.ArgumentParser) -> None:
    """The scripts' one ``--inductor`` flag (repeatable); :func:`apply_inductor_settings` takes what it collects."""
    parser.add_argument("--inductor", action="append", default=[], metavar="KEY=VALUE",
                        help="a torch._inductor.config option for every compiled model of the run, both networks "
                             "alike (repeatable), e.g. combo_kernels=True")
