"""CIFAR-10 and CIFAR-100 from the canonical pickled batches, read directly (no md5 checks), or from
the same images as files (``train/<class>/*.jpg``, ``test/<class>/*.jpg``, e.g. CIFAR-10 as JPEGs).

The batches are pickles, and a pickle can run any code when loaded: they are read by an
unpickler that allows only what the real files hold (dicts, lists, strings, ints and uint8
arrays), so a planted ``data_batch_1`` is refused instead of run.
"""
from __future__ import annotations

import os
import pickle
import shutil

import numpy as np

from subspaces.utils.errors import UserError

from .arrays import array_loaders
from .base import DATASETS, IMAGENET_MEAN, IMAGENET_STD, DataBundle, data_root, maybe_noisy, noise_cache_dir
from .folders import decode_all, find_classes, scan

# Per set: folder under --data, folder of the batches, training files, test file, label key.
LAYOUTS = {
    "CIFAR10": ("cifar10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels"),
    "CIFAR100": ("cifar100", "cifar-100-python", ["train"], "test", "fine_labels"),
}


def _encode_latin1(text: str, encoding: str) -> bytes:
    # Python 3 writes a bytes object into a protocol-2 pickle as _codecs.encode(text, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


_reconstruct = np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct

# Everything a CIFAR python batch refers to: dicts, lists, ints and strings need no global at all;
# a uint8 array needs NumPy's array reconstruction (under its NumPy 1 and NumPy 2 module names).
BATCH_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _encode_latin1,
}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle refers to something a CIFAR batch never holds (loading it could run code)."""


class BatchUnpickler(pickle.Unpickler):
    """An unpickler that builds only what CIFAR batches hold: no pickle can run code through it."""

    def find_class(self, module: str, name: str):
        found = BATCH_GLOBALS.get((module, name))
        if found is None:
            raise RefusedGlobal(f"{module}.{name}")
        return found


def load_batch(path: str) -> dict:
    """One pickled CIFAR batch as a dict with str keys; a planted or corrupt file is a one-line UserError."""
    fix = "delete it and download the data set again"
    try:
        with open(path, "rb") as f:
            d = BatchUnpickler(f, encoding="latin1").load()
    except RefusedGlobal as e:
        raise UserError(f"CIFAR batch {path} refers to {e}, which no CIFAR batch holds "
                        f"(loading it could run code); {fix}") from None
    except Exception as e:  # truncated or garbled: EOFError, UnpicklingError, ValueError, ...
        raise UserError(f"CIFAR batch {path} is corrupt or truncated ({type(e).__name__}); {fix}") from None
    if not isinstance(d, dict):
        raise UserError(f"CIFAR batch {path} holds a {type(d).__name__}, not a batch; {fix}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in d.items()}


def read_batches(paths: "list[str]", label_key: str, num_classes: "int | None" = None) -> tuple:
    """(images uint8 (N, 3, 32, 32), labels int64) of pickled CIFAR batches, checked for shape and labels."""
    xs, ys = [], []
    for path in paths:
        d = load_batch(path)
        try:
            x = np.asarray(d["data"])
            y = np.asarray(d[label_key])
            ok = (x.dtype == np.uint8 and x.ndim == 2 and x.shape[1] == 3 * 32 * 32 and y.shape == (len(x),)
                  and np.issubdtype(y.dtype, np.integer) and (num_classes is None or ((0 <= y) & (y < num_classes)).all()))
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise UserError(f"CIFAR batch {path} does not hold uint8 'data' (N, 3072) and N integer "
                            f"{label_key!r} in range; delete it and download the data set again")
        xs.append(x.reshape(-1, 3, 32, 32))
        ys.append(y.astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _download(name: str, root: str) -> None:
    """Fetch the set with torchvision (a separate function so tests can stand in for the network)."""
    import torchvision

    getattr(torchvision.datasets, name)(root, download=True)


def has_image_folders(root: str) -> bool:
    """Whether ``root`` holds the set as image files: ``train/`` and ``test/`` class folders."""
    return all(os.path.isdir(os.path.join(root, split)) for split in ("train", "test"))


def read_image_folders(root: str, name: str, num_classes: int) -> tuple:
    """(x_train, y_train, x_test, y_test) of ``root/{train,test}/<class>/*`` images, decoded to
    uint8 (N, 3, 32, 32) as the pickled batches hold them; class indices follow the sorted folder
    names (CIFAR-10's airplane, automobile, ..., truck and CIFAR-100's names sort into the batches'
    label order)."""
    train_dir, test_dir = os.path.join(root, "train"), os.path.join(root, "test")
    classes = find_classes(train_dir)
    if len(classes) != num_classes or sorted(find_classes(test_dir)) != classes:
        raise UserError(f"{name} images in {root} need {num_classes} class folders in both train/ and test/ "
                        f"(found {len(classes)} in train/, {len(find_classes(test_dir))} in test/); fix the folders "
                        "or pass --set ImageFolder --data <the folder holding train/ and test/> for another set")
    class_to_idx = {c: i for i, c in enumerate(classes)}
    out = []
    for split in (train_dir, test_dir):
        samples = scan(split, class_to_idx)
        if not samples:
            raise UserError(f"no images found in {split}/<class>/; put {name}'s images there")
        x = decode_all([p for p, _ in samples], fix=f"{name} images are 32x32; resize them or pass --set ImageFolder")
        if x.shape[1:] != (3, 32, 32):
            raise UserError(f"{samples[0][0]} is {x.shape[2]}x{x.shape[3]}, not a 32x32 {name} image; "
                            "resize the images or pass --set ImageFolder")
        out += [x, np.array([t for _, t in samples], dtype=np.int64)]
    return tuple(out)


def _ensure(name: str, root: str, files: "list[str]", settings) -> None:
    if all(os.path.isfile(p) for p in files):
        return
    parent = os.path.expanduser(settings.data)
    sub = os.path.basename(os.path.dirname(files[0]))
    if not os.path.isdir(root) and (has_image_folders(parent) or os.path.isdir(os.path.join(parent, sub))):
        # --data names the set's own folder: one meaning of --data everywhere, so no guessing here
        raise UserError(f"--data {settings.data} holds {name} itself; --data is the folder that holds the data sets: "
                        f"pass --data <its parent>, with this folder named {os.path.basename(root)}/")
    # Download only into an existing --data folder: a mistyped path must not grow a tree.
    if os.path.isdir(parent):
        existed = os.path.exists(root)
        try:
            _download(name, root)
        except Exception:
            if not existed:
                shutil.rmtree(root, ignore_errors=True)
    if not all(os.path.isfile(p) for p in files):
        raise UserError(f"{name} not found at {root} (expected {sub}/ with the pickled batches, or the images in "
                        f"train/<class>/ and test/<class>/; download failed or was not possible); "
                        f"pass --data <folder holding {os.path.basename(root)}/>")


class _CIFAR(DataBundle):
    name = "CIFAR10"
    num_classes = 10

    def __init__(self, settings) -> None:
        folder, sub, train_files, test_file, key = LAYOUTS[self.name]
        root = data_root(settings, folder)
        train_paths = [os.path.join(root, sub, f) for f in train_files]
        test_path = os.path.join(root, sub, test_file)
        if has_image_folders(root) and not os.path.isdir(os.path.join(root, sub)):
            x_tr, y_tr, x_te, y_te = read_image_folders(root, self.name, self.num_classes)
        else:
            _ensure(self.name, root, train_paths + [test_path], settings)
            x_tr, y_tr = read_batches(train_paths, key, self.num_classes)
            x_te, y_te = read_batches([test_path], key, self.num_classes)
        y_tr, record = maybe_noisy(y_tr, self.num_classes, settings, noise_cache_dir(root, settings), self.name)
        train, val = array_loaders(x_tr, y_tr, x_te, y_te, settings, 4, IMAGENET_MEAN, IMAGENET_STD)
        super().__init__(train, val, num_classes=self.num_classes, in_channels=3, image_size=32,
                         default_model="CIFARResNet", default_model_name="cifar_resnet_20", records=[record])


@DATASETS.register
class CIFAR10(_CIFAR):
    """CIFAR-10 under ``<data>/cifar10/``: ``cifar-10-batches-py/``, or the images in ``train/<class>/``
    and ``test/<class>/``; RandomCrop(32, 4) + flip, normalised (the same for both)."""

    name, num_classes = "CIFAR10", 10


@DATASETS.register
class CIFAR100(_CIFAR):
    """CIFAR-100 under ``<data>/cifar100/``: ``cifar-100-python/`` (fine labels) or the images; as CIFAR-10 otherwise."""

    name, num_classes = "CIFAR100", 100
