"""Inductor options for ``torch.compile``: one check of their names and values, for ``patsearch train
--compile-option`` (``TrainOptions.compile_options``, passed as ``torch.compile(..., options=...)``, which scopes them
to that model) and for the benchmark scripts' ``--inductor`` (set for every model of a run).

``combo_kernels=True`` is on by default for CUDA training (:data:`CUDA_TRAIN_DEFAULTS`): it speeds up PATNet's
compiled step a little and the proxy learns as without it; ``triton.cooperative_reductions=True`` slows both
networks down several times (figures in docs/BENCHMARKS.md, "GPU speed").
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch._inductor.config as inductor_config
import yaml

EXAMPLE = "combo_kernels=true"

# What ``patsearch train --compile`` adds on CUDA unless the run sets the same name (combo_kernels=false turns it off);
# Triton's horizontal fusion has no effect on the CPU's C++ backend, so nothing is added there.
CUDA_TRAIN_DEFAULTS: Mapping[str, Any] = MappingProxyType({"combo_kernels": True})


def parse_compile_option(text: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` to ``(key, value)``; the value is a YAML scalar (``true``, ``4``, ``"max"``). A missing ``=``
    raises ``ValueError`` with a one-line message."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"a compile option is KEY=VALUE, got {text!r} (e.g. {EXAMPLE})")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key, value


def _current(key: str) -> tuple[Any, str, Any]:
    """(config object holding the leaf, leaf name, its current value) for a dotted Inductor option name."""
    *parents, leaf = key.split(".")
    target: Any = inductor_config
    for part in parents:
        target = getattr(target, part, None)
    if target is None or not hasattr(target, leaf):
        raise ValueError(f"torch._inductor.config has no option {key!r} (e.g. {EXAMPLE}; the names are in "
                         "torch/_inductor/config.py)")
    return target, leaf, getattr(target, leaf)


def check_compile_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options as a plain dict, each name an existing Inductor option and each value of its type (a bool for a
    bool option, a number for a number); anything else raises ``ValueError`` with a one-line message."""
    if not isinstance(options, Mapping):
        raise ValueError(f"compile options are a mapping of Inductor option names to values, got "
                         f"{type(options).__name__}")
    checked: dict[str, Any] = {}
    for key, value in options.items():
        if not isinstance(key, str):
            raise ValueError(f"compile option names are strings, got {key!r}")
        _, _, current = _current(key)
        if isinstance(current, bool):
            ok, wanted = isinstance(value, bool), "true or false"
        elif isinstance(current, (int, float)):
            ok, wanted = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        elif isinstance(current, str):
            ok, wanted = isinstance(value, str), "a string"
        else:  # None or a structured default: any YAML scalar
            ok, wanted = value is None or isinstance(value, (bool, int, float, str)), "a YAML scalar"
        if not ok:
            raise ValueError(f"compile option {key} takes {wanted}, got {value!r}")
        checked[key] = value
    return checked


def with_device_defaults(options: Mapping[str, Any], device_type: str) -> dict[str, Any]:
    """The options a training run compiles with on ``device_type``: :data:`CUDA_TRAIN_DEFAULTS` under the run's
    own options on ``"cuda"``, the run's options alone elsewhere."""
    return {**CUDA_TRAIN_DEFAULTS, **options} if device_type == "cuda" else dict(options)


def apply_globally(options: Mapping[str, Any]) -> dict[str, Any]:
    """Set checked options in ``torch._inductor.config`` for everything compiled afterwards in this process (the
    benchmarks give both networks of a comparison the same options this way); returns what was set."""
    checked = check_compile_options(options)
    for key, value in checked.items():
        target, leaf, _ = _current(key)
        setattr(target, leaf, value)
    return checked
