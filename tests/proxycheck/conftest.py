"""Fixtures for the proxy-check tests: the search tests' helpers (stand-in trainings, made-up tables) and the tiny
space's CPU latency table."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "search"))

from search_helpers import make_profile  # noqa: E402


@pytest.fixture(scope="session")
def tiny_profile(tmp_path_factory) -> Path:
    """A CPU latency table for every layer of the tiny space (made-up but monotone costs)."""
    from patsearch.space import load_space

    return make_profile(tmp_path_factory.mktemp("profiles") / "cpu-tiny.json", load_space("tiny"))
