"""ImageNet-style folders: ``ROOT/train/<class>/<image>`` and ``ROOT/val/<class>/<image>`` (``test/`` is accepted
for ``val/``, as in the CIFAR-10 folder), validated up front with one-line errors.

Small images (CIFAR's 32x32) can be decoded once into one uint8 array in memory (``cache="memory"``): a GPU trains
on them faster than a pool of workers can open and decode files, and the decode also checks every file, so a corrupt
image is reported before training starts. ``cache="auto"`` does this when the images are small and fit in a budget.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from patsearch.errors import UserError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
VAL_NAMES = ("val", "test", "validation")
MEMORY_CACHE_MAX_SIDE = 96            # auto-cache only images this small ...
MEMORY_CACHE_BUDGET = 4 * 1024 ** 3   # ... and only if the decoded set fits in this many bytes


class DataError(UserError):
    """A dataset path, folder or file is unusable.

    Raised in a DataLoader worker process, it reaches the main process rebuilt by torch from one string: the
    worker's whole traceback after "Caught DataError in DataLoader worker process N". The rebuilt error keeps
    only the original one-line message, so the user sees what the in-process path shows.
    """

    def __init__(self, message: str = "") -> None:
        super().__init__(_worker_message(message))


def _worker_message(message: str) -> str:
    """The original message of a DataError that torch re-raised from a loader worker's traceback text."""
    if not (message.startswith("Caught DataError") and "Traceback" in message):
        return message
    marker = f"{DataError.__module__}.{DataError.__qualname__}: "
    last = [line for line in message.splitlines() if line.startswith(marker)]
    return last[-1][len(marker):] if last else message


def split_dir(root: str | os.PathLike, split: str) -> Path:
    """The folder of one split, with a clear error when it is missing."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data path {root} does not exist; pass an ImageNet-style folder with train/ and val/ "
                        "folders of class folders")
    if not root.is_dir():
        raise DataError(f"data path {root} is not a folder; pass an ImageNet-style folder with train/ and val/")
    names = ("train",) if split == "train" else VAL_NAMES
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise DataError(f"data path {root} has no {' or '.join(n + '/' for n in names)} folder; expected "
                    f"{root}/{names[0]}/<class>/<image>.jpg")


def class_folders(folder: Path) -> list[str]:
    """The class names of one split folder: its visible subfolders, sorted."""
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def scan_split(folder: Path, classes: list[str] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names (sorted folder names, or the given ones) and ``(path, label)`` samples of one split folder."""
    found = class_folders(folder)
    if not found:
        raise DataError(f"{folder} has no class folders; expected {folder}/<class>/<image>.jpg")
    if classes is None:
        classes = found
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DataError(f"{folder} has class folder(s) not in train/: {', '.join(extra[:5])}; "
                            "the splits must use the same class names")
    index = {name: i for i, name in enumerate(classes)}
    samples: list[tuple[str, int]] = []
    for name in found:
        files = sorted(e.path for e in os.scandir(folder / name)
                       if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS))
        if not files:
            raise DataError(f"class folder {folder / name} has no images ({', '.join(IMG_EXTENSIONS)}); "
                            "add images or remove the folder")
        samples.extend((path, index[name]) for path in files)
    return classes, samples


def load_image(path: str) -> Image.Image:
    """Open one image as RGB, turning any decode failure into a one-line :class:`DataError`."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"corrupt or unreadable image {path} ({reason}); remove or replace the file") from None


def _decode_chunk(paths: list[str]) -> list[np.ndarray]:
    return [np.asarray(load_image(p)) for p in paths]


class ImageFolderDataset:
    """A map-style dataset of ``(PIL.Image, label)`` over one split, optionally decoded once into memory."""

    def __init__(self, root: str | os.PathLike, split: str = "train", *, classes: list[str] | None = None,
                 cache: str = "auto", workers: int = 8) -> None:
        if cache not in ("auto", "memory", "none"):
            raise DataError(f"cache must be auto, memory or none, got {cache!r}")
        self.root = split_dir(root, split)
        self.classes, self.samples = scan_split(self.root, classes)
        self.targets = [label for _, label in self.samples]
        self.images: np.ndarray | list[np.ndarray] | None = None
        if cache == "memory" or (cache == "auto" and self._small_enough()):
            self._decode_all(workers)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_memory(self) -> bool:
        return self.images is not None

    def _small_enough(self) -> bool:
        first = load_image(self.samples[0][0])
        w, h = first.size
        return max(w, h) <= MEMORY_CACHE_MAX_SIDE and w * h * 3 * len(self.samples) <= MEMORY_CACHE_BUDGET

    def _decode_all(self, workers: int) -> None:
        paths = [path for path, _ in self.samples]
        if workers > 1 and len(paths) >= 4096 and "fork" in mp.get_all_start_methods():
            # JPEG decoding holds the GIL for much of its time: processes, not threads, for large sets
            chunks = [paths[i:i + 1024] for i in range(0, len(paths), 1024)]
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
                arrays = [a for chunk in pool.map(_decode_chunk, chunks) for a in chunk]
        else:
            with ThreadPoolExecutor(max(1, workers)) as pool:
                arrays = list(pool.map(lambda p: np.asarray(load_image(p)), paths))
        shapes = {a.shape for a in arrays}
        # One contiguous array when all images share a size (shared copy-on-write with DataLoader workers).
        self.images = np.stack(arrays) if len(shapes) == 1 else arrays

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        label = self.targets[index]
        if self.images is not None:
            return Image.fromarray(self.images[index]), label
        return load_image(self.samples[index][0]), label


def open_image_folder(root: str | os.PathLike, *, cache: str = "auto",
                      workers: int = 8) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """The train and val splits of an ImageNet-style folder, validated (paths, empty folders, class names)."""
    train = ImageFolderDataset(root, "train", cache=cache, workers=workers)
    val = ImageFolderDataset(root, "val", classes=train.classes, cache=cache, workers=workers)
    return train, val
