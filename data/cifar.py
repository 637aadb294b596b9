"""CIFAR-10 and CIFAR-100 from the canonical pickled batches, read directly (no md5 checks)."""
from __future__ import annotations

import os
import pickle
import shutil

import numpy as np

from utils.errors import UserError

from .arrays import array_loaders
from .base import DATASETS, IMAGENET_MEAN, IMAGENET_STD, DataBundle, data_root, maybe_noisy, noise_cache_dir

# Per set: folder under --data, folder of the batches, training files, test file, label key.
LAYOUTS = {
    "CIFAR10": ("cifar10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels"),
    "CIFAR100": ("cifar100", "cifar-100-python", ["train"], "test", "fine_labels"),
}


def read_batches(paths: "list[str]", label_key: str) -> tuple:
    """(images uint8 (N, 3, 32, 32), labels int64) of pickled CIFAR batches."""
    xs, ys = [], []
    for path in paths:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="latin1")
        d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
        xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d[label_key], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _download(name: str, root: str) -> None:
    """Fetch the set with torchvision (a separate function so tests can stand in for the network)."""
    import torchvision

    getattr(torchvision.datasets, name)(root, download=True)


def _ensure(name: str, root: str, files: "list[str]", settings) -> None:
    if all(os.path.isfile(p) for p in files):
        return
    parent = os.path.expanduser(settings.data)
    # Download only into an existing --data folder: a mistyped path must not grow a tree.
    if os.path.isdir(parent):
        existed = os.path.exists(root)
        try:
            _download(name, root)
        except Exception:
            if not existed:
                shutil.rmtree(root, ignore_errors=True)
    if not all(os.path.isfile(p) for p in files):
        sub = os.path.basename(os.path.dirname(files[0]))
        raise UserError(f"{name} not found at {root} (expected {sub}/ with the pickled batches; download "
                        f"failed or was not possible); pass --data <folder holding {os.path.basename(root)}/{sub}>")


class _CIFAR(DataBundle):
    name = "CIFAR10"
    num_classes = 10

    def __init__(self, settings) -> None:
        folder, sub, train_files, test_file, key = LAYOUTS[self.name]
        root = data_root(settings, folder)
        train_paths = [os.path.join(root, sub, f) for f in train_files]
        test_path = os.path.join(root, sub, test_file)
        _ensure(self.name, root, train_paths + [test_path], settings)
        x_tr, y_tr = read_batches(train_paths, key)
        x_te, y_te = read_batches([test_path], key)
        y_tr = maybe_noisy(y_tr, self.num_classes, settings, noise_cache_dir(root, settings), self.name)
        train, val = array_loaders(x_tr, y_tr, x_te, y_te, settings, 4, IMAGENET_MEAN, IMAGENET_STD)
        super().__init__(train, val, num_classes=self.num_classes, in_channels=3, image_size=32,
                         default_model="CIFARResNet", default_model_name="cifar_resnet_20")


@DATASETS.register
class CIFAR10(_CIFAR):
    """CIFAR-10 under ``<data>/cifar10/cifar-10-batches-py``; RandomCrop(32, 4) + flip, normalised."""

    name, num_classes = "CIFAR10", 10


@DATASETS.register
class CIFAR100(_CIFAR):
    """CIFAR-100 under ``<data>/cifar100/cifar-100-python`` (fine labels); as CIFAR-10 otherwise."""

    name, num_classes = "CIFAR100", 100
