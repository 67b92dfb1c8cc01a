"""PATNet as a timm backbone: features_only / out_indices, feature_info, forward_intermediates, grad checkpointing
and group_matcher, checked as timm checks its own models (shapes and channels of each level, two resolutions)."""
import pytest
import timm
import torch
from timm.optim import param_groups_layer_decay

import patsearch.models  # noqa: F401  (registers the variants)
from patsearch.arch import VARIANTS

WIDTHS = {name: VARIANTS[name].widths for name in VARIANTS}


@pytest.mark.parametrize("name", ["patnet_t0", "patnet_s"])
@pytest.mark.parametrize("out_indices", [(0, 1, 2, 3), (1, 3)])
def test_features_only_shapes_and_channels(name, out_indices):
    model = timm.create_model(name, features_only=True, out_indices=out_indices).eval()
    assert model.feature_info.channels() == [WIDTHS[name][i] for i in out_indices]
    assert model.feature_info.reduction() == [2 ** (i + 2) for i in out_indices]
    for h, w in ((64, 64), (96, 160)):
        with torch.no_grad():
            features = model(torch.randn(2, 3, h, w))
        assert [tuple(f.shape) for f in features] == [
            (2, WIDTHS[name][i], h // 2 ** (i + 2), w // 2 ** (i + 2)) for i in out_indices]


def test_feature_getter_prunes_the_unused_stages():
    model = timm.create_model("patnet_t0", features_only=True, feature_cls="getter", out_indices=(0, 1)).eval()
    with torch.no_grad():
        features = model(torch.randn(2, 3, 64, 64))
    assert [tuple(f.shape) for f in features] == [(2, 32, 16, 16), (2, 64, 8, 8)]


def test_forward_intermediates_matches_forward_features():
    model = timm.create_model("patnet_t0", num_classes=10).eval()
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        final, intermediates = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
        assert [tuple(f.shape) for f in intermediates] == [(2, 32, 24, 16), (2, 64, 12, 8), (2, 128, 6, 4),
                                                           (2, 256, 3, 2)]
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True, stop_early=True)
        torch.testing.assert_close(last_two[1], final)
    with pytest.raises(ValueError, match="NHWC"):
        model.forward_intermediates(x, output_fmt="NHWC")


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = timm.create_model("patnet_t0", num_classes=10, drop_path_rate=0.0)
    for m in model.modules():  # the comparison needs a deterministic forward
        if hasattr(m, "attn_drop"):
            m.attn_drop, m.proj_drop.p = 0.0, 0.0
    x = torch.randn(2, 3, 64, 64)
    model(x).sum().backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    for e, p in zip(expected, model.parameters()):
        torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-6)


def test_group_matcher_covers_every_parameter_in_depth_order():
    model = timm.create_model("patnet_t0")
    groups = param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.8)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    scales = sorted({g["lr_scale"] for g in groups})
    # every layer of every stage (merging layers included) gets its own depth, after the stem's
    assert len(scales) >= 1 + sum(len(stage) for stage in model.stages)
    names = {id(p): n for n, p in model.named_parameters()}
    scale_of = {names[id(p)]: g["lr_scale"] for g in groups for p in g["params"]}
    assert scale_of["stem.conv.weight"] == scales[0] < scale_of["stages.0.0.mlp.fc1.weight"] \
        < scale_of["stages.3.3.mlp.fc1.weight"] <= scale_of["head.fc.weight"] == 1.0
