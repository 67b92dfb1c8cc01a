"""The trained form with the fused ops (patsearch.kernels) computes what the plain form computes: outputs, every
gradient and the BN running statistics, in train and eval mode, and learns under bf16 autocast. On the CPU the
ops run their reference forms; tests/kernels checks the Triton kernels against those (and the wiring again)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from patsearch.arch import VARIANTS, ArchConfig
from patsearch.models import create_model, use_fused_kernels
from patsearch.models.channel_attention import FullChannelAttention, PartialChannelAttention
from patsearch.models.mlp import Mlp

ARCHS = {
    "patnet_t0": VARIANTS["patnet_t0"].replace(num_classes=10),
    # Every kind the fused path handles or must leave alone: full channel attention, SRM and SE gates (SE is
    # not fused), full and no spatial attention.
    "kinds": ArchConfig(embed_dim=16, depths=(1, 2, 1, 1), mixers=("pat_ch_full", "pat_ch_srm", "pat_ch_se",
                                                                   "pat_sf"),
                        spatial=("full", "partial", "none", "partial"), num_classes=10),
}


def _pair(arch: ArchConfig, dtype: torch.dtype = torch.float32) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    plain = create_model(arch).to(dtype=dtype, memory_format=torch.channels_last)
    fused = use_fused_kernels(copy.deepcopy(plain))
    return plain, fused


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(5)  # the attention's dropout draws the same masks in both forms
    out = model(x)
    nn.functional.cross_entropy(out, y).backward()
    return out.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def test_switch_reaches_every_fusable_module_and_back():
    _, fused = _pair(ARCHS["kinds"])
    kinds = (PartialChannelAttention, FullChannelAttention, Mlp)
    switched = [m for m in fused.modules() if isinstance(m, kinds)]
    assert len(switched) == 4 + 5  # an MLP per block and a channel mixer per convolutional block (not pat_sf's)
    assert sum(isinstance(m, kinds[:2]) for m in switched) == 4
    assert all(m.fused_kernels for m in switched)
    use_fused_kernels(fused, enabled=False)
    assert not any(m.fused_kernels for m in switched)


@pytest.mark.parametrize("name", list(ARCHS))
def test_fused_training_step_equals_plain(name):
    """In float64 (the ops' reference forms keep it), so that a 12-BN-deep train-mode chain on a batch of 4 tells a
    wrong formula from rounding: float32 rounding, amplified by the BNs, moves the logits by up to 1e-2; in float64
    the two forms agree to 1e-15 (logits) and 1e-9 (the stem's gradient, through every BN backward)."""
    plain, fused = _pair(ARCHS[name], torch.float64)
    torch.manual_seed(1)
    # Offset inputs: BN statistics from the gate and per-channel moments must hold when |mean| >> std too.
    x = (torch.randn(4, 3, 64, 64, dtype=torch.float64) * 0.5 + 3.0).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (4,))
    for model in (plain, fused):
        model.train()
    out_p, grads_p = _step(plain, x, y)
    out_f, grads_f = _step(fused, x, y)
    torch.testing.assert_close(out_f, out_p, rtol=1e-9, atol=1e-11)
    assert grads_f.keys() == grads_p.keys() and len(grads_p) == len(list(plain.parameters()))
    for key in grads_p:
        torch.testing.assert_close(grads_f[key], grads_p[key], rtol=1e-6, atol=1e-9, msg=key)
    buffers_p, buffers_f = dict(plain.named_buffers()), dict(fused.named_buffers())
    for key in buffers_p:  # running means and variances, batch counts
        torch.testing.assert_close(buffers_f[key], buffers_p[key], rtol=1e-9, atol=1e-12, msg=key)
    plain.eval(), fused.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(x), plain(x), rtol=1e-9, atol=1e-11)


def test_fused_modules_change_the_function_nowhere_on_one_block():
    """A single PAT_ch module on a channels-last slice, its gate's input gradient included."""
    torch.manual_seed(2)
    plain = PartialChannelAttention(24, 4).train()
    fused = copy.deepcopy(plain)
    fused.fused_kernels = True
    base = torch.randn(3, 32, 7, 5).to(memory_format=torch.channels_last)
    xs = [base[:, 4:28].clone().requires_grad_() for _ in range(2)]
    outs = [m(x) for m, x in zip((plain, fused), xs)]
    grad = torch.randn_like(outs[0])
    for o in outs:
        o.backward(grad)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xs[1].grad, xs[0].grad, rtol=1e-3, atol=5e-5)  # float32: sums over B*H*W


def test_sync_batchnorm_takes_the_plain_form():
    """A SyncBatchNorm's statistics span processes; the fused BN would silently use the local batch only."""
    torch.manual_seed(3)
    module = PartialChannelAttention(16, 4)
    module.norm = nn.SyncBatchNorm(12)
    module.fused_kernels = True
    called = []
    module.norm.register_forward_hook(lambda *_: called.append(True))
    module.eval()(torch.randn(2, 16, 5, 5))
    assert called


def test_fused_form_learns_under_bf16_autocast():
    """The recipe's precision: bf16 autocast. A small fused PATNet fits a fixed batch (loss falls by half)."""
    _, model = _pair(ARCHS["kinds"])
    torch.manual_seed(4)
    x = torch.randn(16, 3, 32, 32).to(memory_format=torch.channels_last)
    y = torch.arange(16) % 10
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(map(lambda v: v == v, losses)), losses  # no NaN
    assert losses[-1] < 0.5 * losses[0], losses
