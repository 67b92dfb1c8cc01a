"""A run that fails says so in one line and leaves nothing that looks like a run; a damaged checkpoint is named,
with the way forward, and never with torch's advice to load it unsafely."""
import numpy as np
import pytest
import torch
from PIL import Image
from train_helpers import TINY_ARCH, TINY_RUN

from patsearch.data.folder import DataError
from patsearch.errors import UserError
from patsearch.train import TrainingDiverged, evaluate_checkpoint, train
from patsearch.train import checkpoint as ckpt
from patsearch.train.engine import build_model


def image_folder(root, classes=("a", "b"), per_class=8, bad: str | None = None):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    if bad:
        (root / "train" / classes[-1] / bad).write_bytes(rng.bytes(3000))
    return root


def test_nan_before_any_checkpoint_leaves_no_run_folder(tmp_path, monkeypatch):
    import patsearch.train.loop as loop

    real = loop.build_criterion

    def poisoned(recipe, num_classes):
        criterion, mixup = real(recipe, num_classes)
        return (lambda logits, target: criterion(logits, target) * float("nan")), mixup

    monkeypatch.setattr(loop, "build_criterion", poisoned)
    out = tmp_path / "runs" / "run"
    with pytest.raises(TrainingDiverged, match=r"loss became NaN or infinite in epoch 0 .*stopped without saving"):
        train(TINY_ARCH, **{**TINY_RUN, "tensorboard": True}, epochs=2, batch_size=16, synthetic=(32, 16),
              out_dir=out)
    assert list(tmp_path.iterdir()) == []  # neither the run folder (it held tb/) nor the runs/ it created


def test_a_failure_keeps_a_run_folder_that_existed(tmp_path, monkeypatch):
    import patsearch.train.loop as loop

    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    monkeypatch.setattr(loop, "build_criterion", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        train(TINY_ARCH, **TINY_RUN, epochs=1, batch_size=16, synthetic=(32, 16), out_dir=out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_corrupt_image_in_a_loader_process_is_one_line_and_leaves_no_run_folder(tmp_path):
    data = image_folder(tmp_path / "data", bad="zz_bad.png")
    messages = []
    for workers in (0, 1):  # in process, then in a DataLoader worker process
        out = tmp_path / "runs" / f"w{workers}"
        with pytest.raises(DataError) as info:
            train(TINY_ARCH, **{**TINY_RUN, "recipe": "patnet_t0", "workers": workers, "tensorboard": True},
                  data=data, cache="none", epochs=1, batch_size=4, out_dir=out)
        messages.append(str(info.value))
        assert not (tmp_path / "runs").exists()
    assert messages[0].startswith("corrupt or unreadable image ") and "zz_bad.png" in messages[0]
    assert messages[1] == messages[0]


def _short_run(out, **kwargs):
    return train(TINY_ARCH, **TINY_RUN, epochs=2, batch_size=8, synthetic=(32, 16), out_dir=out, max_steps=1,
                 **kwargs)


def test_a_damaged_latest_checkpoint_is_named_with_the_way_forward(tmp_path):
    out = tmp_path / "run"
    _short_run(out)
    latest = out / ckpt.LATEST
    latest.write_bytes(latest.read_bytes()[:1000])  # cut short, as by a full disk
    with pytest.raises(ckpt.CheckpointError) as info:
        _short_run(out, resume="auto")
    message = str(info.value)
    assert message.startswith(f"checkpoint {latest} is damaged")
    assert f"--resume {out / ckpt.BEST}" in message and "start over" in message
    assert "weights_only" not in message and "\n" not in message
    (out / ckpt.BEST).unlink()
    with pytest.raises(ckpt.CheckpointError, match=rf"is damaged .*; start over by moving {latest} away"):
        _short_run(out, resume="auto")


def test_eval_of_random_bytes_gives_no_unsafe_advice(tmp_path):
    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ckpt.CheckpointError) as info:
        evaluate_checkpoint(path, device="cpu")
    message = str(info.value)
    assert message.startswith(f"checkpoint {path} is damaged or not a torch checkpoint")
    assert "weights_only" not in message and "\n" not in message


def test_eval_on_a_folder_of_other_classes_blames_the_mismatch(tmp_path):
    model = build_model(TINY_ARCH, 2)
    path = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "arch": TINY_ARCH, "classes": ["a", "b"]}, path)
    data = image_folder(tmp_path / "data", classes=("a", "eel"), per_class=2)
    with pytest.raises(ckpt.CheckpointError) as info:
        evaluate_checkpoint(path, data=data, device="cpu")
    message = str(info.value)
    assert f"checkpoint {path} and --data {data} do not match" in message and "eel" in message
    assert "train/" not in message
    matching = image_folder(tmp_path / "same", classes=("a", "b"), per_class=2)
    assert evaluate_checkpoint(path, data=matching, device="cpu", resolution=32)["val_samples"] == 4


def test_a_corrupt_image_while_building_the_tensor_cache_leaves_no_cache_folder(tmp_path):
    # The proxy recipe decodes the set into runs/.proxy-data; a failed decode must not leave that folder behind.
    data = image_folder(tmp_path / "data", bad="zz_bad.png")
    runs = tmp_path / "runs"
    with pytest.raises(DataError, match="corrupt or unreadable image .*zz_bad.png"):
        train(TINY_ARCH, **TINY_RUN, data=data, cache="none", epochs=1, batch_size=4, out_dir=runs / "run",
              tensor_cache_dir=runs / ".proxy-data")
    assert not runs.exists()


def test_a_run_that_fails_after_building_the_tensor_cache_takes_its_cache_folder_back(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(UserError, match=r"training set \(16 images\) is smaller than one global batch \(64\)"):
        train(TINY_ARCH, **TINY_RUN, synthetic=(16, 8), batch_size=64, out_dir=runs / "run",
              tensor_cache_dir=runs / ".proxy-data")
    assert not runs.exists()


@pytest.mark.parametrize("bad,error", [
    (dict(arch="fasternet_q"), "unknown architecture 'fasternet_q'"),
    (dict(data="nowhere"), "data path nowhere does not exist"),
    (dict(resume="nope.pt"), "resume checkpoint nope.pt does not exist"),
])
def test_a_bad_argument_fails_before_the_run_notes_and_leaves_nothing(tmp_path, monkeypatch, caplog, bad, error):
    monkeypatch.chdir(tmp_path)
    kwargs = {"arch": TINY_ARCH, **TINY_RUN, "epochs": 300, **bad}  # 300 epochs on a CPU: a note, if it came
    with caplog.at_level("INFO", logger="patsearch"), pytest.raises(UserError, match=error):
        train(**kwargs, out_dir=tmp_path / "run")
    assert not [m for m in caplog.messages if "note:" in m]  # the error is the run's only line
    assert not (tmp_path / "run").exists()
