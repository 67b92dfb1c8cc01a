"""A dataset decoded once into uint8 tensors at one resolution, for fast proxy training on the device.

A proxy run on CIFAR-sized data spends most of its time opening, decoding and augmenting images on the host. Here
the train and val splits are decoded once, resized to the training (and test) resolution, and stored as
``(N, 3, R, R)`` uint8 tensors plus int64 labels in one file under ``cache_dir`` (``runs/.proxy-data``). The file
name is a hash of the data's content (every file's relative path, size and mtime; or the synthetic set's
parameters) and the resolutions, so a changed dataset or resolution never reads a stale cache, and every candidate
and every worker process of a search reuses the same decode. The file is written under a temp name, fsynced and
renamed (a kill leaves no partial file), under a lock so that workers starting together decode once.

The trainer moves the tensors to the device and batches them there (:mod:`patsearch.data.device_loader`, which
augments with :mod:`patsearch.data.device_augment`).
"""
from __future__ import annotations

import fcntl
import hashlib
import multiprocessing as mp
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from patsearch.data.folder import DataError, load_image, scan_split, split_dir
from patsearch.io import atomic_open, missing_folders

FORMAT_VERSION = 1
DEFAULT_BUDGET = 4 * 1024 ** 3  # decoded bytes (both splits) a tensor cache may hold


@dataclass(frozen=True)
class TensorSplit:
    """One split as tensors: ``images`` (N, 3, R, R) uint8, ``labels`` (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> TensorSplit:
        return TensorSplit(self.images.to(device, non_blocking=True), self.labels.to(device, non_blocking=True),
                           self.classes)


@dataclass(frozen=True)
class TensorSource:
    """What to decode: a folder (``root``) or the built-in synthetic set (``synthetic=(n_train, n_val)``)."""

    root: str | None = None
    synthetic: tuple[int, int] | None = None
    synthetic_image_size: int = 64
    seed: int = 0

    def counts(self) -> tuple[int, int]:
        """Images in the train and val splits (for the memory budget), without decoding anything."""
        if self.root is None:
            n_train, n_val = self.synthetic or (0, 0)
            return n_train, n_val
        classes, train = scan_split(split_dir(self.root, "train"))
        _, val = scan_split(split_dir(self.root, "val"), classes)
        return len(train), len(val)

    def native_size(self, probe: int = 16) -> int:
        """The largest shorter side among the first ``probe`` training images (headers only): the size above
        which storing the set gains nothing."""
        if self.root is None:
            return self.synthetic_image_size
        _, train = scan_split(split_dir(self.root, "train"))
        sizes = []
        for path, _ in train[:probe]:
            with Image.open(path) as img:
                sizes.append(min(img.size))
        if not sizes:
            raise DataError(f"{self.root}: the train split has no images")
        return max(sizes)


def cache_key(source: TensorSource, resolution: int, test_resolution: int, test_crop_pct: float = 1.0) -> str:
    """A hash of the data's content and the resolutions: any change to either names another file."""
    h = hashlib.sha256(f"v{FORMAT_VERSION}|{resolution}|{test_resolution}|{test_crop_pct:.6f}".encode())
    if source.root is None:
        n_train, n_val = source.synthetic or (0, 0)
        h.update(f"|synthetic|{n_train}|{n_val}|{source.synthetic_image_size}|{source.seed}".encode())
        return h.hexdigest()[:24]
    root = Path(source.root)
    classes, train = scan_split(split_dir(root, "train"))
    _, val = scan_split(split_dir(root, "val"), classes)
    h.update(("|classes|" + "/".join(classes)).encode())
    for split, samples in (("train", train), ("val", val)):
        base = split_dir(root, split)
        for path, label in samples:
            st = os.stat(path)  # follows the links of a proxy subset to the real files
            h.update(f"|{split}|{os.path.relpath(path, base)}|{label}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def decoded_bytes(source: TensorSource, resolution: int, test_resolution: int) -> int:
    """Bytes the decoded cache needs: the train split at ``resolution``, the val split at ``test_resolution``."""
    n_train, n_val = source.counts()
    return 3 * (n_train * resolution ** 2 + n_val * test_resolution ** 2)


def fit_image(img: Image.Image, size: int, crop_pct: float = 1.0) -> np.ndarray:
    """Resize the shorter side to ``size / crop_pct`` (bicubic) and centre-crop ``size``: (size, size, 3) uint8."""
    scale_to = round(size / crop_pct)
    w, h = img.size
    if (w, h) != (scale_to, scale_to) or scale_to != size:
        if w <= h:
            nw, nh = scale_to, max(scale_to, round(h * scale_to / w))
        else:
            nw, nh = max(scale_to, round(w * scale_to / h)), scale_to
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _decode_paths(args: tuple[list[str], int, float]) -> np.ndarray:
    paths, size, crop_pct = args
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        out[i] = fit_image(load_image(path), size, crop_pct)
    return out


def _decode_folder_split(samples: list[tuple[str, int]], size: int, crop_pct: float, workers: int) -> np.ndarray:
    paths = [p for p, _ in samples]
    chunks = [(paths[i:i + 2048], size, crop_pct) for i in range(0, len(paths), 2048)]
    if workers > 1 and len(chunks) > 1 and "fork" in mp.get_all_start_methods():
        # JPEG decoding holds the GIL much of the time: processes, in chunks, each returning one array
        with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=mp.get_context("fork")) as pool:
            parts = list(pool.map(_decode_paths, chunks))
    else:
        parts = [_decode_paths(c) for c in chunks]
    return np.concatenate(parts) if parts else np.empty((0, size, size, 3), dtype=np.uint8)


def _to_split(images: np.ndarray, labels: list[int], classes: list[str]) -> TensorSplit:
    return TensorSplit(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),
                       torch.tensor(labels, dtype=torch.int64), tuple(classes))


def decode(source: TensorSource, resolution: int, test_resolution: int, test_crop_pct: float = 1.0,
           workers: int = 4) -> tuple[TensorSplit, TensorSplit]:
    """Decode both splits: train at ``resolution`` (shorter side + centre crop), val as the eval transform does."""
    if source.root is None:
        from patsearch.data.synthetic import SyntheticShapes

        n_train, n_val = source.synthetic or (0, 0)
        out = []
        splits = (("train", n_train, resolution, 1.0), ("val", n_val, test_resolution, test_crop_pct))
        for split, n, size, pct in splits:
            ds = SyntheticShapes(n, image_size=source.synthetic_image_size, split=split, seed=source.seed)
            arr = np.stack([fit_image(ds[i][0], size, pct) for i in range(n)]) if n else \
                np.empty((0, size, size, 3), dtype=np.uint8)
            out.append(_to_split(arr, ds.targets, ds.classes))
        return out[0], out[1]
    classes, train = scan_split(split_dir(source.root, "train"))
    _, val = scan_split(split_dir(source.root, "val"), classes)
    train_labels = [label for _, label in train]
    val_labels = [label for _, label in val]
    return (_to_split(_decode_folder_split(train, resolution, 1.0, workers), train_labels, classes),
            _to_split(_decode_folder_split(val, test_resolution, test_crop_pct, workers), val_labels, classes))


def _read(path: Path, key: str) -> tuple[TensorSplit, TensorSplit] | None:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError):  # unreadable: rebuild it
        return None
    if not isinstance(payload, dict) or payload.get("key") != key or payload.get("version") != FORMAT_VERSION:
        return None
    classes = tuple(payload["classes"])
    return (TensorSplit(payload["train_images"], payload["train_labels"], classes),
            TensorSplit(payload["val_images"], payload["val_labels"], classes))


def cache_path(cache_dir: str | os.PathLike, source: TensorSource, key: str) -> Path:
    name = Path(source.root).resolve().name if source.root is not None else "synthetic"
    return Path(cache_dir) / f"{name}-{key}.pt"


# The last set this process loaded: the candidates of a search (one after another in a worker) skip the file read.
_MEMO: dict[str, tuple[TensorSplit, TensorSplit]] = {}


def load_or_build(source: TensorSource, resolution: int, test_resolution: int, test_crop_pct: float = 1.0, *,
                  cache_dir: str | os.PathLike | None = None, workers: int = 4,
                  budget: int = DEFAULT_BUDGET) -> tuple[TensorSplit, TensorSplit]:
    """The ``(train, val)`` tensors of ``source``: from this process's memo, the cache file, or a fresh decode.

    ``cache_dir=None`` keeps the decode in this process only. Raises :class:`DataError` when the decoded set
    would exceed ``budget`` bytes.
    """
    need = decoded_bytes(source, resolution, test_resolution)
    if need > budget:
        raise DataError(f"the data decoded at {resolution} px (train) and {test_resolution} px (val) needs "
                        f"{need / 1e9:.1f} GB, more than the in-memory tensor budget ({budget / 1e9:.1f} GB); use a "
                        "smaller --resolution or subset, or --data-loader files")
    key = cache_key(source, resolution, test_resolution, test_crop_pct)
    if key in _MEMO:
        return _MEMO[key]
    if cache_dir is None:
        result = decode(source, resolution, test_resolution, test_crop_pct, workers)
    else:
        path = cache_path(cache_dir, source, key)
        created = missing_folders(path.parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        result = _read(path, key) if path.exists() else None
        if result is None:
            try:
                result = _build_locked(path, key, source, resolution, test_resolution, test_crop_pct, workers)
            except BaseException:
                _remove_failed_build(path, created)
                raise
    _MEMO.clear()
    _MEMO[key] = result
    return result


def _build_locked(path: Path, key: str, source: TensorSource, resolution: int, test_resolution: int,
                  test_crop_pct: float, workers: int) -> tuple[TensorSplit, TensorSplit]:
    """Decode ``source`` into the cache file ``path`` under its lock (or read it, if another worker wrote it)."""
    with open(path.with_name(path.name + ".lock"), "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # another worker may be decoding the same data
        result = _read(path, key) if path.exists() else None
        if result is None:
            result = decode(source, resolution, test_resolution, test_crop_pct, workers)
            train, val = result
            payload = {"version": FORMAT_VERSION, "key": key, "classes": list(train.classes),
                       "train_images": train.images, "train_labels": train.labels,
                       "val_images": val.images, "val_labels": val.labels,
                       "resolution": resolution, "test_resolution": test_resolution}
            with atomic_open(path, "wb") as fh:  # readers see all of it or nothing
                torch.save(payload, fh)
    return result


def _remove_failed_build(path: Path, created: list[Path]) -> None:
    """After a decode failed (a corrupt image, an interrupt): remove its lock file and the folders this call
    created, if empty, so a failed run leaves no cache folder behind. A cache another run wrote stays."""
    if path.exists():
        return
    try:
        path.with_name(path.name + ".lock").unlink()
    except OSError:
        pass
    for folder in created:
        try:
            folder.rmdir()
        except OSError:  # not empty: another run's cache lives there
            break


def clear_memo() -> None:
    """Forget this process's loaded set (tests; or to free host memory)."""
    _MEMO.clear()


__all__ = ["TensorSource", "TensorSplit", "cache_key", "cache_path", "clear_memo", "decode", "fit_image",
           "load_or_build"]
