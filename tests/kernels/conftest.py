"""The kernel tests run the Triton kernels on the CPU through Triton's interpreter. ``triton.jit`` decides
between compiled and interpreted functions when a kernel is defined, so the variable must be set before
:mod:`patsearch.kernels._triton` is first imported (the ops import it lazily, on the first kernel call)."""
import os
import sys

import pytest

os.environ["TRITON_INTERPRET"] = "1"

try:
    import triton  # noqa: F401
except ImportError:  # a CPU-only torch build: the kernels are never used there, so not tested either
    collect_ignore_glob = ["test_*.py"]


def pytest_report_header(config):
    return None if "triton" in sys.modules else "tests/kernels not collected: Triton is not installed"


@pytest.fixture(scope="session", autouse=True)
def _interpreted_kernels():
    if "patsearch.kernels._triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.fail("patsearch.kernels._triton was imported before TRITON_INTERPRET=1 was set")
    from triton.runtime.interpreter import InterpretedFunction

    from patsearch.kernels import _triton
    assert isinstance(_triton._stats_fwd_kernel, InterpretedFunction), "Triton kernels are not interpreted"
    yield
