"""Data sets by name (``--set``): each builds a :class:`DataBundle` of loaders from the settings.

Every data set class registers itself with ``@DATASETS.register`` in its own module.
"""
from __future__ import annotations

from . import cifar, digits, image_folder, imagenet, tinyimagenet  # noqa: F401  (register the data sets)
from .base import DATASETS, DataBundle
from .tensor_loader import TensorLoader


def dataset_names() -> "list[str]":
    """The registered data set names."""
    return sorted(DATASETS)


def get_dataset(settings) -> DataBundle:
    """Build the data set ``settings.set``; a UserError lists the valid names or names the missing folder."""
    return DATASETS.get(settings.set)(settings)


__all__ = ["DATASETS", "DataBundle", "TensorLoader", "dataset_names", "get_dataset"]
