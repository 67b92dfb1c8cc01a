"""Shared helpers: a tiny space, a fake layer factory (fast, counts calls) and a minimal timing budget."""
import pytest

from profiler_helpers import QUICK, CountingFactory


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
