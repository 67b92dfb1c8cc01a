import numpy as np
import pytest
from PIL import Image

from patsearch.data.folder import DataError, ImageFolderDataset, open_image_folder


def make_folder(root, classes=("cat", "dog"), per_class=3, val_name="val", size=(20, 16)):
    rng = np.random.default_rng(0)
    for split in ("train", val_name):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_reads_train_and_val_splits(tmp_path, cache):
    make_folder(tmp_path)
    train, val = open_image_folder(tmp_path, cache=cache)
    assert train.classes == ["cat", "dog"] and len(train) == 6 and len(val) == 6
    img, label = train[4]
    assert img.size == (20, 16) and label == 1
    assert train.in_memory == (cache == "memory")


def test_memory_cache_gives_the_same_pixels(tmp_path):
    make_folder(tmp_path)
    lazy, cached = ImageFolderDataset(tmp_path, cache="none"), ImageFolderDataset(tmp_path, cache="memory")
    for i in range(len(lazy)):
        assert np.array_equal(np.asarray(lazy[i][0]), np.asarray(cached[i][0]))


def test_auto_cache_only_for_small_images(tmp_path):
    make_folder(tmp_path / "small")
    make_folder(tmp_path / "large", size=(128, 100))
    assert ImageFolderDataset(tmp_path / "small").in_memory
    assert not ImageFolderDataset(tmp_path / "large").in_memory


def test_test_folder_serves_as_val(tmp_path):
    make_folder(tmp_path, val_name="test")
    _, val = open_image_folder(tmp_path)
    assert val.root.name == "test" and len(val) == 6


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"data path .*nope does not exist"):
        open_image_folder(tmp_path / "nope")


def test_file_instead_of_folder(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(DataError, match="is not a folder"):
        open_image_folder(tmp_path / "f.txt")


def test_missing_train_folder(tmp_path):
    (tmp_path / "val").mkdir()
    with pytest.raises(DataError, match="has no train/ folder"):
        open_image_folder(tmp_path)


def test_missing_val_folder(tmp_path):
    make_folder(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "val")
    with pytest.raises(DataError, match="has no val/ or test/ or validation/ folder"):
        open_image_folder(tmp_path)


def test_no_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(DataError, match="has no class folders"):
        open_image_folder(tmp_path)


def test_empty_class_folder(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "train" / "emu").mkdir()
    (tmp_path / "train" / "emu" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"class folder .*emu has no images"):
        open_image_folder(tmp_path)


def test_val_classes_must_match_train(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "val" / "eel").mkdir()
    with pytest.raises(DataError, match="not in train/: eel"):
        open_image_folder(tmp_path)


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_corrupt_image_names_the_file(tmp_path, cache):
    make_folder(tmp_path)
    bad = tmp_path / "train" / "dog" / "1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match=r"corrupt or unreadable image .*dog/1.png .*remove or replace") as info:
        ds = ImageFolderDataset(tmp_path, cache=cache)
        [ds[i] for i in range(len(ds))]
    assert "\n" not in str(info.value)


def test_a_corrupt_image_found_by_a_loader_worker_is_the_same_one_line(tmp_path):
    """torch re-raises a worker's error from its traceback text; the user still sees the one-line message."""
    import torch

    make_folder(tmp_path)
    (tmp_path / "train" / "dog" / "zz_bad.png").write_bytes(np.random.default_rng(1).bytes(3000))
    ds = ImageFolderDataset(tmp_path, cache="none")
    messages = []
    for workers in (0, 1):
        loader = torch.utils.data.DataLoader(ds, batch_size=len(ds), num_workers=workers, collate_fn=list)
        with pytest.raises(DataError) as info:
            list(loader)
        messages.append(str(info.value))
    assert messages[0].startswith("corrupt or unreadable image ") and "zz_bad.png" in messages[0]
    assert messages[1] == messages[0]
