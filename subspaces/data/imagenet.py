"""ImageNet (``<data>/imagenet/{train,val}``) and ImageNet-C (``<data>/imagenet-c/<ct>/<sev>``)."""
from __future__ import annotations

import os

from subspaces.utils.errors import UserError

from .base import (DATASETS, IMAGENET_MEAN, IMAGENET_STD, DataBundle, data_root, eval_loader, maybe_noisy,
                   noise_cache_dir, require, train_loader)
from .folders import FileDataset, find_classes, scan



def imagenet_transforms() -> tuple:
    """(train, test): RandomResizedCrop(224) + flip; Resize(256) + CenterCrop(224); both normalised."""
    from torchvision import transforms  # here: importing torchvision costs seconds, which Digits runs skip

    normalize = transforms.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD))
    train = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                                transforms.ToTensor(), normalize])
    return train, transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(), normalize])


def _no_device(settings, name: str) -> None:
    if settings.data_on_device:
        raise UserError(f"{name} does not fit on the device; drop --data-on-device "
                        "(it is for Digits, CIFAR, TinyImageNet and small image folders)")


def imagenet_loaders(train_samples: list, test_samples: list, classes: list, settings, noise_dir: str,
                     set_name: str) -> tuple:
    """(train, val, label-noise record) with the standard crops: RandomResizedCrop(224) + flip; Resize(256) + CenterCrop(224)."""
    _no_device(settings, set_name)
    train_tf, test_tf = imagenet_transforms()
    train = FileDataset(train_samples, classes, train_tf)
    targets, record = maybe_noisy(train.targets, len(classes), settings, noise_dir, set_name)
    train.targets = [int(t) for t in targets]
    return train_loader(train, settings), eval_loader(FileDataset(test_samples, classes, test_tf), settings), record


def _imagenet_dirs(settings) -> tuple:
    root = data_root(settings, "imagenet")
    val = os.path.join(root, "val")
    if not os.path.isdir(val) and os.path.isdir(os.path.join(root, "val_in_folder")):
        val = os.path.join(root, "val_in_folder")  # the original's name for the class-folder val set
    return root, os.path.join(root, "train"), val


@DATASETS.register
class ImageNet(DataBundle):
    """ImageNet class folders ``<data>/imagenet/train`` and ``<data>/imagenet/val`` (or ``val_in_folder``)."""

    def __init__(self, settings) -> None:
        root, train_dir, val_dir = _imagenet_dirs(settings)
        require([train_dir, val_dir], "ImageNet", root, "train/<wnid>/ and val/<wnid>/", "imagenet/")
        classes = find_classes(train_dir)
        class_to_idx = {c: i for i, c in enumerate(classes)}
        train, val, record = imagenet_loaders(scan(train_dir, class_to_idx), scan(val_dir, class_to_idx), classes,
                                      settings, noise_cache_dir(root, settings), "ImageNet")
        super().__init__(train, val, num_classes=len(classes), in_channels=3, image_size=224,
                         default_model="ResNet50", records=[record])


@DATASETS.register
class ImageNetC(DataBundle):
    """ImageNet-C test set ``<data>/imagenet-c/<ct>/<sev>`` (Resize 256, CenterCrop 224, as the original).

    The training loader is ImageNet's, for recomputing BatchNorm statistics; class indices follow
    ImageNet's training folders.
    """

    def __init__(self, settings) -> None:
        test_dir = data_root(settings, "imagenet-c", settings.ct, str(settings.sev))
        require([test_dir], "ImageNet-C", test_dir, f"imagenet-c/{settings.ct}/{settings.sev}/<wnid>/*",
                "imagenet-c/, or pick --ct/--sev")
        root, train_dir, _ = _imagenet_dirs(settings)
        require([train_dir], "ImageNet training set (ImageNetC recomputes BatchNorm statistics on it)",
                train_dir, "train/<wnid>/", "imagenet/ and imagenet-c/")
        classes = find_classes(train_dir)
        class_to_idx = {c: i for i, c in enumerate(classes)}
        unknown = sorted(set(find_classes(test_dir)) - set(classes))
        if unknown:
            raise UserError(f"ImageNet-C classes {', '.join(unknown[:5])} in {test_dir} are not ImageNet "
                            f"training classes in {train_dir}; use the same wnid folders")
        train, val, record = imagenet_loaders(scan(train_dir, class_to_idx), scan(test_dir, class_to_idx), classes,
                                      settings, noise_cache_dir(root, settings), "ImageNet")
        super().__init__(train, val, num_classes=len(classes), in_channels=3, image_size=224,
                         default_model="ResNet50", records=[record])
