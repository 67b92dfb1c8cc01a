"""fc2_gate_residual: the Triton kernel (interpreted on the CPU, see conftest) computes PAT_sp's deployment tail with
the block's shortcut as the reference does, on ragged shapes, with and without the affine, on strided rows."""
import pytest
import torch

from patsearch import kernels
from patsearch.kernels import reference as ref


def _inputs(m, k, n, with_affine, dtype=torch.bfloat16, residual_pad=0):
    torch.manual_seed(m + k + n)
    half = n // 2
    h = torch.relu(torch.randn(m, k)).to(dtype)
    weight = (torch.randn(n, k) / k ** 0.5).to(dtype)
    bias = (torch.randn(n) * 0.1).to(dtype)
    gate_weight = (torch.randn(half) * 1.5 / half ** 0.5).to(dtype)
    scale = (torch.rand(half) + 0.5).to(dtype) if with_affine else None
    shift = (torch.randn(half) * 0.1).to(dtype) if with_affine else None
    residual = torch.randn(m, n + residual_pad).to(dtype)[:, :n]  # rows strided when padded
    return h, weight, bias, gate_weight, scale, shift, residual, half


@pytest.mark.parametrize(("m", "k", "n"), [(70, 24, 20), (64, 128, 64), (33, 40, 96), (5, 16, 16)])
@pytest.mark.parametrize("with_affine", [True, False])
def test_kernel_equals_reference(m, k, n, with_affine):
    args = _inputs(m, k, n, with_affine, residual_pad=8 if with_affine else 0)
    assert kernels.fc2_gate_kernel_applies(args[0], args[6], n)
    got = kernels.fc2_gate_residual(*args)
    want = ref.fc2_gate_residual(*args)
    assert got.dtype == torch.bfloat16 and got.shape == (m, n) and got.is_contiguous()
    # bf16 output: one rounding of values up to a few units; the float32 sums differ only in order
    torch.testing.assert_close(got.float(), want.float(), rtol=1e-2, atol=2e-2)


def test_reference_is_pat_sp_tail():
    """The reference against the module arithmetic of the deployment MLP's tail: z = fc2(h), gate on z1,
    affine on the gated part, shortcut added."""
    h, weight, bias, gate_weight, scale, shift, residual, half = _inputs(12, 8, 10, True, dtype=torch.float64)
    z = torch.nn.functional.linear(h, weight, bias)
    z1, z2 = z[:, :half], z[:, half:]
    gated = z1 * torch.nn.functional.hardsigmoid(torch.nn.functional.linear(z1, gate_weight[None]))
    want = residual + torch.cat([gated * scale + shift, z2], dim=1)
    torch.testing.assert_close(ref.fc2_gate_residual(h, weight, bias, gate_weight, scale, shift, residual, half), want)


def test_float32_and_wide_rows_take_the_reference(monkeypatch):
    h, weight, bias, gate_weight, scale, shift, residual, half = _inputs(4, 16, 16, True, dtype=torch.float32)
    assert not kernels.fc2_gate_kernel_applies(h, residual, 16)  # float32: TF32 or slow IEEE dots; not this kernel
    h16 = h.bfloat16()
    assert not kernels.fc2_gate_kernel_applies(h16, residual, kernels.FC2_GATE_MAX_CHANNELS + 1)
    with kernels.backend("reference"):
        assert not kernels.fc2_gate_kernel_applies(h16, residual, 16)


def test_bad_shapes_are_one_line_errors():
    h, weight, bias, gate_weight, scale, shift, residual, half = _inputs(4, 16, 16, True)
    with pytest.raises(ValueError, match=r"do not fit \(M, K\), \(N, K\), \(N,\), \(M, N\)"):
        kernels.fc2_gate_residual(h, weight[:, :8], bias, gate_weight, scale, shift, residual, half)
    with pytest.raises(ValueError, match="the gate covers the first half = 8 of 16 channels and needs that many "
                                         "weights, got 7"):
        kernels.fc2_gate_residual(h, weight, bias, gate_weight[:7], scale, shift, residual, half)
    with pytest.raises(ValueError, match="scale must have 8 elements"):
        kernels.fc2_gate_residual(h, weight, bias, gate_weight, scale[:3], shift, residual, half)


def test_fast_kernels_form_runs_the_kernel_and_equals_the_fast_form(monkeypatch):
    """A bf16 channels-last PATNet on the GPU path: ``accelerate(epilogue_kernels=True)`` ends every PAT_sp block
    in the kernel and computes what the fast form computes, to bf16 rounding."""
    from patsearch.arch import ArchConfig
    from patsearch.models import create_model
    from patsearch.models.fast_ops import gpu_path
    from patsearch.models.forms import accelerate

    calls = []
    kernel = kernels.fc2_gate_residual
    monkeypatch.setattr(kernels, "fc2_gate_residual", lambda *a: calls.append(a[0].shape) or kernel(*a))
    torch.manual_seed(0)
    arch = ArchConfig(embed_dim=16, depths=(1, 2, 1, 1), num_heads=2, num_classes=10)
    model = create_model(arch).eval()
    for module in model.modules():  # trained-like BN statistics, so the folded affines are not the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.normal_(1, 0.2)
            module.bias.data.normal_(0, 0.1)
    fast = accelerate(model).to(torch.bfloat16, memory_format=torch.channels_last)
    fused = accelerate(model, epilogue_kernels=True).to(torch.bfloat16, memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 64).to(torch.bfloat16, memory_format=torch.channels_last)
    with torch.inference_mode(), gpu_path():
        want = fast(x)
        assert not calls
        got = fused(x)
    assert len(calls) == 5  # one per block: every block of this network has PAT_sp (partial)
    reference = model.double()(x.double())
    scale = reference.abs().max()
    assert (got.double() - want.double()).abs().max() <= 0.02 * scale  # measured: 0.4% of the largest logit
    assert (got.double() - reference).abs().max() <= 0.02 * scale  # both are bf16 forms of the same function
