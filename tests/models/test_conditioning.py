"""Training-mode conditioning per mixer: float32 computes what float64 computes (issue 10 item 1, issue 11 item 1).

A network whose train-mode forward were ill-conditioned (a variance by cancellation, a softmax over huge scores,
a normalisation over a near-constant map) would turn float32 rounding into percent-level output and gradient
errors; compiled-vs-eager comparisons would then differ for no fault of the compiler. Here each mixer runs in
train mode (batch statistics, dropout and drop-path on, the same random draws on both sides) at batch 4 and 64 px,
where stage 4 sees 2x2 maps, in float64 and in float32 from the same weights.
"""
import pytest
import torch
import torch.nn.functional as F

from patsearch.arch import ArchConfig
from patsearch.models import create_model

TOLERANCE = 1e-4

MIXERS = {
    "pconv": dict(mixers=("pconv",) * 4, spatial=("none",) * 4),
    "pat_ch": dict(mixers=("pat_ch",) * 4, spatial=("none",) * 4),
    "pat_sf": dict(mixers=("pconv", "pconv", "pconv", "pat_sf"), spatial=("none",) * 4),
    "pat_sp": dict(mixers=("pconv",) * 4, spatial=("partial",) * 4),
    "t0-like": dict(mixers=("pat_ch", "pat_ch", "pat_ch", "pat_sf"), spatial=("partial",) * 4),
}


def _step(model, x, y):
    torch.manual_seed(5)  # the same dropout and drop-path draws in both precisions (CPU generator)
    out = model(x)
    F.cross_entropy(out.double(), y).backward()
    return out.detach().double(), {n: p.grad.double() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", list(MIXERS))
def test_train_mode_float32_matches_float64(name):
    arch = ArchConfig(embed_dim=16, depths=(1, 1, 2, 2), act="gelu", drop_path_rate=0.1, num_classes=10,
                      **MIXERS[name])
    torch.manual_seed(0)
    exact = create_model(arch).double().train()
    single = create_model(arch).float().train()
    single.load_state_dict({k: v.float() for k, v in exact.state_dict().items()})
    torch.manual_seed(123)
    x, y = torch.randn(4, 3, 64, 64, dtype=torch.float64), torch.randint(0, 10, (4,))
    out64, grads64 = _step(exact, x, y)
    out32, grads32 = _step(single, x.float(), y)
    assert ((out64 - out32).abs().max() / out64.abs().max()).item() <= TOLERANCE
    assert grads64.keys() == grads32.keys()
    diff = sum(float((grads64[n] - grads32[n]).pow(2).sum()) for n in grads64)
    norm = sum(float(grads64[n].pow(2).sum()) for n in grads64)
    assert (diff / norm) ** 0.5 <= TOLERANCE
