"""Shared helpers: a tiny space, a fake layer factory (fast, counts calls) and a minimal timing budget."""
import pytest
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


@pytest.fixture
def tiny_space():
    from patsearch.space import load_space

    return load_space("tiny")


@pytest.fixture
def counting_factory():
    return CountingFactory()


@pytest.fixture
def quick():
    return QUICK


@pytest.fixture
def factory_cls():
    return CountingFactory
