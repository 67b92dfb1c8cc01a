"""ONNX export of the fused model, checked with onnxruntime."""
import warnings

import numpy as np
import pytest
import torch

from patsearch.arch import ArchConfig
from patsearch.errors import UserError
from patsearch.export import export_onnx
from patsearch.models import create_model, fuse_model

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture()
def trained_checkpoint(tmp_path):
    cfg = ArchConfig(embed_dim=16, depths=(1, 1, 2, 1), act="gelu", num_classes=10)
    model = create_model(cfg)
    with torch.no_grad():  # make BN statistics non-trivial, as after training
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "epoch": 3}, path)
    arch_path = cfg.save(tmp_path / "arch.yaml")
    return model, path, arch_path


@pytest.mark.parametrize("opset", [18, 17])  # the dynamo exporter; the TorchScript one below its opsets
def test_onnx_matches_pytorch_at_any_batch(tmp_path, trained_checkpoint, opset, caplog):
    pytest.importorskip("onnxscript")
    model, ckpt, arch_path = trained_checkpoint
    with caplog.at_level("WARNING", logger="patsearch.export"):
        out = export_onnx(str(arch_path), tmp_path / "model.onnx", checkpoint=ckpt, resolution=96, opset=opset)
    graph = onnx.load(str(out))
    assert [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")] == [opset]
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named, dynamic batch axis
    legacy = [m for m in caplog.messages if "TorchScript exporter" in m]
    assert len(legacy) == (opset < 18) and caplog.messages == legacy  # a trained checkpoint: no other note
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 3):  # traced at batch 2, neither is specialised into the graph
        x = torch.randn(batch, 3, 96, 96)
        expected = fuse_model(model)(x).numpy()
        actual = session.run(None, {"image": x.numpy()})[0]
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)
    assert not list(tmp_path.glob(".*tmp*"))


def test_export_without_a_checkpoint_says_the_weights_are_random(tmp_path, caplog):
    cfg = ArchConfig(embed_dim=16, depths=(1, 1, 1, 1), num_classes=10)
    with caplog.at_level("WARNING", logger="patsearch.export"):
        export_onnx(cfg, tmp_path / "m.onnx", resolution=32)
    assert len(caplog.messages) == 1 and "no --checkpoint" in caplog.messages[0]
    assert "random initialisation" in caplog.messages[0] and "--checkpoint runs/<name>/best.pt" in caplog.messages[0]


def test_export_errors(tmp_path, trained_checkpoint):
    _, ckpt, arch_path = trained_checkpoint
    with pytest.raises(UserError, match="opset 11 is too old"):
        export_onnx(str(arch_path), tmp_path / "m.onnx", opset=11)
    with pytest.raises(UserError, match="does not exist"):
        export_onnx(str(arch_path), tmp_path / "m.onnx", checkpoint=tmp_path / "nope.pt")
    with pytest.raises(UserError, match="does not match the architecture"):
        export_onnx("patnet_t0", tmp_path / "m.onnx", checkpoint=ckpt)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="is damaged or not a torch checkpoint"):
        export_onnx(str(arch_path), tmp_path / "m.onnx", checkpoint=corrupt)
    assert not (tmp_path / "m.onnx").exists()


def test_class_count_comes_from_a_trained_checkpoint(tmp_path):
    """Checkpoints of `patsearch train` record their classes, so --num-classes is not needed to export them."""
    cfg = ArchConfig(embed_dim=16, depths=(1, 1, 1, 1))  # num_classes 1000 in the description
    model = create_model(cfg.replace(num_classes=10))
    path = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "classes": [f"c{i}" for i in range(10)]}, path)
    out = export_onnx(str(cfg.save(tmp_path / "arch.yaml")), tmp_path / "m.onnx", checkpoint=path, resolution=64)
    x = torch.randn(1, 3, 64, 64)
    actual = ort.InferenceSession(str(out)).run(None, {"image": x.numpy()})[0]
    assert actual.shape == (1, 10)
    np.testing.assert_allclose(actual, fuse_model(model)(x).numpy(), rtol=1e-4, atol=1e-5)


def test_export_emits_no_tracer_warning_and_the_graph_still_matches(tmp_path):
    # a 32 px input reaches stage 4 as a 1x1 map: the Gaussian SE's size test is traced both ways across stages
    cfg = ArchConfig(embed_dim=16, depths=(1, 1, 1, 1), num_classes=10)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")  # record every warning, including ones shown once before
        torch.manual_seed(0)  # the exported weights are a fresh init: the reference below is the same one
        out = export_onnx(cfg, tmp_path / "m.onnx", resolution=32)
    tracer = [w for w in record if issubclass(w.category, torch.jit.TracerWarning)]
    assert tracer == [], [str(w.message) for w in tracer]
    torch.manual_seed(0)
    ref_model = fuse_model(create_model(cfg)).eval()
    x = torch.randn(2, 3, 32, 32)
    ref = ref_model(x).detach().numpy()
    got = ort.InferenceSession(str(out)).run(None, {"image": x.numpy()})[0]
    assert np.abs(got - ref).max() < 1e-4
