"""The deployment form equals the trained form in eval mode, on fresh random inputs and random BN statistics."""
import zlib

import pytest
import torch
import torch.nn as nn

from patsearch.arch import VARIANTS, ArchConfig, LayerSpec
from patsearch.counting import count_flops
from patsearch.models import build_layer, create_model, fuse_model


def randomize_statistics(model: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BN/LN statistics and affines and position biases, so that every fold is exercised."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.randn(n, generator=generator) * 0.5 + 1.0)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
            elif isinstance(module, nn.LayerNorm):
                module.weight.copy_(torch.randn(module.normalized_shape, generator=generator) * 0.5 + 1.0)
                module.bias.copy_(torch.randn(module.normalized_shape, generator=generator) * 0.2)
        for name, param in model.named_parameters():
            if name.endswith("rel_pos.table"):
                param.copy_(torch.randn(param.shape, generator=generator))


CONFIGS = {
    "patnet": ArchConfig(embed_dim=16, depths=(1, 2, 2, 2), act="gelu", num_classes=10),
    "full_attention": ArchConfig(embed_dim=16, depths=(1, 1, 1, 1), mixers=("pat_ch_full", "pat_ch_se",
                                 "pat_ch_srm", "pat_sf_full"), spatial=("full",) * 4, num_classes=10),
    "convolutions": ArchConfig(embed_dim=16, depths=(1, 1, 1, 1), mixers=("pconv", "conv", "dwconv", "pat_sf"),
                               spatial=("none", "partial", "full", "none"), num_classes=10),
    "attention_everywhere": ArchConfig(embed_dim=16, depths=(1, 1, 1, 1), mixers=("pat_sf",) * 4, n_div=2,
                                       num_heads=2, mlp_ratio=3.0, num_classes=10),
}


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-5), (torch.float32, 1e-4)])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_fused_equals_trained(name, dtype, tolerance):
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))  # stable across PYTHONHASHSEED
    model = create_model(CONFIGS[name]).to(dtype).eval()
    randomize_statistics(model, generator)
    fused = fuse_model(model)
    for resolution in ((64, 64), (96, 160)):
        x = torch.randn(3, 3, *resolution, generator=generator, dtype=dtype)
        with torch.no_grad():
            expected, actual = model(x), fused(x)
        rel = (expected - actual).abs().max() / expected.abs().max()
        assert rel <= tolerance, f"{name} at {resolution}: relative error {rel:.2e}"


def test_fuse_leaves_the_original_alone_and_shrinks_the_model():
    model = create_model(VARIANTS["patnet_t0"]).eval()
    n_modules = len(list(model.modules()))
    fused = fuse_model(model)
    assert len(list(model.modules())) == n_modules and not getattr(model, "deployed", False)
    assert len(list(fused.modules())) < n_modules
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)) for m in fused.modules())
    assert count_flops(fused, 224) < count_flops(model, 224, form="table6") < count_flops(model, 224)


def test_fused_model_is_frozen_and_deterministic():
    fused = create_model(VARIANTS["patnet_t0"], fused=True)
    assert not any(p.requires_grad for p in fused.parameters())
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(fused(x), fused(x))


@pytest.mark.parametrize("spec", [
    LayerSpec("stem", 3, 16),
    LayerSpec("merge", 16, 32),
    LayerSpec("block", 32, 32, mixer="pat_ch", spatial="partial", n_div=4, mlp_ratio=2.0, act="relu", num_heads=4),
    LayerSpec("block", 32, 32, mixer="pat_sf", spatial="partial", n_div=4, mlp_ratio=2.0, act="gelu", num_heads=4),
    LayerSpec("head", 32, 32, act="relu", head_width=64, num_classes=10),
])
def test_single_layers_fuse(spec):
    """The profiler times layers one by one in deployment form; each must fuse on its own."""
    generator = torch.Generator().manual_seed(1)
    layer = build_layer(spec).double().eval()
    randomize_statistics(layer, generator)
    fused = fuse_model(layer)
    x = torch.randn(2, spec.in_dim, 16, 16, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), layer(x), rtol=1e-9, atol=1e-9)


def test_timm_peer_fuses_with_fx():
    peer = create_model("fasternet_t0", num_classes=10).eval()
    randomize_statistics(peer, torch.Generator().manual_seed(2))
    fused = fuse_model(peer)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in fused.modules()) < sum(
        isinstance(m, nn.BatchNorm2d) for m in peer.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), peer(x), rtol=1e-4, atol=1e-4)
