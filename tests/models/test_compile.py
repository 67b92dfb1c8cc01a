"""torch.compile computes what eager computes, in training and inference, across multi-scale resolutions.

Issue 10/11: "compiled train-mode PATNet-T0 differs from eager by 3.7%" was dropout and drop-path drawing
different random numbers (Inductor's RNG is not eager's), not ill-conditioning: with the RNG made comparable the
two agree. The compiled backward also failed on the attention's dropout layout; these tests pin both.
CPU tests use the ``aot_eager`` backend (Dynamo + AOTAutograd graphs, eager kernels: identical random draws);
Inductor's code generation is checked on the GPU by ``benchmarks/compile_equivalence.py`` (fallback_random, TF32
off, float64 as the ground truth), and conditioning (float32 vs float64 per mixer) by ``test_conditioning.py``.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.testing import CompileCounterWithBackend

from patsearch.arch import ArchConfig
from patsearch.models import create_model, fuse_model, use_fused_kernels

# T0-like (GELU, PAT_ch in stages 1-3, PAT_sf in stage 4, drop-path on), smaller so that CPU tracing is quick.
ARCH = ArchConfig(embed_dim=16, depths=(1, 1, 2, 2), act="gelu", drop_path_rate=0.1, num_classes=10)


def _rel(expected: torch.Tensor, actual: torch.Tensor) -> float:
    return ((expected - actual).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


def _step(model, x, y, seed):
    torch.manual_seed(seed)  # the same dropout / drop-path draws on both sides
    out = model(x)
    F.cross_entropy(out, y).backward()
    return out


@pytest.mark.slow  # ~35 s of tracing on a loaded 2-core CPU, each
@pytest.mark.parametrize("fused", [False, True], ids=["plain", "fused_kernels"])
def test_compiled_training_step_equals_eager(fused):
    """Also with the fused ops: opaque nodes in one graph (fullgraph), the gated BN's running statistics updated."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = use_fused_kernels(create_model(ARCH), enabled=fused).train()
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, backend="aot_eager", fullgraph=True)
    x, y = torch.randn(4, 3, 64, 64), torch.randint(0, 10, (4,))
    for seed in (1, 2):
        eager.zero_grad()
        compiled_model.zero_grad()
        a, b = _step(eager, x, y, seed), _step(compiled, x, y, seed)
        assert _rel(a, b) <= 1e-4
        for (name, p), q in zip(eager.named_parameters(), compiled_model.parameters()):
            if p.grad is not None and p.grad.abs().max() > 0:
                assert _rel(p.grad, q.grad) <= 1e-4, name
    for p, q in zip(eager.buffers(), compiled_model.buffers()):  # BN running statistics updated alike
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # ~80 s
def test_multi_scale_training_compiles_once_per_shape_kind():
    """Three resolutions of a multi-scale schedule: one static graph, then one dynamic graph for the rest (no
    recompilation per resolution; the iRPE bucket index is computed in-graph, without a graph break)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = create_model(ARCH).train()
    compiled_model = copy.deepcopy(eager)
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(compiled_model, backend=counter, fullgraph=True)
    for res in (64, 96, 128, 96):
        x, y = torch.randn(2, 3, res, res), torch.randint(0, 10, (2,))
        assert _rel(_step(eager, x, y, res), _step(compiled, x, y, res)) <= 1e-4, res
    assert counter.frame_count <= 2


def test_compiled_inference_of_the_deployment_form_at_two_resolutions():
    torch._dynamo.reset()
    model = create_model(ARCH).eval()
    fused = fuse_model(model)
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(fused, backend=counter, fullgraph=True)
    with torch.no_grad():
        for res in (64, 96, 128):
            x = torch.randn(2, 3, res, res)
            assert _rel(model(x), compiled(x)) <= 1e-4, res
    assert counter.frame_count <= 2
