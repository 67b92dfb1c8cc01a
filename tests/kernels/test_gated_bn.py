"""gated_batch_norm(x, gate, *channel_stats(x), bn) is bn(x * gate): outputs, gradients of every input and
parameter, and running statistics, in train and eval mode."""
import copy

import pytest
import torch
from torch import nn

from patsearch import kernels


def _bn(c, momentum=0.1):
    bn = nn.BatchNorm2d(c, momentum=momentum).double()
    with torch.no_grad():
        bn.weight.normal_(1.0, 0.3)
        bn.bias.normal_(0.0, 0.3)
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 1.5)
    return bn


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("shape", [(4, 6, 5, 3), (3, 5, 1, 1)])
def test_equals_batch_norm_in_train_mode(shape, momentum):
    b, c = shape[:2]
    ref_bn = _bn(c, momentum).train()
    bn = copy.deepcopy(ref_bn)
    # Per-sample offsets and scales, so that the batch variance has both a within- and a between-sample part.
    base = torch.randn(shape, dtype=torch.float64) * torch.rand(b, c, 1, 1, dtype=torch.float64) * 2 + \
        torch.randn(b, c, 1, 1, dtype=torch.float64) * 3
    gate = torch.rand(b, c, dtype=torch.float64)
    grad = torch.randn(shape, dtype=torch.float64)
    results = []
    for norm, fused in ((ref_bn, False), (bn, True)):
        x = base.clone().requires_grad_()
        g = gate.clone().requires_grad_()
        for _ in range(2):  # two steps: running statistics accumulate (and momentum=None averages)
            if fused:
                with kernels.backend("reference"):
                    y = kernels.gated_batch_norm(x, g, *kernels.channel_stats(x), norm)
            else:
                y = norm(x * g[:, :, None, None])
        grads = torch.autograd.grad(y, [x, g, norm.weight, norm.bias], grad)
        results.append((y.detach(), grads, norm.running_mean.clone(), norm.running_var.clone(),
                        int(norm.num_batches_tracked)))
    (y0, g0, rm0, rv0, n0), (y1, g1, rm1, rv1, n1) = results
    torch.testing.assert_close(y1, y0, rtol=1e-10, atol=1e-10)
    for a, r in zip(g1, g0):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(rm1, rm0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rv1, rv0, rtol=1e-12, atol=1e-12)
    assert n1 == n0 == 2


def test_equals_batch_norm_in_eval_mode():
    bn = _bn(7).eval()
    x = torch.randn(3, 7, 4, 4, dtype=torch.float64)
    gate = torch.rand(3, 7, dtype=torch.float64)
    before = bn.running_mean.clone()
    with kernels.backend("reference"):
        y = kernels.gated_batch_norm(x, gate, *kernels.channel_stats(x), bn)
    torch.testing.assert_close(y, bn(x * gate[:, :, None, None]), rtol=1e-12, atol=1e-12)
    assert torch.equal(bn.running_mean, before)


def test_triton_kernels_bfloat16_with_float32_statistics():
    """bf16 activations with a large mean (|mean| >> std): with float32 statistics the folded BN equals a float32
    BatchNorm of the same bf16 values to bf16's output rounding."""
    ref_bn = _bn(6).float().train()
    bn = copy.deepcopy(ref_bn)
    x = (torch.randn(4, 6, 5, 5) * 0.5 + 40).bfloat16().contiguous(memory_format=torch.channels_last)
    gate = torch.rand(4, 6).bfloat16()
    y = kernels.gated_batch_norm(x, gate, *kernels.channel_stats(x, float32=True), bn)
    want = ref_bn(x.float() * gate.float()[:, :, None, None])
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), want, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean, rtol=1e-5, atol=1e-5)


def test_triton_kernels_float32():
    """The same identity through the (interpreted) kernels, float32, channels-last slice input."""
    ref_bn = _bn(6).float().train()
    bn = copy.deepcopy(ref_bn)
    full = (torch.randn(2, 8, 5, 5) + torch.randn(2, 8, 1, 1)).contiguous(memory_format=torch.channels_last)
    x = full[:, 2:].detach().requires_grad_()
    gate = torch.rand(2, 6, requires_grad=True)
    y = kernels.gated_batch_norm(x, gate, *kernels.channel_stats(x), bn)
    want = ref_bn(x * gate[:, :, None, None])
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
    grad = torch.randn(2, 6, 5, 5)
    got = torch.autograd.grad(y, [x, gate, bn.weight], grad)
    exp = torch.autograd.grad(want, [x, gate, ref_bn.weight], grad)
    for a, r in zip(got, exp):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(bn.running_var, ref_bn.running_var, rtol=1e-5, atol=1e-6)


def test_wiring_recipe_equals_pat_ch_and_pat_sp_in_train_mode():
    """The package docstring's recipe, on the real modules in train mode (float64, reference path): PAT_ch's
    output and Mlp's PAT_sp output equal the modules' own forward, and so do every parameter's gradient and the
    BN running statistics."""
    import torch.nn.functional as F

    from patsearch.models.channel_attention import PartialChannelAttention
    from patsearch.models.mlp import Mlp

    torch.manual_seed(1)
    mixer = PartialChannelAttention(16, 4).double().train()
    mlp = Mlp(16, 32, "relu", "partial").double().train()
    with torch.no_grad():
        mlp.gate.weight.normal_(0, 0.4)
    x = torch.randn(3, 16, 6, 5, dtype=torch.float64) + torch.randn(3, 16, 1, 1, dtype=torch.float64)
    grad = torch.randn(3, 16, 6, 5, dtype=torch.float64)

    def fused_mixer(m, t):
        x1, x2 = t[:, :m.dim_conv], t[:, m.dim_conv:]
        mean, std = kernels.channel_stats(x2, float32=True)
        se = m.attn
        gate = F.hardsigmoid(se.bn(se.conv(torch.stack([mean, std], -1)[:, :, None, :]))).flatten(1)
        return torch.cat([m.conv(x1), kernels.gated_batch_norm(x2, gate, mean, std, m.norm)], dim=1)

    def fused_mlp(m, t):
        z = m.fc2(m.act(m.norm(m.fc1(t))))
        z1, z2 = z[:, :m.half], z[:, m.half:]
        return torch.cat([m.gate_norm(kernels.spatial_gate(z1, m.gate.weight)), m.sp_conv(m.sp_norm(z2))], dim=1)

    for module, fused in ((mixer, fused_mixer), (mlp, fused_mlp)):
        twin = copy.deepcopy(module)
        want = module(x)
        with kernels.backend("reference"):
            got = fused(twin, x)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        want_grads = torch.autograd.grad(want, list(module.parameters()), grad)
        got_grads = torch.autograd.grad(got, list(twin.parameters()), grad)
        # PyTorch's CPU hardsigmoid backward multiplies by the float32 constant 1.0f / 6.0f even in float64
        # (relative error 3e-8); the ops use 1/6 exactly (gradcheck agrees), hence 1e-6 of the largest gradient
        # rather than 1e-10.
        for (name, _), a, b in zip(module.named_parameters(), got_grads, want_grads):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6 * b.abs().max().item(),
                                       msg=lambda m, name=name: f"{name}: {m}")
        for (name, a), b in zip(twin.named_buffers(), module.buffers()):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)


# --- gated_bn_affine: the (C,) affine and its written-out gradient ----------------------------------------------


def _affine_inputs(b, c, dtype=torch.float64, offset=0.0, gate_dtype=None):
    torch.manual_seed(b * 100 + c)
    gate = torch.rand(b, c, dtype=dtype).to(gate_dtype or dtype).requires_grad_()
    mean = (torch.randn(b, c, dtype=dtype) * 2 + offset).requires_grad_()
    std = (torch.rand(b, c, dtype=dtype) + 0.1).requires_grad_()
    weight = (torch.randn(c, dtype=dtype) * 0.3 + 1).requires_grad_()
    bias = (torch.randn(c, dtype=dtype) * 0.3).requires_grad_()
    return gate, mean, std, weight, bias


def test_gated_bn_affine_gradient_is_the_numerical_one():
    """float64 gradcheck of scale and shift through the registered (hand-written) backward."""
    inputs = _affine_inputs(5, 3)
    with kernels.backend("reference"):
        torch.autograd.gradcheck(lambda *t: kernels.gated_bn_affine(*t, 7, 1e-5)[:2], inputs)


def test_gated_bn_affine_equals_autograd_of_its_formula():
    """The op's outputs and input gradients against plain autograd of the reference formula."""
    from patsearch.kernels import reference as ref

    inputs = _affine_inputs(6, 4)
    grads = (torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64))
    with kernels.backend("reference"):
        got = kernels.gated_bn_affine(*inputs, 9, 1e-5)
        got_grads = torch.autograd.grad(got[:2], inputs, grads)
    want = ref.gated_bn_affine(*inputs, 9, 1e-5)
    want_grads = torch.autograd.grad(want[:2], inputs, grads)
    for a, b in zip(got + got_grads, want + want_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("b", "c", "small_tiles"), [(3, 5, False), (37, 130, False), (37, 130, True), (1, 2, True)])
def test_gated_bn_affine_kernels_equal_reference(b, c, small_tiles, monkeypatch):
    """Triton (interpreted) against the reference in float32, with a bf16 gate as under autocast, ragged batch and
    channel blocks, and a mean of 50 against a spread of 2: the two-pass variance must not cancel."""
    from patsearch.kernels import _triton

    if small_tiles:
        monkeypatch.setitem(_triton.TUNING, "max_tile", 32)
    inputs = [t.detach().float().requires_grad_() for t in _affine_inputs(b, c, offset=50.0)]
    inputs[0] = inputs[0].detach().bfloat16().requires_grad_()
    grads = (torch.randn(c), torch.randn(c))
    results = []
    for backend in ("auto", "reference"):
        with kernels.backend(backend):
            assert kernels.uses_triton(inputs[0]) == (backend == "auto")
            out = kernels.gated_bn_affine(*inputs, 11, 1e-5)
            results.append(out + torch.autograd.grad(out[:2], inputs, grads))
    for got, want in zip(*results):
        assert got.dtype == want.dtype and got.shape == want.shape
        rtol = 1e-2 if got.dtype == torch.bfloat16 else 2e-4  # the bf16 gate's gradient: one ulp of a float32 sum
        torch.testing.assert_close(got.float(), want.float(), rtol=rtol, atol=1e-5)


@pytest.mark.parametrize("which", ["reference", "auto"])
def test_gated_bn_affine_opcheck(which):
    inputs = [t.detach().float().requires_grad_() for t in _affine_inputs(4, 6)]
    with kernels.backend(which):
        torch.library.opcheck(torch.ops.patsearch.gated_bn_affine.default, (*inputs, 5, 1e-5))


def test_gated_bn_affine_bad_input():
    gate, mean, std, weight, bias = _affine_inputs(2, 3)
    with pytest.raises(ValueError, match=r"gate, mean and std must all be \(B, C\); got \(2, 3\), \(2, 4\)"):
        kernels.gated_bn_affine(gate, torch.zeros(2, 4, dtype=torch.float64), std, weight, bias, 4, 1e-5)
    with pytest.raises(ValueError, match="bias must have 3 elements"):
        kernels.gated_bn_affine(gate, mean, std, weight, bias[:2], 4, 1e-5)
    with pytest.raises(ValueError, match="pixels must be at least 1, got 0"):
        kernels.gated_bn_affine(gate, mean, std, weight, bias, 0, 1e-5)
