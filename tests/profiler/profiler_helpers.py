"""Test helpers shared by the profiler tests (a module of its own: `conftest` names collide across folders)."""
import torch.nn as nn

from patsearch.profiler.timing import Budget

QUICK = Budget(warmup_s=0.0, min_samples=2, target_s=0.0, max_samples=2)


class CountingFactory:
    """Stands in for build_layer: an identity module per layer, recording which layers were built."""

    def __init__(self):
        self.built = []

    def __call__(self, spec, form):
        self.built.append(spec)
        return nn.Identity()
