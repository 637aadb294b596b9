"""Data sets, loaders, augmentation and label noise, on tiny data made inside each test."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from subspaces.args import Settings
from subspaces.data import DATASETS, TensorLoader, dataset_names, get_dataset
from subspaces.data.base import IMAGENET_MEAN, IMAGENET_STD, noise_cache_dir
from subspaces.data.digits import digits_split_indices
from subspaces.data.label_noise import noise_file, noisy_targets
from subspaces.data.tensor_loader import crop_and_flip
from subspaces.utils.errors import UserError

from tests.helpers import make_cifar_images

WNIDS = ["n03", "n01", "n02"]  # deliberately unsorted: class indices follow sorted order
COLOURS = {"n01": (255, 0, 0), "n02": (0, 255, 0), "n03": (0, 0, 255)}


def cfg(tmp_path, **kw) -> Settings:
    base = dict(data=str(tmp_path), log_dir=str(tmp_path / "logs"), workers=0, batch_size=4, test_batch_size=4)
    return Settings(**{**base, **kw})


def tree(root) -> list:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def all_batches(loader) -> list:
    return [(x.clone(), y.clone()) for x, y in loader]


def same_batches(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


def normalise(img_uint8_chw: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(img_uint8_chw).float() / 255
    return (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)


def crop_variants(raw: np.ndarray, pad: int) -> torch.Tensor:
    """Every crop (row-major offsets) and flip of each raw uint8 image, normalised: (N, offsets, 2, C, H, W)."""
    n, c, h, w = raw.shape
    padded = torch.nn.functional.pad(torch.from_numpy(raw), (pad,) * 4)
    crops = torch.stack([padded[:, :, r:r + h, q:q + w] for r in range(2 * pad + 1) for q in range(2 * pad + 1)], 1)
    both = torch.stack([crops, torch.flip(crops, [-1])], 2).float() / 255
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (both - mean) / std


# --- fake data on disk, in the real formats -------------------------------------------------------

def fake_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_pickle(path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def make_cifar10(root, per_batch: int = 2) -> dict:
    """cifar-10-batches-py with bytes keys (as pickles written by Python 2 load)."""
    d = root / "cifar10" / "cifar-10-batches-py"
    out = {"train_x": [], "train_y": []}
    for i in range(1, 6):
        x, y = fake_images(per_batch, i), [(i + k) % 10 for k in range(per_batch)]
        write_pickle(d / f"data_batch_{i}", {b"data": x, b"labels": y, b"batch_label": b"x"})
        out["train_x"].append(x)
        out["train_y"].extend(y)
    out["test_x"], out["test_y"] = fake_images(3, 99), [7, 3, 1]
    write_pickle(d / "test_batch", {b"data": out["test_x"], b"labels": out["test_y"]})
    return out


def make_cifar100(root) -> dict:
    d = root / "cifar100" / "cifar-100-python"
    x, y, tx, ty = fake_images(6, 1), [0, 50, 99, 3, 4, 5], fake_images(2, 2), [98, 12]
    write_pickle(d / "train", {"data": x, "fine_labels": y, "coarse_labels": [0] * 6})
    write_pickle(d / "test", {"data": tx, "fine_labels": ty, "coarse_labels": [0, 0]})
    return {"train_y": y, "test_x": tx, "test_y": ty}


def save_img(path, colour, size: int, fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path, fmt)


def colour_class(x: torch.Tensor) -> torch.Tensor:
    """Which of the pure red/green/blue images a normalised batch shows: sorted-wnid index."""
    return x.mean(dim=(2, 3)).argmax(dim=1)


def make_tiny(root, reorganised: bool = False) -> list:
    t = root / "tiny-imagenet-200"
    t.mkdir(parents=True)
    (t / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    for w in WNIDS:
        for k in range(2):
            save_img(t / "train" / w / "images" / f"{w}_{k}.JPEG", COLOURS[w], 64)
        (t / "train" / w / f"{w}_boxes.txt").write_text("ignored\n")
    ann = [("val_0.JPEG", "n02"), ("val_1.JPEG", "n03"), ("val_2.JPEG", "n01"), ("val_3.JPEG", "n02")]
    for name, w in ann:
        if reorganised:
            save_img(t / "val" / w / "images" / name, COLOURS[w], 64)
        else:
            save_img(t / "val" / "images" / name, COLOURS[w], 64)
    if not reorganised:
        (t / "val" / "val_annotations.txt").write_text("".join(f"{n}\t{w}\t0\t0\t63\t63\n" for n, w in ann))
    return ann


# --- registry ----------------------------------------------------------------------------------------

def test_unknown_set_lists_valid_names(tmp_path):
    with pytest.raises(UserError) as e:
        get_dataset(cfg(tmp_path, set="CIFAR11"))
    msg = str(e.value)
    assert "CIFAR11" in msg and "--set" in msg
    for name in ["Digits", "CIFAR10", "CIFAR100", "TinyImageNet", "ImageNet", "ImageNetC", "ImageFolder"]:
        assert name in DATASETS and name in msg
    assert dataset_names() == sorted(DATASETS)


# --- Digits -------------------------------------------------------------------------------------------

def test_digits_shapes_and_fixed_split(tmp_path):
    tr, te = digits_split_indices()
    assert len(set(tr) & set(te)) == 0 and len(tr) + len(te) == 1797
    assert np.array_equal(tr, digits_split_indices()[0])
    a, b = get_dataset(cfg(tmp_path, seed=1)), get_dataset(cfg(tmp_path, seed=2))
    assert (a.num_classes, a.in_channels, a.image_size, a.default_model, a.default_model_name) == \
        (10, 1, 8, "DigitsConvNet", None)
    assert len(a.train_loader.dataset) == len(tr) and len(a.val_loader.dataset) == len(te)
    assert len(a.val_loader) == -(-len(te) // 4)
    # The split does not follow --seed: the same test set (in order) and the same training set.
    assert same_batches(all_batches(a.val_loader), all_batches(b.val_loader))
    xa, ya = a.train_loader.x, a.train_loader.y
    assert torch.equal(xa, b.train_loader.x) and torch.equal(ya, b.train_loader.y)
    assert xa.shape == (len(tr), 1, 8, 8) and xa.dtype == torch.float32
    assert abs(xa.mean().item()) < 1e-4 and abs(xa.std().item() - 1) < 1e-2  # training mean/std
    x, y = next(iter(a.train_loader))
    assert x.shape == (4, 1, 8, 8) and y.dtype == torch.long
    assert a.bn_loader is a.train_loader


# --- TensorLoader -------------------------------------------------------------------------------------

def test_tensor_loader_covers_set_once_and_reseeds_per_epoch():
    n = 10
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    loader = TensorLoader(x, torch.arange(n), batch_size=3, shuffle=True, seed=5)
    assert len(loader) == 4 and len(loader.dataset) == n
    loader.set_epoch(2)
    first = all_batches(loader)
    assert [len(y) for _, y in first] == [3, 3, 3, 1]  # drop_last False
    ys = torch.cat([y for _, y in first])
    assert sorted(ys.tolist()) == list(range(n))
    assert all(torch.equal(xb[:, 0, 0, 0].long(), yb) for xb, yb in first)  # x stays paired with y
    loader.set_epoch(2)
    assert same_batches(first, all_batches(loader))
    loader.set_epoch(3)
    assert not torch.equal(ys, torch.cat([y for _, y in loader]))
    other = TensorLoader(x, torch.arange(n), batch_size=3, shuffle=True, seed=6)
    other.set_epoch(2)
    assert not torch.equal(ys, torch.cat([y for _, y in other]))
    plain = TensorLoader(x, torch.arange(n), batch_size=4)
    assert torch.cat([y for _, y in plain]).tolist() == list(range(n))


def test_crop_and_flip_by_hand():
    x = torch.arange(1, 10, dtype=torch.float32).view(1, 1, 3, 3)
    top_left = crop_and_flip(x, 1, torch.tensor([[0, 0]]), torch.tensor([False]))
    assert torch.equal(top_left[0, 0], torch.tensor([[0.0, 0, 0], [0, 1, 2], [0, 4, 5]]))
    bottom_right = crop_and_flip(x, 1, torch.tensor([[2, 2]]), torch.tensor([False]))
    assert torch.equal(bottom_right[0, 0], torch.tensor([[5.0, 6, 0], [8, 9, 0], [0, 0, 0]]))
    assert torch.equal(crop_and_flip(x, 1, torch.tensor([[1, 1]]), torch.tensor([True])), torch.flip(x, [3]))
    shifted_flipped = crop_and_flip(x, 1, torch.tensor([[1, 0]]), torch.tensor([True]))
    assert torch.equal(shifted_flipped[0, 0], torch.tensor([[2.0, 1, 0], [5, 4, 0], [8, 7, 0]]))
    # Per-sample offsets in one batch, several channels.
    xs = torch.stack([x[0].expand(2, 3, 3), -x[0].expand(2, 3, 3)])
    out = crop_and_flip(xs, 1, torch.tensor([[0, 0], [1, 1]]), torch.tensor([False, True]))
    assert torch.equal(out[0, 1], top_left[0, 0]) and torch.equal(out[1, 0], -torch.flip(x[0, 0], [1]))


def test_tensor_loader_augments_with_windows_of_the_padded_image():
    x = torch.randn(6, 2, 5, 5)
    loader = TensorLoader(x, torch.arange(6), batch_size=6, shuffle=False, pad=2, flip=True, seed=0)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    seen_offsets, seen_flip = set(), set()
    for epoch in range(4):
        loader.set_epoch(epoch)
        (out, y), = list(loader)
        for i in range(6):
            hits = [(r, c, f) for r in range(5) for c in range(5) for f in (False, True)
                    if torch.equal(out[i], (lambda w: torch.flip(w, [2]) if f else w)(padded[i, :, r:r + 5, c:c + 5]))]
            assert hits, "every output is a (possibly mirrored) window of the zero-padded input"
            seen_offsets.add(hits[0][:2])
            seen_flip.add(hits[0][2])
    assert len(seen_offsets) > 3 and seen_flip == {False, True}


def test_device_augmentation_matches_torchvision():
    img = np.random.default_rng(0).integers(0, 256, (1, 3, 8, 8), dtype=np.uint8)
    loader = TensorLoader(torch.from_numpy(img), torch.zeros(1, dtype=torch.long), 1,
                          mean=IMAGENET_MEAN, std=IMAGENET_STD)
    ours = loader._augment(crop_and_flip(torch.from_numpy(img), 2, torch.tensor([[3, 1]]), torch.tensor([True])))
    pil = Image.fromarray(img[0].transpose(1, 2, 0))
    ref = TF.hflip(TF.crop(TF.pad(pil, 2, fill=0), 3, 1, 8, 8))  # RandomCrop's zero padding is before Normalize
    ref = TF.normalize(TF.to_tensor(ref), list(IMAGENET_MEAN), list(IMAGENET_STD))
    assert torch.allclose(ours[0], ref, atol=1e-6)


# --- CIFAR --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("on_device", [False, True])
def test_cifar10_from_fake_pickles(tmp_path, on_device):
    fake = make_cifar10(tmp_path)
    b = get_dataset(cfg(tmp_path, set="CIFAR10", data_on_device=on_device))
    assert (b.num_classes, b.in_channels, b.image_size, b.default_model, b.default_model_name) == \
        (10, 3, 32, "CIFARResNet", "cifar_resnet_20")
    assert len(b.train_loader.dataset) == 10 and len(b.val_loader.dataset) == 3 and len(b.train_loader) == 3
    assert len(b.val_loader) == 1
    (x, y), = list(b.val_loader)
    assert y.tolist() == fake["test_y"]
    want = torch.stack([normalise(im.reshape(3, 32, 32)) for im in fake["test_x"]])
    assert torch.allclose(x, want, atol=1e-5)
    ys = torch.cat([y for _, y in b.train_loader])
    assert sorted(ys.tolist()) == sorted(fake["train_y"])
    # Training images are RandomCrop(32, 4) + flip of the raw images (both paths), and not all identity.
    variants = crop_variants(np.concatenate(fake["train_x"]).reshape(-1, 3, 32, 32), pad=4)
    identity = variants[:, 4 * 9 + 4, 0]
    moved = 0
    for epoch in range(3):
        b.set_epoch(epoch)
        for x, y in b.train_loader:
            dist = (x.flatten(1)[:, None, None, None] - variants.flatten(3)[None]).abs().amax(-1)  # (B, N, 81, 2)
            assert (dist.flatten(1).min(1).values < 1e-5).all()
            moved += int(((x.flatten(1)[:, None] - identity.flatten(1)[None]).abs().amax(-1).min(1).values > 1e-5).sum())
    assert moved > 0


def test_cifar100_fine_labels(tmp_path):
    fake = make_cifar100(tmp_path)
    b = get_dataset(cfg(tmp_path, set="CIFAR100"))
    assert b.num_classes == 100 and len(b.train_loader.dataset) == 6
    x, y = next(iter(b.val_loader))
    assert y.tolist() == fake["test_y"]
    assert torch.allclose(x[1], normalise(fake["test_x"][1].reshape(3, 32, 32)), atol=1e-5)


def test_dataloader_path_set_epoch_is_exact_and_leaves_global_rng(tmp_path):
    make_cifar10(tmp_path)
    b = get_dataset(cfg(tmp_path, set="CIFAR10"))
    state = torch.get_rng_state()
    b.set_epoch(4)
    e4 = all_batches(b.train_loader)
    b.set_epoch(5)
    e5 = all_batches(b.train_loader)
    assert torch.equal(state, torch.get_rng_state())  # augmentation does not consume the global RNG
    b.set_epoch(4)
    assert same_batches(e4, all_batches(b.train_loader))
    assert not same_batches(e4, e5)
    # A fresh loader (a resumed run) with persistent workers gives epoch 5 exactly.
    w = get_dataset(cfg(tmp_path, set="CIFAR10", workers=2))
    w.set_epoch(5)
    assert same_batches(e5, all_batches(w.train_loader))
    assert w.train_loader.persistent_workers and w.train_loader.num_workers == 2


# --- TinyImageNet, ImageNet-C, ImageFolder ------------------------------------------------------------

@pytest.mark.parametrize("reorganised", [False, True])
def test_tinyimagenet_raw_layout(tmp_path, reorganised):
    ann = make_tiny(tmp_path, reorganised)
    b = get_dataset(cfg(tmp_path, set="TinyImageNet"))
    assert (b.num_classes, b.image_size, b.default_model) == (3, 64, "TinyImageNetResNet18")
    assert len(b.train_loader.dataset) == 6 and len(b.val_loader.dataset) == 4
    idx = {w: i for i, w in enumerate(sorted(WNIDS))}
    val = b.val_loader.dataset
    got = {os.path.basename(p): t for p, t in val.samples}
    assert got == {n: idx[w] for n, w in ann}  # labels follow val_annotations.txt
    for x, y in b.val_loader:
        assert x.shape[1:] == (3, 64, 64)
        assert torch.equal(colour_class(x), y)  # and the images belong to those labels
    for x, y in b.train_loader:
        assert torch.equal(colour_class(x), y)


def test_imagenetc_layout(tmp_path):
    for w in WNIDS:
        save_img(tmp_path / "imagenet" / "train" / w / f"{w}.JPEG", COLOURS[w], 40)
    for w in ["n01", "n03"]:  # ImageNet-C class folders map through ImageNet's indices
        save_img(tmp_path / "imagenet-c" / "snow" / "3" / w / f"c_{w}.JPEG", COLOURS[w], 40)
    b = get_dataset(cfg(tmp_path, set="ImageNetC", ct="snow", sev=3))
    assert (b.num_classes, b.image_size, b.default_model) == (3, 224, "ResNet50")
    x, y = next(iter(b.val_loader))
    assert x.shape == (2, 3, 224, 224) and y.tolist() == [0, 2] and torch.equal(colour_class(x), y)
    assert len(b.train_loader.dataset) == 3 and b.bn_loader is b.train_loader
    with pytest.raises(UserError, match=r"imagenet-c.*fog.*--ct"):
        get_dataset(cfg(tmp_path, set="ImageNetC", ct="fog", sev=3))


def make_folder(root) -> None:
    for i, w in enumerate(sorted(WNIDS)):
        for k in range(3):
            save_img(root / "train" / w / f"{k}.jpg", COLOURS[w], 32)
        save_img(root / "test" / w / f"{i}.png", COLOURS[w], 32, "PNG")


def test_image_folder_cpu_and_on_device(tmp_path):
    make_folder(tmp_path)
    cpu = get_dataset(cfg(tmp_path, set="ImageFolder"))
    dev = get_dataset(cfg(tmp_path, set="ImageFolder", data_on_device=True))
    assert isinstance(dev.train_loader, TensorLoader) and not isinstance(cpu.train_loader, TensorLoader)
    for b in (cpu, dev):
        assert (b.num_classes, b.image_size, b.default_model, b.default_model_name) == \
            (3, 32, "CIFARResNet", "cifar_resnet_20")
        assert len(b.train_loader.dataset) == 9 and len(b.val_loader.dataset) == 3
        for x, y in b.train_loader:
            assert x.shape[1:] == (3, 32, 32)
            # Crops of a solid image keep the colour in the middle pixels.
            assert torch.equal(x[:, :, 12:20, 12:20].mean(dim=(2, 3)).argmax(1), y)
    (xc, yc), = list(cpu.val_loader)
    (xd, yd), = list(dev.val_loader)
    assert torch.equal(yc, yd) and torch.allclose(xc, xd, atol=1e-5)  # same decode, same normalisation


# --- label noise --------------------------------------------------------------------------------------

def test_label_noise_deterministic_nested_and_cached_outside_cwd(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    cache = tmp_path / "cache"
    clean = np.arange(1000) % 10
    a = noisy_targets(clean, 10, 0.2, 7, str(cache), "Toy")
    path = noise_file(str(cache), "Toy", 7, 1000)
    assert path == str(cache / "label_noise" / "Toy_dataseed7_n1000.npz") and os.path.isfile(path)
    assert np.array_equal(a, noisy_targets(clean, 10, 0.2, 7, str(cache), "Toy"))
    os.remove(path)  # the file is a record: the same plan is made again from the data seed
    assert np.array_equal(a, noisy_targets(clean, 10, 0.2, 7, str(cache), "Toy"))
    changed = np.flatnonzero(a != clean)
    assert 140 < len(changed) <= 200  # 20% drawn, about a tenth of them get their own label back
    b = noisy_targets(clean, 10, 0.5, 7, str(cache), "Toy")
    assert np.array_equal(b[changed], a[changed]) and (b != clean).sum() > len(changed)
    assert not np.array_equal(a, noisy_targets(clean, 10, 0.2, 8, str(cache), "Toy"))
    assert np.array_equal(noisy_targets(clean, 10, 0.0, 7, str(cache), "Toy"), clean)
    assert list(cwd.iterdir()) == []
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        noisy_targets(clean, 10, 1.5, 7, str(cache), "Toy")


def test_label_noise_applies_to_data_sets(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    clean = get_dataset(cfg(tmp_path)).train_loader.y
    digits = get_dataset(cfg(tmp_path, label_noise=0.5, data_seed=3))
    noisy = digits.train_loader.y
    assert 0.3 < (noisy != clean).float().mean() < 0.5
    # The file is written when training starts (the first set_epoch), not when the set is built.
    record = tmp_path / "logs" / "label_noise" / f"Digits_dataseed3_n{len(clean)}.npz"
    assert not record.exists()
    digits.set_epoch(0)
    assert record.is_file()
    make_cifar10(tmp_path, per_batch=20)
    b = get_dataset(cfg(tmp_path, set="CIFAR10", label_noise=1.0, data_seed=1))
    b.set_epoch(0)
    assert (tmp_path / "cifar10" / "label_noise" / "CIFAR10_dataseed1_n100.npz").is_file()
    clean_c = get_dataset(cfg(tmp_path, set="CIFAR10")).train_loader.dataset.targets
    assert b.train_loader.dataset.targets != clean_c
    assert list(cwd.iterdir()) == []
    with pytest.raises(UserError, match="label-noise"):
        get_dataset(cfg(tmp_path, label_noise=-0.1))


def test_noise_cache_falls_back_to_log_dir(tmp_path, monkeypatch):
    s = cfg(tmp_path)
    assert noise_cache_dir(str(tmp_path), s) == str(tmp_path)
    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # a read-only data folder
    assert noise_cache_dir(str(tmp_path), s) == s.log_dir


# --- missing folders ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,folder", [
    ("CIFAR10", "cifar10"), ("CIFAR100", "cifar100"), ("TinyImageNet", "tiny-imagenet-200"),
    ("ImageNet", "imagenet"), ("ImageNetC", "imagenet-c"), ("ImageFolder", "train"),
])
def test_missing_folders_raise_with_the_fix(tmp_path, monkeypatch, name, folder):
    def offline(set_name, root):  # torchvision creates the folder, then fails to connect
        os.makedirs(root, exist_ok=True)
        raise OSError("no network")

    monkeypatch.setattr("subspaces.data.cifar._download", offline)
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(UserError) as e:
        get_dataset(cfg(data, set=name))
    msg = str(e.value)
    assert "--data" in msg and str(data) in msg and folder in msg and "\n" not in msg
    assert tree(data) == []  # nothing left behind
    with pytest.raises(UserError):
        get_dataset(cfg(tmp_path / "typo", set=name))
    assert not (tmp_path / "typo").exists()


# --- data files never run code; corrupt ones are one line -------------------------------------------


class RunsCode:
    """A pickle that would run a shell command when loaded (as a planted data file could)."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def cifar_batch(tmp_path, name: str = "data_batch_1"):
    return tmp_path / "cifar10" / "cifar-10-batches-py" / name


def test_planted_cifar_batch_is_refused_without_running(tmp_path):
    make_cifar10(tmp_path)
    marker = tmp_path / "code_ran"
    write_pickle(cifar_batch(tmp_path), {b"data": fake_images(2, 1), b"labels": [0, 1], b"x": RunsCode(marker)})
    with pytest.raises(UserError) as e:
        get_dataset(cfg(tmp_path, set="CIFAR10"))
    msg = str(e.value)
    assert not marker.exists()  # the command never ran
    assert str(cifar_batch(tmp_path)) in msg and "system" in msg and "download" in msg and "\n" not in msg


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "wrong_content", "bad_label"])
def test_corrupt_cifar_batch_is_one_line(tmp_path, damage):
    make_cifar10(tmp_path)
    path = cifar_batch(tmp_path, "test_batch")
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "wrong_content":
        write_pickle(path, [1, 2, 3])
    else:
        write_pickle(path, {b"data": fake_images(2, 1), b"labels": [3, 10]})  # class 10 of ten classes
    with pytest.raises(UserError) as e:
        get_dataset(cfg(tmp_path, set="CIFAR10"))
    msg = str(e.value)
    assert str(path) in msg and "download" in msg and "\n" not in msg


def test_python2_cifar_batch_loads(tmp_path):
    """The real batches were pickled by Python 2 with NumPy 1: numpy.core names, no _codecs.encode."""
    from subspaces.data.cifar import read_batches

    x = fake_images(3, 5)
    raw = pickle.dumps({"data": x, "labels": [4, 5, 6]}, protocol=2)
    raw = raw.replace(b"numpy._core.multiarray\n_reconstruct", b"numpy.core.multiarray\n_reconstruct")
    assert b"numpy.core.multiarray" in raw
    (tmp_path / "b").write_bytes(raw)
    got_x, got_y = read_batches([str(tmp_path / "b")], "labels", 10)
    assert np.array_equal(got_x.reshape(3, -1), x) and got_y.tolist() == [4, 5, 6]


@pytest.mark.parametrize("damage", [b"", b"not a zip file", "truncated", "other_classes"])
def test_corrupt_label_noise_file_is_made_again(tmp_path, damage):
    clean = np.arange(500) % 10
    want = noisy_targets(clean, 10, 0.3, 4, str(tmp_path), "Toy")
    path = noise_file(str(tmp_path), "Toy", 4, 500)
    good = open(path, "rb").read()
    with np.load(path) as f:
        plan = {k: f[k] for k in f.files}
    if damage == "truncated":
        damage = good[: len(good) // 2]
    elif damage == "other_classes":
        noisy_targets(clean, 7, 0.3, 4, str(tmp_path), "Toy")  # same size and seed, 7 classes
        damage = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(damage)
    assert np.array_equal(noisy_targets(clean, 10, 0.3, 4, str(tmp_path), "Toy"), want)
    with np.load(path) as f:  # repaired: the same plan, from the data seed
        assert all(np.array_equal(f[k], v) for k, v in plan.items())
    # Through a data set: the repair waits for training, like a first write.
    digits_file = noise_file(str(tmp_path), "Digits", 4, len(get_dataset(cfg(tmp_path)).train_loader.y))
    with open(digits_file, "wb") as f:
        f.write(b"junk")
    digits = get_dataset(cfg(tmp_path, label_noise=0.3, data_seed=4, log_dir=str(tmp_path)))
    assert open(digits_file, "rb").read() == b"junk"
    digits.set_epoch(0)
    with np.load(digits_file, allow_pickle=False) as f:
        assert np.array_equal(np.sort(f["perm"]), np.arange(len(digits.train_loader.y)))


def test_label_noise_folder_in_the_way_is_one_line(tmp_path):
    clean = np.arange(50) % 10
    os.makedirs(noise_file(str(tmp_path), "Toy", 0, 50))
    with pytest.raises(UserError, match="delete it"):
        noisy_targets(clean, 10, 0.3, 0, str(tmp_path), "Toy")


def test_tinyimagenet_binary_annotations_are_one_line(tmp_path):
    make_tiny(tmp_path)
    (tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt").write_bytes(bytes(range(256)))
    with pytest.raises(UserError, match="re-extract"):
        get_dataset(cfg(tmp_path, set="TinyImageNet"))


# --- CIFAR as image files (e.g. the JPEG re-encoding of CIFAR-10) ----------------------------------


def test_cifar10_as_jpegs_gives_the_loaders_of_its_batches(tmp_path):
    """<data>/cifar10/{train,test}/<class>/*.jpg read as CIFAR10: exactly the batches and
    augmentation of the pickled batches holding the same pixels (in the folders' order)."""
    from subspaces.data.folders import decode_all, scan

    make_cifar_images(tmp_path / "jpg")
    root = tmp_path / "jpg" / "cifar10"
    classes = {f"class{c:02d}": c for c in range(10)}
    samples = {split: scan(str(root / split), classes) for split in ("train", "test")}
    pixels = {split: decode_all([p for p, _ in s]).reshape(len(s), -1) for split, s in samples.items()}
    d = tmp_path / "pickled" / "cifar10" / "cifar-10-batches-py"
    for i in range(5):  # the same images, in the same order, as five training batches and a test batch
        part = slice(i * 4, (i + 1) * 4)
        write_pickle(d / f"data_batch_{i + 1}", {b"data": pixels["train"][part], b"labels": [t for _, t in samples["train"][part]]})
    write_pickle(d / "test_batch", {b"data": pixels["test"], b"labels": [t for _, t in samples["test"]]})
    jpgs = get_dataset(cfg(tmp_path / "jpg", set="CIFAR10"))
    batches = get_dataset(cfg(tmp_path / "pickled", set="CIFAR10"))
    assert (jpgs.num_classes, jpgs.image_size, jpgs.default_model_name) == (10, 32, "cifar_resnet_20")
    assert same_batches(all_batches(jpgs.val_loader), all_batches(batches.val_loader))
    for epoch in (0, 1):
        jpgs.set_epoch(epoch)
        batches.set_epoch(epoch)
        assert same_batches(all_batches(jpgs.train_loader), all_batches(batches.train_loader))


def test_cifar_image_folders_that_do_not_fit_are_one_line(tmp_path):
    make_cifar_images(tmp_path / "few", classes=3)
    with pytest.raises(UserError, match="need 10 class folders in both train/ and test/ .found 3"):
        get_dataset(cfg(tmp_path / "few", set="CIFAR10"))
    make_cifar_images(tmp_path / "deep", name="cifar10")
    with pytest.raises(UserError, match=r"--data .*cifar10 holds CIFAR10 itself; --data is the folder that holds the data sets"):
        get_dataset(cfg(tmp_path / "deep" / "cifar10", set="CIFAR10"))
    assert tree(tmp_path / "deep" / "cifar10").count("cifar10") == 0  # nothing made inside it
