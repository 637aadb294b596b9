"""The embedded default: scikit-learn's 8x8 digits (1797 grey images), no download needed."""
from __future__ import annotations

import os

import numpy as np
import torch

from .base import DATASETS, DataBundle, maybe_noisy
from subspaces.utils.distributed import current

from .tensor_loader import TensorLoader

# The split is part of the data set, not of a run: fixed, whatever --seed is.
SPLIT_SEED = 0
TEST_FRACTION = 0.2


def digits_split_indices() -> tuple:
    """(train, test) indices into ``load_digits()``: stratified 80/20 with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    target = load_digits().target
    return train_test_split(np.arange(len(target)), test_size=TEST_FRACTION, stratify=target,
                            random_state=SPLIT_SEED)


def digits_split() -> tuple:
    """(x_train, y_train, x_test, y_test), x (N, 1, 8, 8) normalised with the training mean/std."""
    from sklearn.datasets import load_digits

    d = load_digits()
    tr, te = digits_split_indices()
    x = d.images.astype(np.float32)[:, None]  # values 0..16
    mean, std = x[tr].mean(), x[tr].std()
    return (x[tr] - mean) / std, d.target[tr], (x[te] - mean) / std, d.target[te]


@DATASETS.register
class Digits(DataBundle):
    """scikit-learn digits on ``settings.device``, batched by :class:`TensorLoader`, no augmentation."""

    def __init__(self, settings) -> None:
        x_tr, y_tr, x_te, y_te = digits_split()
        # The data lives inside scikit-learn, so label-noise files go to the log folder.
        y_tr, record = maybe_noisy(y_tr, 10, settings, os.path.expanduser(settings.log_dir), "Digits")
        long = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.long)  # noqa: E731
        train = TensorLoader(torch.from_numpy(x_tr), long(y_tr), settings.batch_size, shuffle=True, world=current(),
                             seed=settings.seed, device=settings.device)
        val = TensorLoader(torch.from_numpy(x_te), long(y_te), settings.test_batch_size,
                           device=settings.device)
        super().__init__(train, val, num_classes=10, in_channels=1, image_size=8,
                         default_model="DigitsConvNet", default_model_name=None, records=[record])
