"""Image files on disk: class-folder scanning, a dataset of (path, target) samples, bulk decoding."""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from subspaces.utils.errors import UserError

from .base import apply_transform

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def find_classes(root: str) -> "list[str]":
    """The class folders of ``root``, sorted (ImageFolder's order, so class indices match it)."""
    return sorted(e.name for e in os.scandir(root) if e.is_dir())


def scan(root: str, class_to_idx: "dict[str, int]") -> "list[tuple[str, int]]":
    """(path, target) of every image under ``root/<class>/`` (recursively), classes and files sorted."""
    samples = []
    for name in sorted(class_to_idx):
        folder = os.path.join(root, name)
        for dirpath, dirnames, filenames in sorted(os.walk(folder, followlinks=True)):
            dirnames.sort()
            samples += [(os.path.join(dirpath, f), class_to_idx[name])
                        for f in sorted(filenames) if f.lower().endswith(IMG_EXTENSIONS)]
    return samples


class FileDataset(Dataset):
    """Images read with PIL (RGB) from ``samples``; a key is an index or ``(index, augmentation seed)``."""

    def __init__(self, samples: "list[tuple[str, int]]", classes: "list[str]", transform=None) -> None:
        self.samples = samples
        self.targets = [t for _, t in samples]  # label noise replaces these, not the samples
        self.classes = classes
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, None)
        with open(self.samples[index][0], "rb") as f:
            img = Image.open(f).convert("RGB")
        return apply_transform(self.transform, img, seed), int(self.targets[index])


def image_size_of(path: str) -> tuple:
    """(height, width) of one image file."""
    with Image.open(path) as img:
        return img.height, img.width


def _read(path: str) -> torch.Tensor:
    with open(path, "rb") as f:
        return torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)


def _decode_chunk(paths: "list[str]") -> "list[torch.Tensor]":
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    data = [_read(p) for p in paths]
    # One batched decode_jpeg call is several times faster than per-file decoding of tiny JPEGs.
    if all(len(d) > 2 and d[0] == 0xFF and d[1] == 0xD8 for d in data):
        return decode_jpeg(data, mode=ImageReadMode.RGB)
    return [decode_image(d, mode=ImageReadMode.RGB) for d in data]


def decode_all(paths: "list[str]", threads: Optional[int] = None, chunk: int = 1024,
               fix: str = "--data-on-device needs images of one size (resize them, or drop --data-on-device)") -> np.ndarray:
    """All images as one uint8 array (N, 3, H, W); they must share one size (else a UserError
    ending in ``fix``). Decoded by a thread pool."""
    if not paths:
        raise UserError("no images to decode")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
        first = _decode_chunk(paths[:1])[0]
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)

    def put(start: int) -> None:
        for i, img in enumerate(_decode_chunk(paths[start:start + chunk]), start):
            if img.shape != first.shape:
                raise UserError(f"{paths[i]} is {tuple(img.shape[1:])} but {paths[0]} is {tuple(first.shape[1:])}; {fix}")
            out[i] = img.numpy()

    # torchvision 0.29 deprecates its decoders in favour of torchcodec; they remain the fastest here.
    with warnings.catch_warnings(), ThreadPoolExecutor(threads or min(16, os.cpu_count() or 1)) as pool:
        warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
        list(pool.map(put, range(0, len(paths), chunk)))
    return out
