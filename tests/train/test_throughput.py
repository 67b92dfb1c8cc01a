"""patsearch.train.throughput: the norm-mode diagnostic changes what a training step does to BatchNorms, and only
that."""
import pytest
import torch
import torch.nn as nn

from patsearch.errors import UserError
from patsearch.models import create_model
from patsearch.train.throughput import benchmark_step, set_norm_mode


def _bns(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def test_train_mode_leaves_every_norm_training():
    model = create_model("patnet_t0").train()
    assert set_norm_mode(model, "train") == 0
    assert all(bn.training for bn in _bns(model))


def test_frozen_norms_use_running_statistics_and_keep_affine_gradients():
    torch.manual_seed(0)
    model = create_model("patnet_t0", num_classes=10).train()
    count = set_norm_mode(model, "frozen")
    bns = _bns(model)
    assert count == len(bns) > 20  # every BatchNorm of PATNet-T0's blocks, stem and mergings
    before = [bn.running_mean.clone() for bn in bns]
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    # no batch statistics: running buffers untouched, and the affine parameters still learn
    assert all(torch.equal(b, bn.running_mean) for b, bn in zip(before, bns))
    assert all(bn.weight.grad is not None for bn in bns)
    # the rest of the network still trains: its convolutions get gradients
    assert all(m.weight.grad is not None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_fixed_norms_have_no_gradients():
    model = create_model("fasternet_t0", num_classes=10).train()
    assert set_norm_mode(model, "fixed") == len(_bns(model)) > 0
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(bn.weight.grad is None and bn.bias.grad is None and not bn.training for bn in _bns(model))


def test_benchmark_step_applies_the_mode_and_rejects_unknown_ones():
    step, x, y = benchmark_step("patnet_t0", batch_size=2, resolution=32, device="cpu", num_classes=10,
                                norms="frozen")
    assert not any(bn.training for bn in _bns(step.model))
    assert torch.isfinite(step(x, y))
    with pytest.raises(UserError, match="norms must be one of train, frozen, fixed, got 'off'"):
        benchmark_step("patnet_t0", batch_size=2, resolution=32, device="cpu", num_classes=10, norms="off")
