import os

# The kernel tests run Triton on the CPU through its interpreter. triton.language's own @triton.jit helpers (the
# reductions' combine functions) are defined interpreted or compiled when triton is first imported, which in a
# whole-suite run happens while other test modules are collected, before tests/kernels/conftest.py runs; so the
# switch is set here, before anything imports torch. It only changes how @triton.jit kernels run (none run on
# the CPU otherwise).
os.environ["TRITON_INTERPRET"] = "1"

import warnings

import pytest
import torch

warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def single_thread():
    """One intra-op thread: tiny models run several times faster on a busy 2-core box, and subprocesses
    (OMP_NUM_THREADS=1) then reduce in the same order as the test process, which exact-resume checks rely on."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(False)


@pytest.fixture
def run_main(monkeypatch, capsys):
    """``patsearch ARGS`` run in this process through ``cli.main``: (exit code, stdout, stderr), each stripped."""
    import sys

    import cli

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["patsearch", *args])
        with pytest.raises(SystemExit) as exc:
            cli.main()
        captured = capsys.readouterr()
        return exc.value.code, captured.out.strip(), captured.err.strip()

    return run
