"""The proxy's tensor cache: content-and-resolution keys, atomic files, reuse without decoding."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from patsearch.data import tensor_cache as tc
from patsearch.data.folder import DataError


def make_folder(root, per_class=3, size=40, seed=0):
    """A tiny ImageFolder of random PNGs (lossless, so decoded pixels are known): train/ and test/ (CIFAR layout)."""
    rng = np.random.default_rng(seed)
    pixels = {}
    for split, n in (("train", per_class), ("test", 2)):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                path = root / split / cls / f"{i}.png"
                Image.fromarray(arr).save(path)
                pixels[str(path)] = arr
    return pixels


@pytest.fixture(autouse=True)
def _fresh_memo():
    tc.clear_memo()
    yield
    tc.clear_memo()


def test_key_follows_content_and_resolution(tmp_path):
    make_folder(tmp_path)
    src = tc.TensorSource(root=str(tmp_path))
    key = tc.cache_key(src, 32, 32)
    assert tc.cache_key(src, 32, 32) == key                     # nothing changed
    assert tc.cache_key(src, 64, 64) != key                     # another resolution
    assert tc.cache_key(src, 32, 64) != key                     # another test resolution
    path = tmp_path / "train" / "cat" / "0.png"
    Image.fromarray(np.zeros((40, 41, 3), dtype=np.uint8)).save(path)   # one file's content changes
    changed = tc.cache_key(src, 32, 32)
    assert changed != key
    (tmp_path / "test" / "dog" / "1.png").unlink()               # a file disappears
    assert tc.cache_key(src, 32, 32) not in (key, changed)
    syn = tc.TensorSource(synthetic=(10, 4), seed=0)
    assert tc.cache_key(syn, 32, 32) != tc.cache_key(tc.TensorSource(synthetic=(10, 4), seed=1), 32, 32)


def test_decode_gives_the_pixels_at_the_resolution(tmp_path):
    pixels = make_folder(tmp_path, size=32)
    train, val = tc.decode(tc.TensorSource(root=str(tmp_path)), 32, 32, workers=1)
    assert train.images.shape == (6, 3, 32, 32) and train.images.dtype == torch.uint8
    assert val.images.shape == (4, 3, 32, 32) and train.classes == val.classes == ("cat", "dog")
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1] and val.labels.tolist() == [0, 0, 1, 1]
    first = pixels[str(tmp_path / "train" / "cat" / "0.png")]
    assert torch.equal(train.images[0], torch.from_numpy(first).permute(2, 0, 1))  # 32 px stays exact
    small, _ = tc.decode(tc.TensorSource(root=str(tmp_path)), 16, 16, workers=1)
    assert small.images.shape == (6, 3, 16, 16)


def test_second_load_reuses_the_file_without_decoding(tmp_path, monkeypatch):
    make_folder(tmp_path / "data")
    src = tc.TensorSource(root=str(tmp_path / "data"))
    calls = []
    real = tc.decode
    monkeypatch.setattr(tc, "decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    train, val = tc.load_or_build(src, 32, 32, cache_dir=tmp_path / "cache", workers=1)
    files = sorted(p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock"))
    assert calls == [1] and files == [f"data-{tc.cache_key(src, 32, 32)}.pt"]
    tc.clear_memo()  # as another process would: only the file is left

    def no_decode(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(tc, "decode", no_decode)
    train2, val2 = tc.load_or_build(src, 32, 32, cache_dir=tmp_path / "cache", workers=1)
    assert torch.equal(train.images, train2.images) and torch.equal(val.labels, val2.labels)
    assert train2.classes == ("cat", "dog")
    monkeypatch.setattr(tc, "decode", real)
    tc.load_or_build(src, 64, 64, cache_dir=tmp_path / "cache", workers=1)  # another resolution: another file
    assert len([p for p in (tmp_path / "cache").iterdir() if p.suffix == ".pt"]) == 2


def test_a_failed_build_keeps_a_cache_folder_that_existed(tmp_path, monkeypatch):
    make_folder(tmp_path / "data")
    cache = tmp_path / "cache"
    (cache / "other").mkdir(parents=True)  # another set's cache
    monkeypatch.setattr(tc, "decode", lambda *a, **k: (_ for _ in ()).throw(tc.DataError("corrupt image x.png")))
    with pytest.raises(tc.DataError):
        tc.load_or_build(tc.TensorSource(root=str(tmp_path / "data")), 32, 32, cache_dir=cache, workers=1)
    assert sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*")) == ["other"]


def test_write_is_atomic_and_synced(tmp_path, monkeypatch):
    make_folder(tmp_path / "data")
    src = tc.TensorSource(root=str(tmp_path / "data"))
    cache = tmp_path / "cache"
    real_save = torch.save

    def dies_midway(obj, fh):
        fh.write(b"partial bytes")
        raise KeyboardInterrupt  # a kill while writing

    monkeypatch.setattr(tc.torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        tc.load_or_build(src, 32, 32, cache_dir=cache, workers=1)
    assert not cache.exists()  # no partial or temp file, no lock: the folder this failed build created is gone

    monkeypatch.setattr(tc.torch, "save", real_save)
    synced, replaced = [], []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(tc.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))

    def spy_replace(a, b):
        assert not os.path.exists(b) and os.path.getsize(a) > 6 * 3 * 32 * 32  # complete before it is visible
        replaced.append((a, b))
        return real_replace(a, b)

    monkeypatch.setattr(tc.os, "replace", spy_replace)
    tc.load_or_build(src, 32, 32, cache_dir=cache, workers=1)
    assert len(replaced) == 1 and len(synced) == 2  # the file, then its folder
    assert os.path.basename(replaced[0][0]).startswith(".")


def test_a_stale_or_corrupt_file_is_rebuilt(tmp_path):
    make_folder(tmp_path / "data")
    src = tc.TensorSource(root=str(tmp_path / "data"))
    path = tc.cache_path(tmp_path / "cache", src, tc.cache_key(src, 32, 32))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a torch file")
    train, _ = tc.load_or_build(src, 32, 32, cache_dir=tmp_path / "cache", workers=1)
    assert len(train) == 6
    assert torch.load(path, weights_only=True)["key"] == tc.cache_key(src, 32, 32)


def test_synthetic_source_and_budget(tmp_path):
    train, val = tc.load_or_build(tc.TensorSource(synthetic=(20, 10), seed=3), 32, 32)
    assert train.images.shape == (20, 3, 32, 32) and len(val) == 10 and len(train.classes) == 10
    assert train.labels.tolist() == [i % 10 for i in range(20)]
    with pytest.raises(DataError, match=r"needs .* GB, more than the in-memory tensor budget"):
        tc.load_or_build(tc.TensorSource(synthetic=(20, 10)), 32, 32, budget=1000)
