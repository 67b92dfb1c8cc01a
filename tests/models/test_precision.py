"""Mixed precision: every block computes under bf16 what it computes in float32, and learns under bf16 autocast.

Issue 10: PATNet-T0/T1 trained under bf16 autocast on an H200 stayed at chance while float32 learnt; the cause was
the partial self-attention's biased bf16 SDPA. The attention now takes its logits, bias and softmax in float32
(:func:`patsearch.models.attention.biased_attention`); these tests pin each block's bf16 error to bf16's own rounding.
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from patsearch.arch import MIXERS, ArchConfig, LayerSpec
from patsearch.models import build_layer, create_model
from patsearch.models.attention import SelfAttention, biased_attention
from patsearch.models.statistics import randomize_statistics

# bf16 keeps 8 significant bits (relative rounding 2^-9 ~ 0.2%); through a block's ~6 roundings and its 1x1
# convolutions the output error relative to the output's largest value stays around 1%. A broken path (a bias
# or softmax rounded to bf16 at large logits, a wrong cast) gives tens of percent.
BF16_TOLERANCE = 0.03
QKV_GAIN = 3.0  # logits of a few units, sharper than at init


def _rel(expected: torch.Tensor, actual: torch.Tensor) -> float:
    return ((expected.float() - actual.float()).abs().max() / expected.float().abs().max()).item()


def _block(mixer: str, dim: int = 32) -> nn.Module:
    spec = LayerSpec("block", dim, dim, mixer=mixer, spatial="partial", n_div=4, mlp_ratio=2.0, act="gelu",
                     num_heads=4)
    block = build_layer(spec)
    randomize_statistics(block, torch.Generator().manual_seed(len(mixer)))
    for m in block.modules():
        if isinstance(m, SelfAttention):
            with torch.no_grad():
                m.qkv.weight.mul_(QKV_GAIN)
                m.rel_pos.table.copy_(torch.randn(m.rel_pos.table.shape, generator=torch.Generator().manual_seed(3)))
            m.attn_drop, m.proj_drop.p = 0.0, 0.0  # the comparison needs the same function on both sides
    return block.train()


def _forward_backward(block: nn.Module, x: torch.Tensor, autocast: bool) -> tuple[torch.Tensor, ...]:
    x = x.clone().requires_grad_(True)
    block.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = block(x)
    (out.float() * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
    return out, x.grad


@pytest.mark.parametrize("size", [1, 2, 7])
@pytest.mark.parametrize("mixer", list(MIXERS))
def test_block_under_bf16_autocast_matches_float32(mixer, size):
    """Train mode (BN on batch statistics) at the 1x1 / 2x2 grids a 32 / 64 px input gives in stage 4, and 7x7."""
    block = _block(mixer)
    # Batch 16: train-mode BN over a (4, C, 1, 1) batch normalises 4 values and amplifies any rounding.
    x = torch.randn(16, 32, size, size, generator=torch.Generator().manual_seed(size))
    out32, grad32 = _forward_backward(block, x, autocast=False)
    out16, grad16 = _forward_backward(block, x, autocast=True)
    assert torch.isfinite(out16).all() and torch.isfinite(grad16).all()
    assert _rel(out32, out16) <= BF16_TOLERANCE, f"{mixer} {size}x{size}: output"
    assert _rel(grad32, grad16) <= BF16_TOLERANCE, f"{mixer} {size}x{size}: input gradient"


@pytest.mark.parametrize("mixer", list(MIXERS))
def test_bf16_module_in_eval_mode_matches_float32(mixer):
    block = _block(mixer).eval()
    x = torch.randn(2, 32, 7, 7, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = block(x)
        actual = block.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert actual.dtype == torch.bfloat16
    assert _rel(expected, actual) <= 2 * BF16_TOLERANCE


def test_attention_scores_and_softmax_are_float32_under_autocast():
    """Logits of order 100 with a bias that decides the winner: a bf16 softmax/bias (steps of 0.5 at 100) would
    pick wrongly; float32 keeps the exact answer."""
    q = torch.zeros(1, 1, 2, 4)
    q[..., 0] = 10.0
    k = torch.zeros(1, 1, 3, 4)
    k[..., 0] = 10.0
    v = torch.eye(3)[None, None]
    bias = torch.tensor([0.0, 0.1, 0.2]).expand(1, 1, 2, 3) + 100.0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = biased_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), bias)
    expected = torch.softmax(torch.tensor([0.0, 0.1, 0.2]), 0)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out[0, 0, 0].float(), expected, atol=4e-3, rtol=0)


def test_attention_matches_pytorch_sdpa_in_float64():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 9, 8, dtype=torch.float64, generator=g) for _ in range(3))
    bias = torch.randn(1, 4, 9, 9, dtype=torch.float64, generator=g)
    torch.testing.assert_close(biased_attention(q, k, v, bias).double(),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0))


def test_training_under_bf16_autocast_reduces_the_loss():
    """A few AdamW steps of a small PATNet with attention in stage 4 (and at 1x1 there: 32 px input)."""
    torch.manual_seed(0)
    model = create_model(ArchConfig(embed_dim=16, depths=(1, 1, 1, 2), num_classes=4))
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 4, (8,))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    assert losses[-1] < 0.5 * losses[0], losses
