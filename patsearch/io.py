"""Atomic file writes: a reader (or a resumed run after a kill) sees the old file or the new one, never half of
one. Write to a temporary file in the same directory (``os.replace`` is atomic only within one file system),
fsync it so the data is on disk before the rename makes it visible, rename over the target, then fsync the folder
so the rename itself survives a power cut. :func:`ensure_writable` checks an output path up front, so a bad one
is one line before any work instead of a traceback after it."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from patsearch.errors import UserError

__all__ = ["ensure_writable", "missing_folders", "atomic_open", "atomic_write_bytes", "atomic_write_text",
           "atomic_write_json", "atomic_save_figure"]

# mkstemp creates files readable by the owner only; give the result the mode a plain open() would have.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def missing_folders(path: str | os.PathLike | None) -> list[Path]:
    """The folders of ``path`` that do not exist yet (a job creates them, and removes them if it fails),
    deepest first."""
    missing: list[Path] = []
    folder = Path(path) if path is not None else None
    while folder is not None and not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def ensure_writable(path: str | os.PathLike, flag: str, *, folder: bool = False, example: str | None = None) -> Path:
    """Check that ``path`` (a file, or a folder with ``folder=True``) can be written, creating nothing.

    Raises a one-line :class:`UserError` naming ``flag``, the path and why (a file where a folder is needed, a
    read-only or virtual file system, no permission); ``example`` is a working value to suggest. The test writes
    and removes a probe file in the nearest existing folder, which is what counts (root passes every mode check).
    """
    path = Path(path)
    fix = f"; pass a path in a writable folder, e.g. {flag} {example}" if example else \
        f"; pass {flag} a path in a writable folder"

    def refuse(reason: str) -> UserError:
        return UserError(f"cannot write {flag} {path}: {reason}{fix}")

    if path.is_dir() and not folder:
        raise refuse("it is a folder")
    existing = path if folder else path.parent
    while not existing.exists():
        if existing.is_symlink():  # a dangling link: creating through it fails
            raise refuse(f"{existing} is a broken link")
        existing = existing.parent
    if not existing.is_dir():
        raise refuse(f"{existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".patsearch-write-test.", dir=existing)
    except OSError as exc:
        # a virtual file system such as /proc answers "no such file" for a folder that exists
        why = "accepts no new files" if exc.errno == errno.ENOENT else (exc.strerror or type(exc).__name__).lower()
        raise refuse(f"{existing}: {why}") from None
    os.close(fd)
    os.unlink(probe)
    return path


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` for writing; on a clean exit it replaces ``path``.

    If the block raises, the temporary file is removed and ``path`` is left as it was. Use it for writers
    that want a file object (``torch.save``, ``json.dump``); parent directories are created.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # The rename is durable once the folder's entry is on disk too (POSIX; not possible on every platform).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 2, **kwargs: Any) -> Path:
    """``json.dump`` atomically; the text is built first, so an unserialisable value never touches the disk."""
    return atomic_write_text(path, json.dumps(data, indent=indent, **kwargs) + "\n")


def atomic_save_figure(fig: Any, path: str | os.PathLike, **savefig_kwargs: Any) -> Path:
    """Write a matplotlib figure as a PNG atomically, then close it (figures stay open in pyplot's registry)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", **savefig_kwargs)
    plt.close(fig)
    return path
