"""A PATNet with the fused ops switched on (``use_fused_kernels``), run through the Triton kernels (interpreted on
the CPU, see conftest), computes a training step as the same model on the ops' reference forms does."""
import copy

import pytest
import torch
from torch import nn

from patsearch import kernels
from patsearch.arch import ArchConfig
from patsearch.kernels import _triton
from patsearch.models import create_model, use_fused_kernels

ARCH = ArchConfig(embed_dim=8, depths=(1, 1, 1, 1), mixers=("pat_ch", "pat_ch_full", "pat_ch_srm", "pat_sf"),
                  spatial=("partial", "full", "partial", "partial"), num_heads=2, num_classes=10)


@pytest.mark.parametrize("small_tiles", [False, True])
def test_fused_model_step_on_triton_equals_reference(small_tiles, monkeypatch):
    if small_tiles:  # many tiles and pixel splits, ragged channel blocks
        monkeypatch.setitem(_triton.TUNING, "max_tile", 32)
        monkeypatch.setitem(_triton.TUNING, "target_programs", 64)
    torch.manual_seed(0)
    model = use_fused_kernels(create_model(ARCH)).to(memory_format=torch.channels_last).train()
    twin = copy.deepcopy(model)
    x = (torch.randn(2, 3, 64, 64) + 1.0).to(memory_format=torch.channels_last)
    y = torch.tensor([3, 7])
    results = []
    for net, backend in ((model, "auto"), (twin, "reference")):
        with kernels.backend(backend):
            assert kernels.uses_triton(x) == (backend == "auto")
            torch.manual_seed(1)  # same dropout masks
            out = net(x)
            nn.functional.cross_entropy(out, y).backward()
        results.append((out.detach(), {n: p.grad for n, p in net.named_parameters()}))
    (out_t, grads_t), (out_r, grads_r) = results
    torch.testing.assert_close(out_t, out_r, rtol=1e-4, atol=1e-5)
    for name, ref_grad in grads_r.items():  # atol: a BN bias feeding another BN has a gradient of 0 up to rounding
        torch.testing.assert_close(grads_t[name], ref_grad, rtol=1e-3, atol=1e-6, msg=name)
    for (name, a), b in zip(model.named_buffers(), twin.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
