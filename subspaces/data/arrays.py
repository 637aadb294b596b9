"""Small image sets held whole as uint8 arrays (CIFAR, decoded image folders): the two loader paths.

Without ``--data-on-device`` the original's path: PIL images through torchvision transforms in
DataLoader workers. With it: the uint8 set on the device and the same crop/flip/normalise done there
in batches by :class:`TensorLoader`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .base import apply_transform, eval_loader, train_loader
from subspaces.utils.distributed import current

from .tensor_loader import TensorLoader


def crop_transforms(size: int, pad: int, mean: Sequence[float], std: Sequence[float]) -> tuple:
    """(train, test) transforms: RandomCrop(size, pad) + flip + ToTensor + Normalize; test the last two."""
    from torchvision import transforms  # here: importing torchvision costs seconds, which Digits runs skip

    normalize = transforms.Normalize(list(mean), list(std))
    train = transforms.Compose([transforms.RandomCrop(size, padding=pad), transforms.RandomHorizontalFlip(),
                                transforms.ToTensor(), normalize])
    return train, transforms.Compose([transforms.ToTensor(), normalize])


class ArrayDataset(Dataset):
    """uint8 images (N, C, H, W) and targets; items are transformed PIL images.

    A key is an index or ``(index, seed)``; the seed pins the augmentation (see :class:`EpochSampler`).
    """

    def __init__(self, images: np.ndarray, targets: Sequence[int], transform=None) -> None:
        self.images = images
        self.targets = [int(t) for t in targets]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, None)
        img = Image.fromarray(np.ascontiguousarray(self.images[index].transpose(1, 2, 0)).squeeze())
        return apply_transform(self.transform, img, seed), self.targets[index]


def array_loaders(x_train: np.ndarray, y_train, x_test: np.ndarray, y_test, settings, pad: int,
                  mean: Sequence[float], std: Sequence[float]) -> tuple:
    """(train_loader, val_loader) of uint8 (N, C, H, W) arrays, on the device when ``data_on_device``."""
    if settings.data_on_device:
        long = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.long)  # noqa: E731
        train = TensorLoader(torch.as_tensor(x_train), long(y_train), settings.batch_size, shuffle=True, world=current(),
                             pad=pad, flip=True, mean=mean, std=std, seed=settings.seed,
                             device=settings.device)
        val = TensorLoader(torch.as_tensor(x_test), long(y_test), settings.test_batch_size,
                           mean=mean, std=std, device=settings.device)
        return train, val
    train_tf, test_tf = crop_transforms(x_train.shape[-1], pad, mean, std)
    return (train_loader(ArrayDataset(x_train, y_train, train_tf), settings),
            eval_loader(ArrayDataset(x_test, y_test, test_tf), settings))
