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
