import pytest


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Every test here runs single-threaded (tests/conftest.py says why)."""
    yield
