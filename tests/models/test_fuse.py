"""The deployment form equals the trained form in eval mode, on fresh random inputs and random BN statistics."""
import zlib

import pytest
import torch
import torch.nn as nn

from patsearch.arch import VARIANTS, ArchConfig, LayerSpec
from patsearch.counting import count_flops
from patsearch.models import build_layer, create_model, fuse_model
from patsearch.models.statistics import randomize_statistics

CONFIGS = {
    "patnet": ArchConfig(embed_dim=16, depths=(1, 2, 2, 2), act="gelu", num_classes=10),
    "full_attention": ArchConfig(embed_dim=16, depths=(1, 1, 1, 1), mixers=("pat_ch_full", "pat_ch_se",
                                 "pat_ch_srm", "pat_sf_full"), spatial=("full",) * 4, num_classes=10),
    "convolutions": ArchConfig(embed_dim=16, depths=(1, 1, 1, 1), mixers=("pconv", "conv", "dwconv", "pat_sf"),
                               spatial=("none", "partial", "full", "none"), num_classes=10),
    "attention_everywhere": ArchConfig(embed_dim=16, depths=(1, 1, 1, 1), mixers=("pat_sf",) * 4, n_div=2,
                                       num_heads=2, mlp_ratio=3.0, num_classes=10),
}


def relative_errors(name: str, dtype: torch.dtype, form, seed: int) -> dict[tuple[int, int], float]:
    """Per input size, the largest error of ``form(model)`` relative to the trained model of ``CONFIGS[name]`` in
    eval mode, with random statistics; inputs and statistics drawn from one generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    model = create_model(CONFIGS[name]).to(dtype).eval()
    randomize_statistics(model, generator)
    other = form(model)
    errors = {}
    for resolution in ((64, 64), (96, 160)):
        x = torch.randn(3, 3, *resolution, generator=generator, dtype=dtype)
        with torch.no_grad():
            expected, actual = model(x), other(x)
        errors[resolution] = ((expected - actual).abs().max() / expected.abs().max()).item()
    return errors


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-5), (torch.float32, 1e-4)])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_fused_equals_trained(name, dtype, tolerance):
    errors = relative_errors(name, dtype, fuse_model, zlib.crc32(name.encode()))  # stable across PYTHONHASHSEED
    for resolution, rel in errors.items():
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


def _dim_layers():
    """Every mixer, every MLP and every block kind, as single layers of width 32."""
    from patsearch.arch import MIXERS, SPATIAL_ATTENTION
    from patsearch.models.layers import build_mixer
    from patsearch.models.mlp import Mlp

    for mixer in MIXERS:
        yield f"mixer-{mixer}", lambda m=mixer: build_mixer(32, m, 4, 4)
        for spatial in SPATIAL_ATTENTION:
            spec = LayerSpec("block", 32, 32, mixer=mixer, spatial=spatial, n_div=4, mlp_ratio=2.0, act="gelu",
                             num_heads=4)
            yield f"block-{mixer}-{spatial}", lambda s=spec: build_layer(s)
    for spatial in SPATIAL_ATTENTION:
        yield f"mlp-{spatial}", lambda s=spatial: Mlp(32, 64, "relu", s)


@pytest.mark.parametrize("name, make", list(_dim_layers()), ids=[name for name, _ in _dim_layers()])
def test_every_single_layer_deploys_exactly(name, make):
    """fuse_model of one mixer / MLP / block equals the trained layer in eval mode (float64, random BN
    statistics), at the 1x1 and 2x2 grids of stage 4 and at 7x9."""
    generator = torch.Generator().manual_seed(11)
    layer = make().double().eval()
    randomize_statistics(layer, generator)
    fused = fuse_model(layer)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)) for m in fused.modules()), name
    assert not any(p.requires_grad for p in fused.parameters())
    for h, w in ((1, 1), (2, 2), (7, 9)):
        x = torch.randn(2, 32, h, w, generator=generator, dtype=torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(fused(x), layer(x), rtol=1e-9, atol=1e-9, msg=f"{name} at {h}x{w}")


def test_pat_ch_alone_keeps_its_output_bn():
    """Regression (issue 13): fuse_model(PartialChannelAttention) used to drop the post-gate BN (93% error)."""
    from patsearch.models.channel_attention import PartialChannelAttention

    layer = PartialChannelAttention(64, 4).eval()
    randomize_statistics(layer, torch.Generator().manual_seed(4))
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fuse_model(layer)(x), layer(x), rtol=1e-5, atol=1e-5)


def test_every_layer_deploys_to_a_module():
    """One protocol: deploy() returns an nn.Module for every layer kind (no tuples, no self-with-BN)."""
    for _, make in _dim_layers():
        layer = make().eval()
        assert isinstance(layer.deploy(), nn.Module)


def test_containers_of_layers_deploy_by_structure():
    """A plain nn.Sequential of PATNet layers (not a PATNet) still fuses by structure, exactly."""
    spec = LayerSpec("block", 16, 16, mixer="pat_ch", spatial="partial", n_div=4, mlp_ratio=2.0, act="relu",
                     num_heads=4)
    seq = nn.Sequential(build_layer(LayerSpec("stem", 3, 16)), build_layer(spec), build_layer(spec)).double().eval()
    randomize_statistics(seq, torch.Generator().manual_seed(5))
    fused = fuse_model(seq)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), seq(x), rtol=1e-9, atol=1e-9)
