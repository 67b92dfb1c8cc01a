"""Datasets for the trainer: the built-in deterministic offline set and ImageNet-style folders.

- :mod:`patsearch.data.synthetic`: shapes and textures under random pose, colour and noise, generated from the index
  (no files, identical on every machine).
- :mod:`patsearch.data.folder`: ``train/`` and ``val/`` (or ``test/``) folders of class folders, validated with clear
  errors; small images can be decoded once into memory.
- :mod:`patsearch.data.transforms`: timm's ``create_transform`` configured from a recipe, per-sample seeding.
"""
from patsearch.data.folder import DataError, ImageFolderDataset, open_image_folder
from patsearch.data.synthetic import SyntheticShapes

__all__ = ["DataError", "ImageFolderDataset", "SyntheticShapes", "open_image_folder"]
