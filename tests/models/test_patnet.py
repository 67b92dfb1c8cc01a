"""The PATNet network: Table 6 / Table 4 counts, resolutions, timm registry."""
import copy

import pytest
import timm
import torch

from patsearch.arch import VARIANTS, ArchConfig
from patsearch.counting import count_flops, count_params
from patsearch.models import PATNet, create_model, fuse_model
from patsearch.paper import TABLE4, TABLE6

# The exact counts of the architecture spec (which reproduce Table 6 to its printed precision).
SPEC_COUNTS = {  # params, FLOPs with PAT_sp merged, FLOPs in trained form
    "patnet_t0": (4.29e6, 0.252e9, 0.263e9),
    "patnet_t1": (7.79e6, 0.556e9, 0.581e9),
    "patnet_t2": (12.65e6, 1.040e9, 1.087e9),
    "patnet_s": (28.98e6, 2.716e9, 2.843e9),
    "patnet_m": (61.37e6, 6.694e9, 7.022e9),
    "patnet_l": (104.47e6, 11.911e9, 12.502e9),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_table6_params_and_flops(name):
    model = create_model(name)
    params, flops = count_params(model), count_flops(model, 224, form="table6")
    paper_params, paper_flops = TABLE6[name]
    assert params == pytest.approx(paper_params * 1e6, rel=0.01)
    assert flops == pytest.approx(paper_flops * 1e9, rel=0.02)
    spec_params, spec_flops, spec_trained = SPEC_COUNTS[name]
    assert params == pytest.approx(spec_params, rel=0.001)
    assert flops == pytest.approx(spec_flops, rel=0.002)  # spec prints 3 decimals
    assert count_flops(model, 224, form="trained") == pytest.approx(spec_trained, rel=0.001)


@pytest.mark.parametrize("label, changes, paper_params, paper_flops", TABLE4)
def test_table4_ablation_rows(label, changes, paper_params, paper_flops):
    model = create_model(VARIANTS["patnet_t2"].replace(**changes))
    assert count_params(model) == pytest.approx(paper_params * 1e6, rel=0.01), label
    assert count_flops(model, 224, form="table6") == pytest.approx(paper_flops * 1e9, rel=0.02), label


@pytest.mark.parametrize("mixers, spatial, paper_params", [
    (("pat_ch_full",) * 3 + ("pat_sf",), ("partial",) * 4, 13.0),  # Table 3, full channel attention
    (("pat_ch",) * 3 + ("pat_sf",), ("full",) * 4, 12.6),  # Table 3, full spatial attention
    (("pat_ch",) * 3 + ("pat_sf_full",), ("partial",) * 4, 14.5),  # Table 3, full self-attention
    (("pat_ch_srm",) * 3 + ("pat_sf",), ("partial",) * 4, 12.2),  # Table 10, SRM
    (("pat_ch_se",) * 3 + ("pat_sf",), ("partial",) * 4, 12.3),  # Table 10, SE
    (("conv",) * 3 + ("pat_sf",), ("partial",) * 4, 15.8),  # Table 5, dense 3x3
])
def test_ablation_mixers_are_configs(mixers, spatial, paper_params):
    model = create_model(VARIANTS["patnet_t2"].replace(mixers=mixers, spatial=spatial))
    assert count_params(model) == pytest.approx(paper_params * 1e6, rel=0.01)


def test_plain_pconv_baseline_matches_spec():
    model = create_model(VARIANTS["patnet_t2"].replace(mixers=("pconv",) * 4, spatial=("none",) * 4))
    assert count_params(model) == pytest.approx(9.41e6, rel=0.001)
    assert count_flops(model, 224, form="table6") == pytest.approx(0.914e9, rel=0.002)


@pytest.mark.parametrize("resolution", [128, 160, 192, 224, 256, 288])
def test_every_resolution_runs_trained_and_fused(resolution):
    model = create_model(VARIANTS["patnet_t0"].replace(num_classes=7)).eval()
    x = torch.randn(2, 3, resolution, resolution)
    with torch.no_grad():
        out = model(x)
        fused = create_model(model.arch, fused=True)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    assert fused(x).shape == (2, 7)


def test_non_square_input_and_feature_shapes():
    model = create_model(VARIANTS["patnet_t0"]).eval()
    feats = model.forward_features(torch.randn(1, 3, 160, 256))
    assert feats.shape == (1, 256, 5, 8)


def test_timm_registry_round_trip():
    import patsearch.models  # noqa: F401  (registers the variants)

    assert set(VARIANTS) <= set(timm.list_models("patnet*"))
    model = timm.create_model("patnet_t2", num_classes=10)
    assert isinstance(model, PATNet) and model.arch == VARIANTS["patnet_t2"].replace(num_classes=10)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    assert model.pretrained_cfg["interpolation"] == "bicubic"
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("patnet_t0", pretrained=True)


def test_timm_peers_build_through_the_same_path():
    model = create_model("fasternet_t0", num_classes=5)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    with pytest.raises(Exception, match="unknown architecture 'not_a_model'"):
        create_model("not_a_model")


def test_drop_path_applies_to_mlp_branches_only():
    model = create_model(VARIANTS["patnet_l"])
    rates = [b.drop_path.drop_prob for stage in model.stages for b in stage if hasattr(b, "drop_path")
             and hasattr(b.drop_path, "drop_prob")]
    assert rates == pytest.approx(VARIANTS["patnet_l"].drop_path_rates()[1:])


def test_training_step_reduces_loss():
    cfg = ArchConfig(embed_dim=16, depths=(1, 1, 1, 1), num_classes=4)
    model = create_model(cfg)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 4, (8,))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_channel_attention_on_a_1x1_map_is_finite():
    """At 32 px stage 4 is 1x1: the unbiased std is undefined there and must count as 0, not NaN."""
    cfg = ArchConfig(embed_dim=16, depths=(1, 1, 1, 1), mixers=("pat_ch",) * 4, num_classes=3)
    model = create_model(cfg).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        fused_out = fuse_model(model)(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(fused_out, out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["patnet_t2", "full"])
def test_every_batchnorm_backward_gets_a_dense_channels_last_gradient(name):
    """CUDA's BN backward has channels-last kernels only for a dense channels-last gradient; without the guard 25
    of PATNet-T2's 66 BNs got a cat slice or an NCHW gradient from the attention (7 ms of a 46 ms H200 step)."""
    arch = VARIANTS["patnet_t0"].replace(spatial=("full",) * 4, mixers=("pat_ch", "pat_ch_full", "pat_sf", "pat_sf")) \
        if name == "full" else name
    model = create_model(arch, num_classes=10).to(memory_format=torch.channels_last).train()
    dense = []

    def watch(module, _inputs, output):
        node = output.grad_fn
        while "BatchNorm" not in node.name():
            node = node.next_functions[0][0]
        node.register_prehook(lambda grads: dense.append(grads[0].is_contiguous(memory_format=torch.channels_last)))

    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.register_forward_hook(watch)
    x = torch.randn(2, 3, 64, 64).to(memory_format=torch.channels_last)
    model(x).sum().backward()
    assert len(dense) == len(bns) and all(dense)


def test_the_gradient_guard_changes_no_value():
    torch.manual_seed(0)
    model = create_model("patnet_t0", num_classes=10).train()
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for memory_format in (torch.contiguous_format, torch.channels_last):   # guarded only in channels-last
        torch.manual_seed(1)
        m = copy.deepcopy(model).to(memory_format=memory_format)
        out = m(x.to(memory_format=memory_format))
        out.square().sum().backward()
        grads.append((out.detach(), [p.grad for p in m.parameters()]))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-4, atol=1e-5)
    for a, b in zip(grads[1][1], grads[0][1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("name", ["patnet_t2", "full"])
def test_every_batchnorm_gets_a_dense_input_in_training(name, memory_format):
    """BatchNorm's training kernels for strided input are its slow generic ones on the GPU (issue 11 profile: ~12 ms
    of a 64 ms PATNet-T2 step), so no mixer may hand it a channel slice; the forward is unchanged by the copy."""
    arch = VARIANTS["patnet_t0"].replace(spatial=("full",) * 4, mixers=("pat_ch", "pat_ch_full", "pat_sf", "pat_sf")) \
        if name == "full" else name
    model = create_model(arch, num_classes=10).to(memory_format=memory_format).train()
    strided = []

    def check(module, inputs, _output):
        t = inputs[0]
        if not (t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last)):
            strided.append(type(module).__name__)

    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.register_forward_hook(check)
    x = torch.randn(2, 3, 64, 64).to(memory_format=memory_format)
    model(x).sum().backward()
    assert strided == []


def test_training_after_inference_mode_at_the_same_grid_size():
    """The position-bias index is cached per grid size; built inside ``torch.inference_mode()`` (a fast form timed
    first, as bench or the profiler do) it must still serve a later training step at that size."""
    from patsearch.models.attention import RelativePositionBias, _device_buckets, irpe_buckets
    from patsearch.models.forms import accelerate

    irpe_buckets.cache_clear()
    _device_buckets.cache_clear()
    arch = VARIANTS["patnet_t0"].replace(embed_dim=16, depths=(1, 1, 1, 1), num_classes=10)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 96, 96)  # a grid size (3x3 in stage 4) no other test warms the cache with
    with torch.inference_mode():
        accelerate(create_model(arch))(x)
    model = create_model(arch).train()
    model(x).logsumexp(1).mean().backward()
    bias = next(m for m in model.modules() if isinstance(m, RelativePositionBias))
    assert bias.table.grad is not None and bias.table.grad.abs().sum() > 0
