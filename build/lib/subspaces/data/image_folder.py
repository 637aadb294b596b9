"""A generic set of class folders: ``<data>/train/<class>/*`` and ``<data>/test/<class>/*``."""
from __future__ import annotations

import os
from typing import Sequence

from subspaces.utils.errors import UserError

from .arrays import array_loaders, crop_transforms
from .base import (DATASETS, IMAGENET_MEAN, IMAGENET_STD, DataBundle, data_root, eval_loader, maybe_noisy,
                   noise_cache_dir, require, train_loader)
from .folders import FileDataset, decode_all, find_classes, image_size_of, scan

SMALL = 64  # images up to this size get RandomCrop(size, padding=4); larger ones ImageNet's crops


def small_set_loaders(train_samples: list, test_samples: list, classes: list, settings, noise_dir: str,
                      set_name: str, mean: Sequence[float], std: Sequence[float]) -> tuple:
    """(train, val, label-noise record) of small images: RandomCrop(size, 4) + flip; decoded onto the device if asked."""
    targets, record = maybe_noisy([t for _, t in train_samples], len(classes), settings, noise_dir, set_name)
    if settings.data_on_device:
        x_tr = decode_all([p for p, _ in train_samples])
        x_te = decode_all([p for p, _ in test_samples])
        return (*array_loaders(x_tr, targets, x_te, [t for _, t in test_samples], settings, 4, mean, std), record)
    size = image_size_of(train_samples[0][0])
    train_tf, test_tf = crop_transforms(size, 4, mean, std)
    train = FileDataset(train_samples, classes, train_tf)
    train.targets = [int(t) for t in targets]
    return (train_loader(train, settings),
            eval_loader(FileDataset(test_samples, classes, test_tf), settings), record)


def _default_model(size: int) -> tuple:
    if size <= 32:
        return "CIFARResNet", "cifar_resnet_20"
    if size <= SMALL:
        return "TinyImageNetResNet18", None
    return "ResNet50", None


@DATASETS.register
class ImageFolder(DataBundle):
    """Class folders under ``<data>/train`` and ``<data>/test``; the image size is read from the first image."""

    def __init__(self, settings) -> None:
        root = data_root(settings)
        train_dir, test_dir = os.path.join(root, "train"), os.path.join(root, "test")
        require([train_dir, test_dir], "ImageFolder data", root, "train/<class>/* and test/<class>/*",
                 "train/ and test/")
        classes = find_classes(train_dir)
        class_to_idx = {c: i for i, c in enumerate(classes)}
        extra = sorted(set(find_classes(test_dir)) - set(classes))
        if extra:
            raise UserError(f"test classes {', '.join(extra)} in {test_dir} have no folder in {train_dir}; "
                            "give both the same class folders")
        train_samples, test_samples = scan(train_dir, class_to_idx), scan(test_dir, class_to_idx)
        if not train_samples or not test_samples:
            raise UserError(f"no images found under {train_dir} or {test_dir}; "
                            "put images in train/<class>/ and test/<class>/")
        size = max(image_size_of(train_samples[0][0]))
        noise_dir = noise_cache_dir(root, settings)
        if size <= SMALL:
            train, val, record = small_set_loaders(train_samples, test_samples, classes, settings, noise_dir,
                                           "ImageFolder", IMAGENET_MEAN, IMAGENET_STD)
        else:
            from .imagenet import imagenet_loaders

            train, val, record = imagenet_loaders(train_samples, test_samples, classes, settings, noise_dir, "ImageFolder")
            size = 224
        model, model_name = _default_model(size)
        super().__init__(train, val, num_classes=len(classes), in_channels=3, image_size=size,
                         default_model=model, default_model_name=model_name, records=[record])
