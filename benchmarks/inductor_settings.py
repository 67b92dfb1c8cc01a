"""``--inductor KEY=VALUE`` for the benchmark scripts: a ``torch._inductor.config`` option set for every model a run
compiles, so that both networks of a comparison get the same generic compile trick."""
from __future__ import annotations

import torch._inductor.config as inductor_config
import yaml


def apply_inductor_settings(pairs: list[str]) -> dict[str, object]:
    """Set ``torch._inductor.config`` options from ``KEY=VALUE`` strings (dotted keys reach sub-configs such as
    ``triton.persistent_reductions``; values are YAML scalars). Unknown keys are an error, not a silent no-op."""
    applied: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise SystemExit(f"--inductor takes KEY=VALUE, got {pair!r} (e.g. coordinate_descent_tuning=True)")
        *parents, leaf = key.split(".")
        target = inductor_config
        for part in parents:
            target = getattr(target, part, None)
        if target is None or not hasattr(target, leaf):
            raise SystemExit(f"torch._inductor.config has no option {key!r}; see torch/_inductor/config.py")
        value = yaml.safe_load(raw)
        setattr(target, leaf, value)
        applied[key] = value
    return applied
