"""The trainer's ``(train, val)`` datasets from what a user passed as ``--data``: an image folder or, with no
folder, the built-in synthetic set. Lives in ``data/`` so the trainer and the evaluator both import it without
importing each other."""
from __future__ import annotations

import os
from typing import Any

DEFAULT_SYNTHETIC = (10_000, 2_000)
SYNTHETIC_IMAGE_SIZE = 64


def make_datasets(data: str | os.PathLike | None, *, cache: str = "auto",
                  synthetic: tuple[int, int] = DEFAULT_SYNTHETIC, seed: int = 0, workers: int = 8) -> tuple[Any, Any]:
    """``(train, val)`` datasets of ``(PIL image, label)``: an image folder, or the built-in synthetic set."""
    if data is None:
        from patsearch.data.synthetic import SyntheticShapes

        return (SyntheticShapes(synthetic[0], image_size=SYNTHETIC_IMAGE_SIZE, split="train", seed=seed),
                SyntheticShapes(synthetic[1], image_size=SYNTHETIC_IMAGE_SIZE, split="val", seed=seed))
    from patsearch.data.folder import open_image_folder

    return open_image_folder(data, cache=cache, workers=workers)
