"""The fused ops: reference = the model's own formulas, reference backward = numerical gradients (float64),
Triton kernels (interpreted on the CPU, see conftest) = reference, forward and backward, in float32 and bfloat16,
on NCHW, channels-last and channel-slice inputs, ragged shapes and 1x1 maps; plus opcheck and torch.compile."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from patsearch import kernels
from patsearch.kernels import _triton
from patsearch.kernels import reference as ref
from patsearch.models.channel_attention import GaussianSE, PartialChannelAttention
from patsearch.models.common import bn_scale_shift
from patsearch.models.mlp import Mlp

# (B, C, H, W) with a layout: ragged C and HW against every block size, a 1x1 map (std 0), a single row and a
# single column; every shape in a dense and a sliced layout, every layout several times.
CASES = [((2, 5, 7, 9), "nchw"), ((2, 5, 7, 9), "slice_channels_last"), ((3, 70, 1, 1), "channels_last"),
         ((3, 70, 1, 1), "slice_nchw"), ((2, 33, 1, 6), "slice_channels_last"), ((2, 33, 1, 6), "nchw"),
         ((2, 130, 5, 1), "slice_nchw"), ((2, 130, 5, 1), "channels_last"), ((1, 3, 16, 16), "slice_nchw"),
         ((1, 3, 16, 16), "channels_last")]


def make(shape, layout, dtype=torch.float32, offset=0.0, requires_grad=False):
    """A fresh random tensor of ``shape`` in ``layout``; the slice layouts are the tail channels of a wider tensor
    (how a partial mixer's untouched part reaches the ops), so the kernels read non-dense memory."""
    b, c, h, w = shape
    extra = 3 if layout.startswith("slice") else 0
    base = torch.randn(b, c + extra, h, w, dtype=torch.float64) * 1.5 + offset
    if layout.endswith("channels_last"):
        base = base.contiguous(memory_format=torch.channels_last)
    x = base.to(dtype)[:, extra:]
    if requires_grad:
        x.requires_grad_(True)
    return x


@pytest.fixture(params=["default", "small"])
def tiles(request, monkeypatch):
    """Default tiles, and tiny ones that force many tiles, several pixel splits and ragged channel blocks."""
    if request.param == "small":
        monkeypatch.setitem(_triton.TUNING, "max_tile", 32)
        monkeypatch.setitem(_triton.TUNING, "target_programs", 64)
    return request.param


def affine(c, dtype=torch.float32):
    return torch.randn(c, dtype=dtype) * 0.5 + 1.0, torch.randn(c, dtype=dtype) * 0.3


def close(a, b, tol):
    torch.testing.assert_close(a.float(), b.float(), rtol=tol, atol=tol)


# --- the references compute what the model modules compute ------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 12, 5, 6), (2, 12, 1, 1)])
def test_reference_stats_and_gate_equal_gaussian_se(shape):
    se = GaussianSE(shape[1], "gauss").eval()
    with torch.no_grad():
        se.bn.running_mean.normal_()
        se.bn.running_var.uniform_(0.5, 1.5)
    x = torch.randn(shape)
    mean, std = ref.channel_stats(x)
    logits = se.conv(torch.stack([mean, std], dim=-1)[:, :, None, :])
    gate = F.hardsigmoid(se.bn(logits))
    close(gate, se(x), 1e-6)
    if shape[2] * shape[3] == 1:
        assert torch.equal(std, torch.zeros_like(std))


def test_reference_scale_channels_equals_pat_ch_untouched_part():
    """PAT_ch's untouched branch BN(x2 * gate(x2)) in eval mode is scale_channels with the BN as the affine."""
    mixer = PartialChannelAttention(16, 4).eval()
    with torch.no_grad():
        mixer.norm.running_mean.normal_()
        mixer.norm.running_var.uniform_(0.5, 1.5)
        mixer.norm.weight.normal_()
    x = torch.randn(2, 16, 6, 5)
    x2 = x[:, mixer.dim_conv:]
    want = mixer(x)[:, mixer.dim_conv:]
    scale, shift = bn_scale_shift(mixer.norm)
    got = ref.scale_channels(x2, mixer.attn(x2).flatten(1), scale, shift)
    close(got, want, 1e-6)


def test_reference_spatial_gate_equals_pat_sp():
    """PAT_sp's gated half BN(z1 * hsig(conv(z1))) in eval mode is spatial_gate with the BN as the affine."""
    mlp = Mlp(16, 32, "relu", "partial").eval()
    with torch.no_grad():
        mlp.gate.weight.normal_(0, 0.5)
        mlp.gate_norm.running_mean.normal_()
        mlp.gate_norm.running_var.uniform_(0.5, 1.5)
    z1 = torch.randn(2, mlp.half, 7, 5) * 2
    want = mlp.gate_norm(z1 * F.hardsigmoid(mlp.gate(z1)))
    scale, shift = bn_scale_shift(mlp.gate_norm)
    close(ref.spatial_gate(z1, mlp.gate.weight, scale, shift), want, 1e-5)


# --- the registered backward equals numerical gradients (reference path, float64) ---------------------------


@pytest.mark.parametrize("layout", ["nchw", "slice_channels_last"])
@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (2, 4, 1, 1)])
def test_gradcheck_reference_ops(shape, layout):
    x = make(shape, layout, torch.float64, requires_grad=True)
    gate = torch.rand(shape[:2], dtype=torch.float64, requires_grad=True)
    scale, shift = (t.requires_grad_() for t in affine(shape[1], torch.float64))
    weight = (torch.randn(1, shape[1], 1, 1, dtype=torch.float64) * 0.5).requires_grad_()
    with kernels.backend("reference"):
        assert torch.autograd.gradcheck(lambda t: kernels.channel_stats(t), (x,))
        assert torch.autograd.gradcheck(kernels.scale_channels, (x, gate, scale, shift))
        assert torch.autograd.gradcheck(kernels.scale_channels, (x, gate, None, shift))
        assert torch.autograd.gradcheck(kernels.spatial_gate, (x, weight, scale, shift))
        assert torch.autograd.gradcheck(kernels.spatial_gate, (x, weight))
        residual = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(kernels.spatial_gate, (x, weight, scale, shift, residual))


def test_channel_stats_gradient_equals_std_mean_autograd():
    """Independent of the hand-written formula: autograd through torch.std_mean, float64."""
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64, requires_grad=True)
    gm, gs = torch.randn(2, 6, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64)
    std, mean = torch.std_mean(x, dim=(2, 3))
    want, = torch.autograd.grad((mean * gm).sum() + (std * gs).sum(), x)
    with kernels.backend("reference"):
        m, s = kernels.channel_stats(x)
        got, = torch.autograd.grad((m * gm).sum() + (s * gs).sum(), x)
    close(got, want, 1e-12)


# --- the Triton kernels equal the reference ---------------------------------------------------------------


def _grads(fn, inputs, grad_out):
    out = fn(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    leaves = [t for t in inputs if t is not None and t.requires_grad]
    return outs, torch.autograd.grad(outs, leaves, grad_out)


def _both(fn, inputs, grad_out):
    """Forward outputs and input gradients from the Triton kernels and from the reference."""
    assert kernels.uses_triton(inputs[0])
    triton_result = _grads(fn, inputs, grad_out)
    with kernels.backend("reference"):
        reference_result = _grads(fn, inputs, grad_out)
    return triton_result, reference_result


@pytest.mark.parametrize(("shape", "layout"), CASES)
def test_channel_stats_kernel(shape, layout, tiles):
    # An offset much larger than the spread: a sum/sum-of-squares kernel would lose the std to cancellation.
    x = make(shape, layout, offset=100.0, requires_grad=True)
    grads = (torch.randn(shape[:2]), torch.randn(shape[:2]))
    (out_t, g_t), (out_r, g_r) = _both(kernels.channel_stats, (x,), grads)
    close(out_t[0], out_r[0], 1e-5)
    close(out_t[1], out_r[1], 2e-4)  # the std of values ~100 with spread 1.5: float32 resolution of the mean
    close(g_t[0], g_r[0], 1e-4)
    assert torch.isfinite(g_t[0]).all()
    if shape[2] * shape[3] == 1:
        assert torch.equal(out_t[1], torch.zeros_like(out_t[1]))


@pytest.mark.parametrize("with_affine", [True, False])
@pytest.mark.parametrize(("shape", "layout"), CASES)
def test_scale_channels_kernel(shape, layout, with_affine, tiles):
    x = make(shape, layout, requires_grad=True)
    gate = torch.rand(shape[:2], requires_grad=True)
    scale, shift = (t.requires_grad_() for t in affine(shape[1])) if with_affine else (None, None)
    grad_out = torch.randn(shape).contiguous(memory_format=torch.channels_last)  # a layout unlike some inputs
    (out_t, g_t), (out_r, g_r) = _both(kernels.scale_channels, (x, gate, scale, shift), grad_out)
    close(out_t[0], out_r[0], 1e-5)
    assert out_t[0].stride() == out_r[0].stride()
    for a, b in zip(g_t, g_r):
        close(a, b, 1e-4)


@pytest.mark.parametrize("with_affine", [True, False])
@pytest.mark.parametrize(("shape", "layout"), CASES)
def test_spatial_gate_kernel(shape, layout, with_affine, tiles):
    z = make(shape, layout, requires_grad=True)
    # Small weights keep most logits inside (-3, 3), where the gate has a gradient; some fall outside.
    weight = (torch.randn(1, shape[1], 1, 1) * 1.5 / shape[1] ** 0.5).requires_grad_()
    scale, shift = (t.requires_grad_() for t in affine(shape[1])) if with_affine else (None, None)
    # With the affine, also the deployment form's shortcut: a residual in another layout than z.
    residual = make(shape, "slice_nchw" if layout != "slice_nchw" else "channels_last",
                    requires_grad=True) if with_affine else None
    grad_out = torch.randn(shape)
    (out_t, g_t), (out_r, g_r) = _both(kernels.spatial_gate, (z, weight, scale, shift, residual), grad_out)
    close(out_t[0], out_r[0], 1e-5)
    assert out_t[0].stride() == out_r[0].stride()
    for a, b in zip(g_t, g_r):
        close(a, b, 1e-4)


@pytest.mark.parametrize("layout", ["channels_last", "slice_nchw"])
def test_kernels_bfloat16(layout):
    """bf16 in and out, float32 inside: equal to the float32 reference on the same bf16 values, to bf16's
    rounding of the result (and of the saved statistics the std gradient uses)."""
    shape = (2, 37, 6, 5)
    x = make(shape, layout, torch.bfloat16, offset=2.0, requires_grad=True)
    gm, gs = torch.randn(shape[:2], dtype=torch.bfloat16), torch.randn(shape[:2], dtype=torch.bfloat16)
    (out_t, g_t), (out_r, g_r) = _both(kernels.channel_stats, (x,), (gm, gs))
    assert out_t[0].dtype == torch.bfloat16 and g_t[0].dtype == torch.bfloat16
    close(out_t[0], out_r[0], 1e-2)
    close(out_t[1], out_r[1], 1e-2)
    close(g_t[0], g_r[0], 2e-2)
    # float32=True: the statistics of the bf16 values without bf16 rounding, as the float32 reference has them.
    (out_t, g_t), (out_r, g_r) = _both(lambda t: kernels.channel_stats(t, float32=True), (x,), (gm, gs))
    assert out_t[0].dtype == torch.float32 and g_t[0].dtype == torch.bfloat16
    exact = ref.channel_stats(x.detach().float())
    close(out_t[0], exact[0], 1e-5)
    close(out_t[1], exact[1], 1e-5)
    close(g_t[0], g_r[0], 2e-2)

    gate = torch.rand(shape[:2], dtype=torch.bfloat16, requires_grad=True)
    scale, shift = (t.requires_grad_() for t in affine(shape[1]))  # float32 affine on bf16 activations
    grad_out = torch.randn(shape, dtype=torch.bfloat16)
    (out_t, g_t), (out_r, g_r) = _both(kernels.scale_channels, (x, gate, scale, shift), grad_out)
    assert out_t[0].dtype == torch.bfloat16 and g_t[2].dtype == torch.float32
    for a, b in zip(out_t + g_t, out_r + g_r):
        close(a, b, 2e-2)

    weight = (torch.randn(shape[1], dtype=torch.bfloat16) * 0.2).requires_grad_()
    (out_t, g_t), (out_r, g_r) = _both(kernels.spatial_gate, (x, weight, scale, shift), grad_out)
    assert g_t[1].dtype == torch.bfloat16
    close(out_t[0], out_r[0], 2e-2)
    for a, b in zip(g_t, g_r):
        close(a, b, 5e-2 * max(1.0, b.abs().max().item()))  # sums over B*H*W of bf16 products


# --- custom-op machinery ----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["reference", "auto"])
def test_opcheck(which):
    x = make((2, 6, 3, 5), "slice_channels_last", requires_grad=True)
    gate = torch.rand(2, 6, requires_grad=True)
    scale, shift = (t.requires_grad_() for t in affine(6))
    weight = torch.randn(1, 6, 1, 1, requires_grad=True)
    with kernels.backend(which):
        assert kernels.uses_triton(x) == (which == "auto")
        torch.library.opcheck(torch.ops.patsearch.channel_stats.default, (x,))
        torch.library.opcheck(torch.ops.patsearch.channel_stats.default, (x.detach().bfloat16().requires_grad_(), True))
        torch.library.opcheck(torch.ops.patsearch.scale_channels.default, (x, gate, scale, shift))
        torch.library.opcheck(torch.ops.patsearch.scale_channels.default, (x, gate, None, None))
        torch.library.opcheck(torch.ops.patsearch.spatial_gate.default, (x, weight, scale, shift))
        torch.library.opcheck(torch.ops.patsearch.spatial_gate.default, (x, weight, None, shift))
        torch.library.opcheck(torch.ops.patsearch.spatial_gate.default, (x, weight, scale, shift, x.detach() * 2))


def test_compiled_block_part_equals_eager(single_thread):
    """A PAT_ch-like gate + PAT_sp-like gate under torch.compile(fullgraph=True): one graph (the ops are opaque
    nodes) that computes what eager computes, forward and backward."""
    conv = nn.Conv2d(6, 6, (1, 2), bias=False)
    w = torch.randn(1, 6, 1, 1) * 0.4

    def f(x):
        mean, std = kernels.channel_stats(x)
        gate = F.hardsigmoid(conv(torch.stack([mean, std], -1)[:, :, None]).flatten(1))
        return kernels.spatial_gate(kernels.scale_channels(x, gate), w)

    x = torch.randn(2, 6, 5, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    g = torch.randn(2, 6, 5, 5)
    with kernels.backend("reference"):
        eager = _grads(f, (x,), g)
        compiled = _grads(torch.compile(f, fullgraph=True, backend="aot_eager"), (x,), g)
    close(compiled[0][0], eager[0][0], 1e-6)
    close(compiled[1][0], eager[1][0], 1e-6)


# --- bad input ---------------------------------------------------------------------------------------------


def test_bad_input_errors(monkeypatch):
    with pytest.raises(ValueError, match=r"4-D \(B, C, H, W\) tensor, got shape \(2, 3, 4\)"):
        kernels.channel_stats(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"gate must be \(B, C\) = \(2, 3\), got \(2, 3, 1, 1\)"):
        kernels.scale_channels(torch.randn(2, 3, 4, 4), torch.rand(2, 3, 1, 1))
    with pytest.raises(ValueError, match="weight must have 3 elements"):
        kernels.spatial_gate(torch.randn(2, 3, 4, 4), torch.randn(4))
    with pytest.raises(ValueError, match=r"residual must be shaped like z \(2, 3, 4, 4\), got \(2, 3, 4, 5\)"):
        kernels.spatial_gate(torch.randn(2, 3, 4, 4), torch.randn(3), residual=torch.randn(2, 3, 4, 5))
    with pytest.raises(ValueError, match="unknown kernel backend 'cuda'"), kernels.backend("cuda"):
        pass
    monkeypatch.delenv("TRITON_INTERPRET")
    x = torch.randn(1, 2, 2, 2)
    assert not kernels.uses_triton(x)  # auto: the reference on the CPU
    with kernels.backend("triton"), pytest.raises(RuntimeError, match="need a CUDA tensor"):
        kernels.channel_stats(x)


def test_export_keeps_the_ops():
    """torch.export traces the ops as single nodes (their fake kernels give the shapes) and the exported
    program computes what the module computes."""

    class Gates(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(1, 4, 1, 1) * 0.4)
            self.scale = nn.Parameter(torch.rand(4) + 0.5)

        def forward(self, x):
            mean, std = kernels.channel_stats(x)
            y = kernels.scale_channels(x, torch.sigmoid(mean - std), self.scale, None)
            return kernels.spatial_gate(y, self.w, None, None, x)

    module = Gates()
    x = torch.randn(2, 4, 5, 3)
    with kernels.backend("reference"):
        program = torch.export.export(module, (x,))
        targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
        assert {"patsearch.channel_stats.default", "patsearch.scale_channels.default",
                "patsearch.spatial_gate.default"} <= targets
        fresh = torch.randn(2, 4, 5, 3)
        close(program.module()(fresh), module(fresh), 1e-6)
