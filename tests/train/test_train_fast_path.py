"""The trainer's tensor-cache path (crop: pad recipes, the proxy) and the run's reporting: progress lines off a
terminal, the precision it really uses, and a batch size it refuses before doing any work."""
import logging
import sys

import pytest
import torch
from train_helpers import TINY_ARCH, TINY_RUN, write_tiny_arch

from patsearch.data import tensor_cache
from patsearch.errors import UserError
from patsearch.train import train


def colour_folder(root, n_train=48, n_val=24, size=32):
    """A learnable ImageFolder (CIFAR layout: train/ and test/): reddish vs bluish noise images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_val)):
        for label, cls in enumerate(("red", "blue")):
            (root / split / cls).mkdir(parents=True)
            for i in range(n // 2):
                img = rng.integers(0, 140, (size, size, 3))
                img[..., 0 if label == 0 else 2] += 110
                Image.fromarray(img.astype(np.uint8)).save(root / split / cls / f"{i}.png")
    return root


def test_proxy_recipe_learns_from_device_tensors(tmp_path):
    tensor_cache.clear_memo()
    data = colour_folder(tmp_path / "data")
    result = train(TINY_ARCH, **TINY_RUN, data=data, epochs=4, batch_size=16, lr=3e-3,
                   tensor_cache_dir=tmp_path / "cache")
    assert result["run"]["data_path"] == "tensor-cache"
    hist = result["history"]
    assert len(hist) == 4 and hist[-1]["val_samples"] == 24 and result["global_step"] == 12
    assert hist[-1]["train_loss"] < hist[0]["train_loss"], hist
    assert hist[-1]["top1"] >= 90.0, hist  # chance is 50%


def test_tensor_cache_file_is_shared_by_runs(tmp_path, monkeypatch):
    tensor_cache.clear_memo()
    cache = tmp_path / "cache"
    train(TINY_ARCH, **TINY_RUN, epochs=1, batch_size=16, synthetic=(32, 16), tensor_cache_dir=cache)
    files = [p for p in cache.iterdir() if p.suffix == ".pt"]
    assert len(files) == 1 and files[0].name.startswith("synthetic-")
    tensor_cache.clear_memo()
    monkeypatch.setattr(tensor_cache, "decode", lambda *a, **k: pytest.fail("decoded again"))
    result = train(TINY_ARCH, **TINY_RUN, epochs=1, batch_size=16, synthetic=(32, 16), tensor_cache_dir=cache)
    assert result["global_step"] == 2


def test_same_seed_same_run_other_seed_differs():
    def losses(seed):
        seen = []
        train(TINY_ARCH, **TINY_RUN, epochs=2, batch_size=16, synthetic=(48, 16), seed=seed,
              on_step_end=lambda step, loss: seen.append(loss))
        return seen

    a = losses(0)
    assert a == losses(0) and a != losses(1) and len(a) == 6


@pytest.mark.parametrize("batch", [0, -4])
def test_batch_size_below_one_is_refused_before_any_work(batch, tmp_path):
    with pytest.raises(UserError, match=rf"--batch-size must be a positive integer .*got {batch}"):
        train(TINY_ARCH, **TINY_RUN, batch_size=batch, synthetic=(32, 16), out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _cli_train_error(tmp_path, monkeypatch, capsys, *flags: str) -> tuple[int, str]:
    """Exit code and stderr of ``patsearch train`` on a tiny arch with these extra flags (a bad-input run)."""
    import cli

    arch = write_tiny_arch(tmp_path)
    monkeypatch.setattr(sys, "argv", ["patsearch", "train", "--arch", str(arch), "--device", "cpu", "--no-progress",
                                      "--out", str(tmp_path / "run"), *flags])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return exc.value.code, capsys.readouterr().err.strip()


def test_cli_batch_size_zero_is_one_line(tmp_path, monkeypatch, capsys):
    code, err = _cli_train_error(tmp_path, monkeypatch, capsys, "--batch-size", "0")
    assert code == 2 and err == "error: --batch-size must be a positive integer (the global batch), got 0"
    assert not (tmp_path / "run").exists()


def test_piped_output_gets_progress_lines_and_the_real_precision(caplog):
    # pytest's stdout is not a terminal, as under nohup or CI: progress comes as plain lines through logging
    caplog.set_level(logging.INFO, logger="patsearch")
    train(TINY_ARCH, **{**TINY_RUN, "progress": True}, epochs=2, batch_size=16, synthetic=(64, 16), log_every=2)
    out = "\n".join(caplog.messages)
    assert "float32 (amp off on CPU)" in out and "amp None" not in out
    steps = [line for line in out.splitlines() if " step " in line]
    # 4 steps per epoch, a line every 2 steps: 2 per epoch
    assert [line.split(" step ")[1].split(" ")[0] for line in steps] == ["2/4", "4/4", "2/4", "4/4"], out
    assert all("loss " in line and " eta " in line for line in steps)
    assert sum(line.startswith("epoch ") and "top1" in line for line in out.splitlines()) == 2


def test_mixup_runs_on_the_tensor_path():
    from patsearch.train.recipe import load_recipe

    rec = load_recipe("proxy").replace(mixup_alpha=0.4, cutmix_alpha=1.0)
    result = train(TINY_ARCH, **{**TINY_RUN, "recipe": rec}, epochs=1, batch_size=16, synthetic=(32, 16))
    assert result["run"]["data_path"] == "tensor-cache" and result["global_step"] == 2
    assert result["final"]["val_samples"] == 16


# --- the paper recipes from device tensors (--data-loader device) --------------------------------------------
def test_paper_recipe_learns_from_device_tensors_stored_at_the_images_size(tmp_path):
    """patnet_t0's recipe (random-resized crop, flip, RandAugment m7, Mixup/CutMix) at 64 px from 32 px images: the
    cache keeps them at 32 px (train) and the eval crop at 64 px (val), and the network learns."""
    tensor_cache.clear_memo()
    data = colour_folder(tmp_path / "data")
    result = train(TINY_ARCH, **{**TINY_RUN, "recipe": "patnet_t0", "resolution": 64}, data=data, epochs=6,
                   batch_size=16, lr=3e-3, data_loader="device", tensor_cache_dir=tmp_path / "cache")
    assert result["run"]["data_path"] == "tensor-cache"
    (cache_file,) = [p for p in (tmp_path / "cache").iterdir() if p.suffix == ".pt"]
    stored = torch.load(cache_file, weights_only=True)
    assert stored["train_images"].shape[1:] == (3, 32, 32) and stored["val_images"].shape[1:] == (3, 64, 64)
    hist = result["history"]
    assert [h["resolution"] for h in hist] == [64] * 6
    assert hist[-1]["train_loss"] < hist[0]["train_loss"], hist
    assert hist[-1]["top1"] >= 80.0, hist  # chance is 50%


def test_device_loader_refuses_colour_jitter(tmp_path):
    from patsearch.train.recipe import load_recipe

    rec = load_recipe("patnet_t0").replace(color_jitter=0.4)
    with pytest.raises(UserError, match=r"^recipe patnet_t0 has colour jitter, which the device loader does not "
                                        r"do; use --data-loader files$"):
        train(TINY_ARCH, **{**TINY_RUN, "recipe": rec}, epochs=1, batch_size=16, synthetic=(32, 16),
              data_loader="device", out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_proxy_recipe_has_no_file_loader_and_bad_loaders_are_named(tmp_path):
    with pytest.raises(UserError, match=r"^recipe proxy crops by padding, which only the device loader does; drop "
                                        r"--data-loader files$"):
        train(TINY_ARCH, **TINY_RUN, epochs=1, batch_size=16, synthetic=(32, 16), data_loader="files")
    with pytest.raises(UserError, match=r"^--data-loader must be one of auto, files, device, got 'gpu'$"):
        train(TINY_ARCH, **TINY_RUN, epochs=1, batch_size=16, synthetic=(32, 16), data_loader="gpu")


def test_cli_bad_data_loader_is_one_line(tmp_path, monkeypatch, capsys):
    code, err = _cli_train_error(tmp_path, monkeypatch, capsys, "--data-loader", "gpu")
    assert code == 2 and err == "error: --data-loader must be one of auto, files, device, got 'gpu'"
    assert not (tmp_path / "run").exists()
