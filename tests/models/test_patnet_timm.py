"""PATNet through timm's own API behaves as timm models do: num_classes=0 gives pooled features, the classifier
can be reset, and pretrained_cfg_overlay=dict(file=...) or checkpoint_path load weights from a file."""
import pytest
import timm
import torch

import patsearch.models  # noqa: F401  (registers the variants in timm)
from patsearch.train import checkpoint as ckpt


def test_num_classes_0_gives_pooled_pre_logits_features_like_timm_models():
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(0)
    classifier = timm.create_model("patnet_t0").eval()
    torch.manual_seed(0)
    features = timm.create_model("patnet_t0", num_classes=0).eval()
    out = features(x)
    assert out.shape == (2, features.head_hidden_size) and features.num_classes == 0
    assert isinstance(features.get_classifier(), torch.nn.Identity)
    pre_logits = classifier.forward_head(classifier.forward_features(x), pre_logits=True)
    torch.testing.assert_close(out, pre_logits)
    # timm's own FasterNet, which PATNet builds on, answers the same way
    peer = timm.create_model("fasternet_t0", num_classes=0).eval()
    assert peer(x).shape == (2, peer.head_hidden_size)


def test_reset_classifier_switches_between_features_and_logits():
    x = torch.randn(2, 3, 64, 64)
    model = timm.create_model("patnet_t0", num_classes=10).eval()
    model.reset_classifier(0)
    assert model(x).shape == (2, model.head_hidden_size)
    model.reset_classifier(5)
    assert model(x).shape == (2, 5) and model.get_classifier().out_features == 5


def test_pretrained_cfg_overlay_file_loads_a_patsearch_checkpoint(tmp_path):
    x = torch.randn(2, 3, 64, 64)
    trained = timm.create_model("patnet_t0", num_classes=10).eval()
    path = tmp_path / "best.pt"
    ckpt.save_atomic({"model": trained.state_dict(), "epoch": 3, "classes": [str(i) for i in range(10)],
                      "rng": [ckpt.rng_state()]}, path)  # what `patsearch train` writes
    loaded = timm.create_model("patnet_t0", pretrained=True, num_classes=10,
                               pretrained_cfg_overlay=dict(file=str(path), num_classes=10)).eval()
    torch.testing.assert_close(loaded(x), trained(x))
    # the classifier of another class count is left out, as timm does for every model
    backbone = timm.create_model("patnet_t0", pretrained=True, num_classes=0,
                                 pretrained_cfg_overlay=dict(file=str(path), num_classes=10)).eval()
    torch.testing.assert_close(backbone(x), trained.forward_head(trained.forward_features(x), pre_logits=True))
    via_path = timm.create_model("patnet_t0", num_classes=10, checkpoint_path=str(path)).eval()
    torch.testing.assert_close(via_path(x), trained(x))


def test_pretrained_without_a_source_is_refused_with_the_way_to_give_one():
    with pytest.raises(ValueError, match=r"no pretrained weights are published .*pretrained_cfg_overlay=dict\(file="):
        timm.create_model("patnet_t0", pretrained=True)
