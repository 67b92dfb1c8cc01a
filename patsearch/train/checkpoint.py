"""Checkpoints: atomic writes, ``latest.pt`` / ``best.pt``, and everything needed to resume exactly.

A training checkpoint is a plain dict of tensors and Python primitives (so it loads with ``weights_only=True``):
``model``, ``optimizer``, ``scheduler``, ``scaler``, ``epoch`` (the epoch in progress), ``step_in_epoch``,
``global_step``, ``rng`` (one entry per rank: python, numpy, torch, cuda), ``best_top1``, ``history``, ``arch``,
``recipe`` and ``run`` (the run's settings).
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from patsearch.errors import UserError
from patsearch.io import atomic_open

LATEST = "latest.pt"
BEST = "best.pt"


class CheckpointError(UserError):
    """A checkpoint path is missing, unreadable or not a patsearch checkpoint."""


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temp name in the same folder, fsync, then rename: a kill never leaves half a file."""
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)
    return path


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
         fix: str = "pass a file written by `patsearch train` (e.g. runs/<name>/best.pt)") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no pickled code runs).

    A file that cannot be read is a one-line :class:`CheckpointError` saying what is wrong with it and ``fix``,
    what to do instead; torch's own text is left out, as it ends by suggesting ``weights_only=False``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; {fix}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable; say which file
        if "Unsupported global" in str(exc):  # a pickled object, e.g. a whole model: never unpickled here
            raise CheckpointError(f"checkpoint {path} holds Python objects, not only tensors, and is not loaded "
                                  f"(that would run code from the file); {fix}") from None
        raise CheckpointError(f"checkpoint {path} is damaged or not a torch checkpoint (truncated, overwritten or "
                              f"another kind of file); {fix}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict; {fix}")
    return obj


def resume_fix(path: str | os.PathLike) -> str:
    """What to do when the checkpoint a run resumes from is unusable: the run's ``best.pt``, or a fresh start."""
    path = Path(path)
    best = path.parent / BEST
    restart = f"or start over by moving {path} away (or training into a new --out)"
    if path.name != BEST and best.is_file():
        return f"resume from the best checkpoint instead with --resume {best}, {restart}"
    return restart.removeprefix("or ")


def model_state(obj: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model weights of a training checkpoint, or of a plain state dict."""
    state = obj.get("model", obj)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("checkpoint has no model weights (expected a 'model' state dict)")
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}


def load_model_weights(model: torch.nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Load trained weights into ``model`` (strict); returns the whole checkpoint for its metadata."""
    obj = load(path)
    try:
        model.load_state_dict(model_state(obj))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"checkpoint {path} does not fit this architecture ({first}); pass the --arch it "
                              "was trained with") from None
    return obj


def find_resume(out_dir: str | os.PathLike, resume: str | os.PathLike | None) -> Path | None:
    """``None`` -> start fresh; ``"auto"`` -> ``out_dir/latest.pt`` if it exists; otherwise that file."""
    if resume is None or resume == "":
        return None
    if str(resume) == "auto":
        latest = Path(out_dir) / LATEST
        return latest if latest.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise CheckpointError(f"resume checkpoint {path} does not exist; use --resume auto to continue the run in "
                              "--out if it has one")
    return path


# --- RNG state as weights_only-safe values --------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
