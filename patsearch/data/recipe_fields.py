"""What the data layer reads from a training recipe.

``data/`` sits below ``train/``, so it names the recipe fields it uses as a protocol instead of importing
:class:`patsearch.train.recipe.Recipe` (which satisfies it).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class AugmentRecipe(Protocol):
    """The crop, resolution and augmentation settings of a recipe (see :class:`~patsearch.train.recipe.Recipe`)."""

    name: str
    crop: str
    hflip: float
    color_jitter: float
    rand_augment: str | None
    interpolation: str
    resolution: int
    test_resolution: int
    test_crop_pct: float

    @property
    def uses_tensor_cache(self) -> bool: ...

    def resolution_at(self, epoch: int) -> int: ...
