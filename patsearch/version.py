"""Which patsearch made a result: the package version, plus the git commit when running from a checkout.

Tables and run folders record :func:`provenance` so that a number can be traced to the code that produced it;
``patsearch --version`` prints :func:`describe`. Kept free of patsearch imports (every other module may use it).
"""
from __future__ import annotations

import functools
import subprocess
from pathlib import Path

__version__ = "0.1.0"

# The checkout holding this package (a regular install has no .git next to its site-packages copy).
_SOURCE_ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", "-C", str(_SOURCE_ROOT), *args], capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.SubprocessError):  # no git binary, or it hung: the version alone will do
        return None


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's commit (12 hex digits, ``-dirty`` with uncommitted changes to tracked files), or None when
    this package is not running from a git checkout."""
    if not (_SOURCE_ROOT / ".git").exists():  # a directory in a clone, a file in a worktree
        return None
    head = _git("rev-parse", "--short=12", "HEAD")
    if head is None or head.returncode != 0 or not head.stdout.strip():
        return None
    changed = _git("status", "--porcelain", "--untracked-files=no")
    dirty = changed is not None and changed.returncode == 0 and bool(changed.stdout.strip())
    return head.stdout.strip() + ("-dirty" if dirty else "")


def describe() -> str:
    """``patsearch 0.1.0 (commit 0123456789ab)`` from a checkout, ``patsearch 0.1.0`` from an install."""
    commit = git_commit()
    return f"patsearch {__version__}" + (f" (commit {commit})" if commit else "")


def provenance() -> dict[str, str]:
    """The keys a result's metadata records: ``patsearch`` (the version) and, from a checkout, ``patsearch_commit``."""
    commit = git_commit()
    return {"patsearch": __version__, **({"patsearch_commit": commit} if commit else {})}
