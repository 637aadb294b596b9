"""Figure 4's evaluation of one trained line: the original's procedure against this project's grid.

Both evaluate the 21 pairs (alpha0, alpha1 = 1 - alpha0), alpha0 = 0, 0.05, ..., 1, with the
BatchNorm statistics recomputed at every point, on the same checkpoint, the same test images and
the same BatchNorm batches (the same training images, in the same order, with the same random
crops and flips), and must report the same accuracies (checked; the script fails otherwise).

* The original's procedure, re-enacted here (and only here) as its eval_lines config and
  eval_one_dim_subspaces trainer run it: one run of main per pair, each building two models,
  loading the checkpoint into both, setting ``alpha`` on every module, recomputing the BatchNorm
  statistics of each model with autograd on over the training loader (images decoded and
  augmented again in every pass, by torchvision transforms in the main process, as its loaders
  do without CUDA), then one test pass per model. 42 BatchNorm passes and 42 test passes.
* This project: ``main.py --trainer eval_one_dim_subspaces --alphas 0,0.05,...,1 --update-bn``:
  one run; each of the 21 distinct points is evaluated once (BatchNorm passes under no_grad),
  the BatchNorm and test batches decoded once and replayed; the pair metrics come from the
  points' kept outputs. 21 BatchNorm passes and 21 test passes. Its defaults on a CPU: an
  evaluation-only run uses channels-last convolutions (``--project-channels-last`` overrides).

Each grid runs in a fresh Python process, set up as each procedure's own code sets it up: the
original's config script runs all its runs in one process that leaves glibc's allocator at its
defaults (freed activations are handed back to the OS and page-faulted in again: the table counts
the page faults); this project's ``main()`` calls :func:`subspaces.utils.memory.keep_freed_memory` on a
CPU. ``--original-malloc-tuned`` gives the original's process that setting too, to separate the
effects.

Data: ``--data`` a folder of class folders ``train/<class>/*`` and ``test/<class>/*`` (e.g. the
CIFAR-10 JPEGs), of which every k-th image is used (``--bn-images`` training, ``--test-images``
test; all classes are in), read by both through torchvision's ImageFolder as the original reads
image folders (PIL opens and decodes every image in every pass of its loaders); without
``--data``, synthetic 32x32 images held as uint8 arrays, as the original holds CIFAR-10 (it
still converts and augments every image in every pass). The line is trained here first
(``--train-epochs`` on the same training images, with this project's trainer) unless
``--checkpoint`` names one. The last line is ``speedup: <original / project>`` (medians of the
interleaved repetitions).

    python bench/eval_grid.py                                   # synthetic data, a few minutes
    python bench/eval_grid.py --data ~/data/cifar10-jpg         # CIFAR-10 JPEG subset
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import types

import common  # first: it puts the repository on sys.path
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from subspaces import data as datasets
from subspaces import main as main_mod
from subspaces import models
from subspaces.args import Settings
from subspaces.data.arrays import ArrayDataset, crop_transforms
from subspaces.data.base import IMAGENET_MEAN, IMAGENET_STD, DataBundle
from subspaces.utils.memory import keep_freed_memory

# alpha0 = 0, 0.05, ..., 1 (the original's eval_lines config lists 0.5 twice: 22 runs; we count 21)
GRID = tuple(round(0.05 * i, 2) for i in range(21))
BN_SEED = 1234  # the global RNG seed before every BatchNorm pass: the same shuffle and crops each time
SET_NAME = "BenchImages"


# --- data -----------------------------------------------------------------------------------------


def synthetic_arrays(n_train: int, n_test: int, num_classes: int = 10, seed: int = 0) -> tuple:
    """Learnable 32x32 images: a class colour and stripe pattern, plus noise."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(40, 215, (num_classes, 3, 1, 1))
    period = rng.integers(3, 9, num_classes)
    grid = np.arange(32)

    def make(n: int) -> tuple:
        y = rng.integers(0, num_classes, n)
        stripes = np.sin(2 * np.pi * grid[None, :] / period[:, None])[:, None, None, :] * 30  # (K, 1, 1, W)
        x = colours[y] + stripes[y] + rng.normal(0, 40, (n, 3, 32, 32))
        return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)

    return (*make(n_train), *make(n_test), num_classes)


class Source:
    """The images both procedures use: uint8 arrays (the synthetic default, as the original holds
    CIFAR-10) or an image folder (read as the original reads image folders: torchvision's
    ImageFolder, every image opened and decoded by PIL in every pass)."""

    folder = None  # a folder with train/ and test/, or None for the arrays
    x_train = y_train = x_test = y_test = None
    num_classes = 10
    n_test = 0


def original_loaders(batch_size: int) -> tuple:
    """The original's loaders: RandomCrop(32, 4) + flip + ToTensor + Normalize per image in
    ``__getitem__``, a shuffled training loader, no worker processes (its loaders use workers
    only with CUDA). Built anew for every run, as its main does."""
    from torchvision.datasets import ImageFolder as TVImageFolder

    train_tf, test_tf = crop_transforms(32, 4, IMAGENET_MEAN, IMAGENET_STD)
    if Source.folder is None:
        train = ArrayDataset(Source.x_train, Source.y_train, train_tf)
        test = ArrayDataset(Source.x_test, Source.y_test, test_tf)
    else:
        train = TVImageFolder(os.path.join(Source.folder, "train"), train_tf)
        test = TVImageFolder(os.path.join(Source.folder, "test"), test_tf)
    return (DataLoader(train, batch_size=batch_size, shuffle=True),
            DataLoader(test, batch_size=batch_size, shuffle=False))


class BenchImages(DataBundle):
    """The same loaders as a data set of this project (``--set BenchImages``, registered below):
    its epoch seed is the global RNG seed the original's loaders draw their shuffle and crops from."""

    def __init__(self, settings) -> None:
        train, val = original_loaders(settings.batch_size)
        super().__init__(train, val, num_classes=Source.num_classes, in_channels=3, image_size=32,
                         default_model="CIFARResNet", default_model_name="cifar_resnet_20")

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        torch.manual_seed(BN_SEED + epoch)


datasets.DATASETS.register(BenchImages, name=SET_NAME)


# --- the original's procedure ----------------------------------------------------------------------


def original_update_bn(loader, model: nn.Module) -> None:
    """The original's utils.update_bn: reset the statistics, momentum None (cumulative average),
    forward every training batch in train mode -- with autograd on."""
    momenta = {}
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean = torch.zeros_like(module.running_mean)
            module.running_var = torch.ones_like(module.running_var)
            momenta[module] = module.momentum
    if not momenta:
        return
    was_training = model.training
    model.train()
    for module in momenta:
        module.momentum = None
        module.num_batches_tracked *= 0
    for input in loader:
        if isinstance(input, (list, tuple)):
            input = input[0]
        model(input)
    for module, momentum in momenta.items():
        module.momentum = momentum
    model.train(was_training)


def original_ops(net: nn.Module) -> nn.Module:
    """Give a CIFARResNet the original's op sequence: its ReLUs out of place, the residual added in
    place (this project's model does both in place). Modules and weights stay as they are."""

    def block_forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.blocks(F.relu(self.bn(self.conv(x)))), 1).flatten(1)

    for block in net.blocks:
        block.forward = types.MethodType(block_forward, block)
    net.features = types.MethodType(features, net)
    return net


def original_run(ckpt: str, alpha0: float, alpha1: float, args) -> dict:
    """One run of the original's main for one pair (its eval_lines config, trainer eval_one_dim_subspaces)."""
    train_loader, val_loader = original_loaders(args.batch_size)  # main: data.CIFAR10() every run
    builder = models.Builder("LinesConv", "LinesBN", "kaiming_normal")
    nets = [original_ops(models.get_model("CIFARResNet", builder, output_size=Source.num_classes, model_name=args.model_name))
            for _ in range(2)]
    for net in nets:  # args.resume = [ckpt] * 2: each model loads the file
        checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)  # the original unpickled fully; safe loading costs the same here
        model_dict = net.state_dict()
        # (It strips a "module." prefix from every key blindly; these keys have none, so they load as they are.)
        model_dict.update({k: v for k, v in checkpoint["state_dicts"][0].items() if k in model_dict})
        net.load_state_dict(model_dict)
    criterion = nn.CrossEntropyLoss()
    model, model_0 = nets
    model_0.eval(), model_0.zero_grad(), model.zero_grad(), model.eval()
    model.apply(lambda m: setattr(m, "alpha", alpha1))
    model_0.apply(lambda m: setattr(m, "alpha", alpha0))
    torch.manual_seed(BN_SEED)  # the bench's: the same BatchNorm batches in every pass (see BenchImages)
    original_update_bn(train_loader, model)
    torch.manual_seed(BN_SEED)
    original_update_bn(train_loader, model_0)
    test_loss = correct = ensemble_correct = m0_correct = 0
    tv_dist = feat_cosim = 0.0
    with torch.no_grad():
        for x, target in val_loader:
            output, feats = model.forward_with_features(x)  # the original's return_feats
            test_loss += criterion(output, target).item()
            pred = output.argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()
            model_0_output, model_0_feats = model_0.forward_with_features(x)
            ensemble_pred = (model_0_output + output).argmax(dim=1, keepdim=True)
            ensemble_correct += ensemble_pred.eq(target.view_as(pred)).sum().item()
            m0_pred = model_0_output.argmax(dim=1, keepdim=True)
            m0_correct += m0_pred.eq(target.view_as(pred)).sum().item()
            p_t, p_0 = nn.functional.softmax(output, dim=1), nn.functional.softmax(model_0_output, dim=1)
            tv_dist += 0.5 * (p_0 - p_t).abs().sum().item()
            feat_cosim += nn.functional.cosine_similarity(feats, model_0_feats, dim=1).pow(2).sum().item()
    n = len(val_loader.dataset)
    return {"correct": correct, "m0_correct": m0_correct, "ensemble_correct": ensemble_correct,
            "tvdist": tv_dist / n, "feat_cossim": feat_cosim / n}


def original_grid(ckpt: str, args) -> list:
    return [original_run(ckpt, a, 1.0 - a, args) for a in args.grid]


# --- this project ----------------------------------------------------------------------------------


def project_settings(args, log_dir: str, **changes) -> Settings:
    base = dict(set=SET_NAME, model="CIFARResNet", model_name=args.model_name, conv_type="LinesConv",
                bn_type="LinesBN", batch_size=args.batch_size, test_batch_size=args.batch_size, workers=0,
                log_dir=log_dir, seed=0, channels_last=args.channels_last)
    return Settings(**{**base, **changes})


def project_grid(ckpt: str, args, log_dir: str) -> list:
    """``main.py --trainer eval_one_dim_subspaces --alphas <grid> --update-bn --resume CKPT --pretrained``."""
    s = project_settings(args, log_dir, trainer="eval_one_dim_subspaces", resume=(ckpt,), pretrained=True,
                         epochs=0, alphas=tuple(args.grid), update_bn=True, save_data=True, name="id=bench")
    summary = main_mod.main(s)
    n = Source.n_test
    return [{"correct": round(float(r["curr_acc1"]) * n), "m0_correct": round(float(r["m0_acc"]) * n),
             "ensemble_correct": round(float(r["ensemble_acc"]) * n), "tvdist": float(r["tvdist"]),
             "feat_cossim": float(r["feat_cossim"])} for r in summary.rows]


def train_line(args, log_dir: str) -> str:
    """Train a line on the bench's training images with the project's trainer; its last checkpoint."""
    s = project_settings(args, log_dir, trainer="train_one_dim_subspaces", epochs=args.train_epochs, beta=1.0,
                         lr=0.05, save=True, name="id=bench-line", channels_last=False)
    summary = main_mod.main(s)
    return str(sorted(summary.run_dir.glob("epoch_*_iter_*.pt"), key=lambda p: int(p.name.split("_")[1]))[-1])


# --- the comparison --------------------------------------------------------------------------------


def compare(orig: list, proj: list, grid: list) -> tuple:
    """(rows for the table, problems): accuracies must be equal; TV and feature cosine close."""
    rows, problems = [], []
    for a, o, p in zip(grid, orig, proj):
        same = all(o[k] == p[k] for k in ("correct", "m0_correct", "ensemble_correct"))
        close = all(math.isclose(o[k], p[k], rel_tol=1e-4, abs_tol=1e-5) for k in ("tvdist", "feat_cossim"))
        if not same:
            problems.append(f"alpha0={a}: accuracies differ (original {o}, project {p})")
        elif not close:
            problems.append(f"alpha0={a}: tvdist/feat_cossim differ (original {o}, project {p})")
        n = Source.n_test
        rows.append([f"{a:g}", f"{1 - a:g}", f"{o['correct'] / n:.4f}", f"{o['m0_correct'] / n:.4f}",
                     f"{o['ensemble_correct'] / n:.4f}", f"{o['tvdist']:.4f}", f"{o['feat_cossim']:.4f}",
                     "yes" if same and close else "NO"])
    if len(orig) != len(proj):
        problems.append(f"{len(orig)} original rows but {len(proj)} project rows")
    return rows, problems


# --- one procedure in its own process ---------------------------------------------------------------


def load_source(job: dict) -> None:
    """Point :class:`Source` at the job's images (the arrays file or the image folder)."""
    if job["folder"]:
        Source.folder = job["folder"]
    else:
        with np.load(job["arrays"]) as a:
            Source.x_train, Source.y_train, Source.x_test, Source.y_test = (a[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    Source.num_classes, Source.n_test = job["num_classes"], job["n_test"]


def worker(procedure: str, job_file: str) -> None:
    """Run one procedure's grid in this (fresh) process; write its seconds and rows as JSON.

    The process is set up as each procedure's own runs it: the original's config script runs
    its 21 runs in one Python process that never touches the allocator (glibc's defaults); this
    project's ``main()`` calls :func:`keep_freed_memory` itself on a CPU. ``--original-malloc-tuned``
    gives the original's process this project's setting too.
    """
    with open(job_file) as f:
        job = json.load(f)
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    load_source(job)
    args = argparse.Namespace(**job["args"])
    if procedure == "original":
        if job["original_malloc_tuned"]:
            keep_freed_memory()
        run = lambda: original_grid(job["ckpt"], args)  # noqa: E731
    else:
        run = lambda: project_grid(job["ckpt"], args, job["log_dir"])  # noqa: E731
    t0 = time.perf_counter()
    rows = run()
    seconds = time.perf_counter() - t0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with open(job["out"], "w") as f:
        json.dump({"seconds": seconds, "rows": rows, "page_faults": faults}, f)


def run_worker(procedure: str, job: dict, tmp: str, rep: int) -> dict:
    """Start a fresh Python process for one procedure's grid; its result."""
    job = dict(job, out=os.path.join(tmp, f"{procedure}-{rep}.json"), log_dir=os.path.join(tmp, f"eval-{rep}"))
    job_file = os.path.join(tmp, f"job-{procedure}-{rep}.json")
    with open(job_file, "w") as f:
        json.dump(job, f)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # each procedure's own allocator setting
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", procedure, job_file], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the {procedure} procedure failed:\n{proc.stderr[-3000:]}")
    with open(job["out"]) as f:
        return json.load(f)


# --- the comparison --------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="folder with train/<class>/* and test/<class>/* (default: synthetic images)")
    p.add_argument("--bn-images", type=int, default=640, help="training images: the BatchNorm passes (and the line's training)")
    p.add_argument("--test-images", type=int, default=128, help="test images")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--model-name", default="cifar_resnet_20")
    p.add_argument("--checkpoint", default=None, help="a trained LinesConv/LinesBN checkpoint of --model-name (default: train one here)")
    p.add_argument("--train-epochs", type=int, default=6, help="epochs of the line trained here")
    p.add_argument("--alphas", default=None, help="alpha0 values (default: 0,0.05,...,1)")
    p.add_argument("--original-config-grid", action="store_true",
                   help="the original eval_lines config's 22 alpha0 values (0.5 twice) instead of the 21 distinct ones")
    p.add_argument("--reps", type=int, default=5, help="interleaved repetitions (>= 5); figures are medians")
    p.add_argument("--project-channels-last", default="auto", choices=("auto", "on", "off"),
                   help="this project's --channels-last (auto: its default, on for evaluation-only runs on a CPU)")
    p.add_argument("--original-malloc-tuned", action="store_true",
                   help="give the original's process this project's allocator setting (keep_freed_memory) too")
    p.add_argument("--threads", type=int, default=None, help="torch threads of both processes (default: torch's)")
    p.add_argument("--worker", nargs=2, metavar=("PROCEDURE", "JOB"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(*args.worker)
    if args.alphas:
        args.grid = [float(a) for a in args.alphas.split(",")]
    else:
        args.grid = sorted(GRID + ((0.5,) if args.original_config_grid else ()))
    args.channels_last = {"auto": None, "on": True, "off": False}[args.project_channels_last]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")

    with tempfile.TemporaryDirectory() as tmp:
        job = {"folder": None, "arrays": None, "threads": args.threads, "original_malloc_tuned": args.original_malloc_tuned,
               "args": {k: getattr(args, k) for k in ("batch_size", "model_name", "grid", "channels_last")}}
        if args.data:
            Source.folder = job["folder"] = os.path.join(tmp, "images")
            Source.num_classes = common.folder_subset(args.data, args.bn_images, args.test_images, Source.folder)
            what = f"{args.data}: every k-th image, read as the original reads image folders (torchvision ImageFolder, PIL)"
        else:
            Source.x_train, Source.y_train, Source.x_test, Source.y_test, Source.num_classes = \
                synthetic_arrays(args.bn_images, args.test_images)
            job["arrays"] = os.path.join(tmp, "arrays.npz")
            np.savez(job["arrays"], x_train=Source.x_train, y_train=Source.y_train, x_test=Source.x_test, y_test=Source.y_test)
            what = "synthetic 32x32 images held as uint8 arrays (as the original holds CIFAR-10)"
        n_train = len(original_loaders(args.batch_size)[0].dataset)
        Source.n_test = len(original_loaders(args.batch_size)[1].dataset)
        job.update(num_classes=Source.num_classes, n_test=Source.n_test)
        points = {round(a, 12) for a in args.grid} | {round(1 - a, 12) for a in args.grid}
        common.header(f"Figure 4 evaluation of a line ({len(args.grid)} pairs, {len(points)} distinct points, "
                      f"BatchNorm statistics recomputed at every point): the original's procedure vs this project's grid", device)
        print(f"# data: {what}; {n_train} training images (the BatchNorm passes), {Source.n_test} test images")
        print(f"# model: {args.model_name} LinesConv/LinesBN, batch {args.batch_size}")
        print("# each grid in a fresh process, as each procedure runs: the original's "
              + ("with this project's allocator setting (--original-malloc-tuned)" if args.original_malloc_tuned
                 else "with glibc's default allocator settings (its code never changes them)")
              + "; this project's as main.py sets it up on a CPU (keep_freed_memory), --channels-last "
              + {"auto": "auto (on: an evaluation-only run on a CPU)", "on": "on", "off": "off"}[args.project_channels_last])
        sys.stdout.flush()

        ckpt = args.checkpoint
        if ckpt is None:
            t0 = time.perf_counter()
            ckpt = train_line(args, os.path.join(tmp, "train"))
            print(f"# line trained here for {args.train_epochs} epochs in {time.perf_counter() - t0:.0f}s (not timed)")
        job["ckpt"] = os.path.abspath(ckpt)
        procedures = ("original", "project")
        out: dict = {}
        problems: list = []
        times: dict = {k: [] for k in procedures}
        faults: dict = {k: [] for k in procedures}
        for r in range(args.reps):
            for k in (procedures if r % 2 == 0 else procedures[::-1]):
                res = run_worker(k, job, tmp, r)
                out[k] = res["rows"]
                times[k].append(res["seconds"])
                faults[k].append(res["page_faults"])
            rows, bad = compare(out["original"], out["project"], args.grid)
            problems += [f"repetition {r + 1}: {b}" for b in bad]
            print(f"#   repetition {r + 1}/{args.reps}: " + ", ".join(f"{k} {times[k][-1]:.1f}s" for k in procedures),
                  file=sys.stderr, flush=True)
    if args.reps < common.MIN_REPS:
        print(f"warning: {args.reps} repetitions; figures are meant as medians of at least {common.MIN_REPS}", file=sys.stderr)

    print()
    print(common.table(rows, ["alpha0", "alpha1", "acc (alpha1)", "m0_acc (alpha0)", "ensemble_acc", "tvdist",
                              "feat_cossim", "same in both"]))
    print()
    orig_m, proj_m = common.median(times["original"]), common.median(times["project"])
    print(common.table([
        ["original (one run per pair, two models each)", f"{orig_m:.1f}", f"{min(times['original']):.1f}",
         2 * len(args.grid), 2 * len(args.grid), f"{common.median(faults['original']):,.0f}", "1.00"],
        ["this project (--alphas, each point once)", f"{proj_m:.1f}", f"{min(times['project']):.1f}",
         len(points), len(points), f"{common.median(faults['project']):,.0f}", f"{orig_m / proj_m:.2f}"],
    ], ["procedure", "s per grid (median)", "s (min)", "BatchNorm passes", "test passes", "page faults (process)", "speedup"]))
    print(f"\n{args.reps} interleaved repetitions; paired speedup (median of per-repetition ratios): "
          f"{common.paired_ratio(times['original'], times['project']):.2f}")
    if problems:
        print("\nFAILED: the two procedures disagree:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print("accuracies: identical in every pair and repetition")
    print(f"speedup: {orig_m / proj_m:.2f}")


if __name__ == "__main__":
    main()
