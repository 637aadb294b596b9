"""TinyImageNet from the raw ``tiny-imagenet-200`` download: no reorganisation script needed.

The validation labels are read from ``val/val_annotations.txt``; a ``val/`` already reorganised
into ``val/<wnid>/`` class folders (as the original required) is accepted too.
"""
from __future__ import annotations

import os

from subspaces.utils.errors import UserError

from .base import DATASETS, TINY_MEAN, TINY_STD, DataBundle, data_root, noise_cache_dir, require
from .folders import scan
from .image_folder import small_set_loaders


def read_lines(path: str) -> "list[str]":
    """The lines of a text file of the download; a binary or garbled one is a one-line UserError."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        text = None
    if text is None or "\0" in text:
        raise UserError(f"{path} is not a text file; re-extract tiny-imagenet-200")
    return text.splitlines()


def read_val_annotations(val_dir: str, class_to_idx: "dict[str, int]") -> "list[tuple[str, int]]":
    """(path, target) of ``val/images/<file>`` per line of ``val_annotations.txt`` (file, wnid, bbox...)."""
    samples = []
    for line in read_lines(os.path.join(val_dir, "val_annotations.txt")):
        parts = line.strip().split("\t")
        if len(parts) < 2:
            continue
        if parts[1] not in class_to_idx:
            raise UserError(f"val_annotations.txt in {val_dir} names {parts[1]!r}, which is not in wnids.txt; "
                            "re-extract tiny-imagenet-200")
        samples.append((os.path.join(val_dir, "images", parts[0]), class_to_idx[parts[1]]))
    return samples


@DATASETS.register
class TinyImageNet(DataBundle):
    """200 classes of 64x64 images; RandomCrop(64, padding=4) + flip, the original's normalisation."""

    def __init__(self, settings) -> None:
        root = data_root(settings, "tiny-imagenet-200")
        train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val")
        require([os.path.join(root, "wnids.txt"), train_dir, val_dir], "TinyImageNet", root,
                "wnids.txt, train/, val/", "tiny-imagenet-200")
        wnids = read_lines(os.path.join(root, "wnids.txt"))
        classes = sorted({w.strip() for w in wnids if w.strip()})  # sorted: ImageFolder's indices
        class_to_idx = {c: i for i, c in enumerate(classes)}
        if os.path.isfile(os.path.join(val_dir, "val_annotations.txt")):
            val_samples = read_val_annotations(val_dir, class_to_idx)
        else:
            val_samples = scan(val_dir, class_to_idx)
        train_samples = scan(train_dir, class_to_idx)
        if not train_samples or not val_samples:
            raise UserError(f"no images found in {train_dir} or {val_dir}; re-extract tiny-imagenet-200")
        train, val, record = small_set_loaders(train_samples, val_samples, classes, settings,
                                       noise_cache_dir(root, settings), "TinyImageNet", TINY_MEAN, TINY_STD)
        super().__init__(train, val, num_classes=len(classes), in_channels=3, image_size=64,
                         default_model="TinyImageNetResNet18", records=[record])
