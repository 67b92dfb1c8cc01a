import warnings

import pytest
import torch

warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
