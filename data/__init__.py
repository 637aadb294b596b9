"""Data sets by name (``--set``): each builds a :class:`DataBundle` of loaders from the settings."""
from __future__ import annotations

from utils.errors import UserError, unknown_name

from .base import DataBundle
from .cifar import CIFAR10, CIFAR100
from .digits import Digits
from .image_folder import ImageFolder
from .imagenet import ImageNet, ImageNetC
from .tensor_loader import TensorLoader
from .tinyimagenet import TinyImageNet

DATASETS: dict = {cls.__name__: cls for cls in
                  (Digits, CIFAR10, CIFAR100, TinyImageNet, ImageNet, ImageNetC, ImageFolder)}


def dataset_names() -> "list[str]":
    """The registered data set names."""
    return sorted(DATASETS)


def get_dataset(settings) -> DataBundle:
    """Build the data set ``settings.set``; a UserError lists the valid names or names the missing folder."""
    if settings.set not in DATASETS:
        raise unknown_name("data set", settings.set, list(DATASETS), "--set")
    # Checked before any (possibly long) loading.
    if settings.label_noise is not None and not 0.0 <= settings.label_noise <= 1.0:
        raise UserError(f"--label-noise {settings.label_noise} is not a fraction; pass a value in [0, 1]")
    return DATASETS[settings.set](settings)


__all__ = ["DATASETS", "DataBundle", "TensorLoader", "dataset_names", "get_dataset"]
