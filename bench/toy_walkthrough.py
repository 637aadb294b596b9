"""The seed walkthrough's TinyImageNet configs, 1 epoch each, on a toy TinyImageNet: time per script.

Builds (or reuses) a toy ``tiny-imagenet-200`` in the real download's layout under ``--data``
(``wnids.txt``, ``train/<wnid>/images/*.JPEG``, ``val/images`` + ``val/val_annotations.txt``),
then runs each config script of the walkthrough as a user would -- ``python
experiment_configs/tinyimagenet/<script>.py --data <folder> --epochs 1 --seeds 0 --device cpu``
-- in order, each checkout into its own fresh results root, and prints each script's wall time
and CPU time (user + system of the script and its loader workers) and the totals. The configs
keep their own settings (ResNet18, 8 loader workers, the 21-point Figure 4 grid).

    python bench/toy_walkthrough.py --data /tmp/toy-tiny
    python bench/toy_walkthrough.py --data /tmp/toy-tiny --n 2 --compare /path/to/other/checkout

``--compare`` runs every script in both checkouts, one after the other, the order alternating
from script to script, so that load from other processes on a shared machine falls on both
alike. One run of each script, not a median: the point is the size of a walkthrough's time and
what a change does to it.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # first: it puts the repository on sys.path
import torch

from experiment_configs import CONFIG_SCRIPTS

# The seed walkthrough's config scripts, in the order a reproduction runs them.
WALKTHROUGH = tuple(s for s in CONFIG_SCRIPTS if not s.startswith("swa/")
                    and s not in ("ensembles/eval_average_weights", "one_dimensional_subspaces/eval_linestats_swa",
                                  "one_dimensional_subspaces/eval_aligned_line"))


def make_toy_tiny(root: Path, classes: int = 10, train_per_class: int = 15, val: int = 50, size: int = 64) -> Path:
    """A toy ``tiny-imagenet-200`` under ``root`` (``classes * train_per_class + val`` JPEGs) unless
    one is there already; returns its folder. Each class is a noisy colour, so it is learnable."""
    from PIL import Image

    t = root / "tiny-imagenet-200"
    if (t / "wnids.txt").is_file():
        return t
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".toy-"))  # built aside, then renamed into place
    out = tmp / "tiny-imagenet-200"
    wnids = [f"n{i:08d}" for i in range(classes)]
    g = torch.Generator().manual_seed(0)
    colours = torch.rand(classes, 3, 1, 1, generator=g)

    def save(path: Path, c: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        img = (colours[c] * 0.6 + torch.rand(3, size, size, generator=g) * 0.4).mul(255).byte()
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(path, "JPEG")

    for c, w in enumerate(wnids):
        for k in range(train_per_class):
            save(out / "train" / w / "images" / f"{w}_{k}.JPEG", c)
    lines = []
    for k in range(val):
        save(out / "val" / "images" / f"val_{k}.JPEG", k % classes)
        lines.append(f"val_{k}.JPEG\t{wnids[k % classes]}\t0\t0\t{size - 1}\t{size - 1}\n")
    (out / "val" / "val_annotations.txt").write_text("".join(lines))
    (out / "wnids.txt").write_text("\n".join(wnids) + "\n")
    os.replace(out, t)  # whole or not at all
    shutil.rmtree(tmp, ignore_errors=True)
    return t


def run_script(repo: Path, name: str, args, results: Path) -> tuple:
    """``(wall seconds, CPU seconds)`` of one config script of checkout ``repo``; stops the
    benchmark if it fails."""
    cmd = [sys.executable, str(repo / "experiment_configs" / "tinyimagenet" / f"{name}.py"),
           "--data", str(args.data), "--log-dir", str(results), "--epochs", str(args.epochs),
           "--seeds", args.seeds, "--device", "cpu", "--quiet"]
    if args.n and name.startswith("simplexes/"):
        cmd += ["--n", args.n]
    if args.alphas and name.startswith("one_dimensional_subspaces/eval"):
        cmd += ["--alphas", args.alphas]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    took = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{repo}: {name} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return took, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder for (or holding) the toy tiny-imagenet-200")
    p.add_argument("--compare", type=Path, help="another checkout of this repository to run side by side")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seeds", default="0")
    p.add_argument("--n", help="simplex sizes (default: the config's 2,3,4,5,6)")
    p.add_argument("--alphas", help="Figure 4 grid (default: the config's 21 points)")
    p.add_argument("--scripts", help="comma-separated subset of the walkthrough, in its order (default: all)")
    args = p.parse_args(argv)
    names = [s for s in WALKTHROUGH if not args.scripts or s.split("/")[-1] in args.scripts.split(",")]
    repos = {"this": common.ROOT}
    if args.compare:
        repos["compare"] = args.compare.expanduser().resolve()
        git = lambda r: subprocess.run(["git", "-C", str(r), "log", "-1", "--format=%h"], capture_output=True,  # noqa: E731
                                       text=True).stdout.strip() or "?"
        print(f"# this: {repos['this']} ({git(repos['this'])}); compare: {repos['compare']} ({git(repos['compare'])})")
    common.header("Seed walkthrough on a toy TinyImageNet (seconds per config script)", torch.device("cpu"))
    tiny = make_toy_tiny(args.data.expanduser().resolve())
    n_images = sum(1 for _ in tiny.rglob("*.JPEG"))
    print(f"# data: {tiny} ({n_images} images); affinity {len(os.sched_getaffinity(0))} cores")
    print(f"{'script':<45}" + "".join(f"{k + ' wall':>14}{k + ' cpu':>14}" for k in repos), flush=True)
    total = {k: [0.0, 0.0] for k in repos}
    with tempfile.TemporaryDirectory(prefix="toy-walkthrough-") as tmp:
        for i, name in enumerate(names):
            order = list(repos) if i % 2 == 0 else list(reversed(repos))
            got = {k: run_script(repos[k], name, args, Path(tmp) / k) for k in order}
            for k in repos:
                total[k][0] += got[k][0]
                total[k][1] += got[k][1]
            print(f"{name:<45}" + "".join(f"{got[k][0]:14.1f}{got[k][1]:14.1f}" for k in repos), flush=True)
    if hasattr(os, "getloadavg"):
        print(f"# load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"{'total':<45}" + "".join(f"{total[k][0]:14.1f}{total[k][1]:14.1f}" for k in repos))


if __name__ == "__main__":
    main()
