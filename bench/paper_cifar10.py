"""The paper's CIFAR-10 headline on one GPU: standard training (2 seeds), a line and a curve of
cifar_resnet_20 for 160 epochs with the paper's settings, the Figure 4 grid (BatchNorm recomputed
at every point), Figure 4, and one row of numbers to compare with the paper.

    bash bench/paper_cifar10.sh --data DIR [--device cuda] [--epochs 160] [--parallel 4] [--out DIR]
    bash bench/paper_cifar10.sh --smoke --device cpu          # a tiny CIFAR-format set made here

``--data`` holds CIFAR-10 as the canonical python batches (``DIR/cifar10/cifar-10-batches-py`` or
``DIR/cifar-10-batches-py``) or as a JPEG folder (``DIR/train/<class>/*.jpg``, ``DIR/test/...``),
which is converted once into the batch format. Runs use the experiment configs' names and folders
(``<out>/train-ensemble-members`` ...), so ``analyze_results/cifar10/*.py --log-dir <out>`` read
them too. The training runs share the GPU as concurrent processes (``--parallel``), each holding
the data set on the device (``--data-on-device``).
"""
from __future__ import annotations

import argparse
import pickle
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from subspaces.args import replace  # noqa: E402
from subspaces import sweep  # noqa: E402
from experiment_configs.cifar10.common import SETUP  # noqa: E402

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_batches(out: Path, train: tuple, test: tuple) -> Path:
    """CIFAR-10's python batch format (5 training batches and a test batch) under ``out/cifar10``."""
    folder = out / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    parts = np.array_split(np.arange(len(train[1])), 5)
    for i, idx in enumerate(parts, 1):
        batch = {b"data": train[0][idx].reshape(len(idx), -1), b"labels": [int(v) for v in train[1][idx]]}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": test[0].reshape(len(test[1]), -1), b"labels": [int(v) for v in test[1]]}))
    return out


def smoke_data(out: Path, n_train: int = 256, n_test: int = 128) -> Path:
    """A small learnable CIFAR-format set: a colour and a stripe pattern per class, plus noise."""
    rng = np.random.default_rng(0)

    def make(n: int) -> tuple:
        y = rng.integers(0, 10, n)
        base = np.stack([np.full((32, 32), 25 * k) for k in range(10)])[y]
        stripes = ((np.arange(32)[None, :] // (1 + y[:, None, None] % 4)) % 2) * 60
        x = np.stack([base, base + stripes, 255 - base], axis=1) + rng.integers(-20, 20, (n, 3, 32, 32))
        return x.clip(0, 255).astype(np.uint8), y

    return write_batches(out, make(n_train), make(n_test))


def from_jpegs(folder: Path, out: Path) -> Path:
    """Convert a ``train/<class>/``, ``test/<class>/`` JPEG folder into the batch format (once)."""
    from PIL import Image

    if (out / "cifar10" / "cifar-10-batches-py" / "test_batch").exists():
        return out

    def read(split: str) -> tuple:
        xs, ys = [], []
        for k, c in enumerate(CLASSES):
            for p in sorted((folder / split / c).iterdir()):
                xs.append(np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8).transpose(2, 0, 1))
                ys.append(k)
        return np.stack(xs), np.array(ys)

    return write_batches(out, read("train"), read("test"))


def resolve_data(args) -> Path:
    """The folder to pass as --data (holding cifar10/cifar-10-batches-py)."""
    if args.data is None:
        return smoke_data(args.out / "data")
    data = Path(args.data).expanduser()
    if (data / "cifar10" / "cifar-10-batches-py").is_dir():
        return data
    if (data / "cifar-10-batches-py").is_dir():
        return data.parent if data.name == "cifar10" else _link(data, args.out / "data")
    if (data / "train").is_dir() and (data / "test").is_dir():
        return from_jpegs(data, args.out / "data")
    raise SystemExit(f"error: no CIFAR-10 at {data}; pass --data with cifar-10-batches-py/ or train/<class>/ + test/<class>/")


def _link(batches_parent: Path, out: Path) -> Path:
    (out / "cifar10").mkdir(parents=True, exist_ok=True)
    link = out / "cifar10" / "cifar-10-batches-py"
    if not link.exists():
        link.symlink_to((batches_parent / "cifar-10-batches-py").resolve())
    return out


def plan(args, data: Path) -> tuple:
    """(config, training runs, evaluation runs): the CIFAR-10 configs' own runs (so their names
    and folders), two seeds of standard training and one of each subspace."""
    from experiment_configs.cifar10.ensembles import eval_ensembles, train_ensemble_members
    from experiment_configs.cifar10.one_dimensional_subspaces import eval_curves, eval_lines, train_curves, train_lines

    cfg = sweep.make_config(SETUP, data=str(data), log_dir=str(args.out), epochs=args.epochs, device=args.device, seeds=(0, 1))
    cfg = cfg.with_(base=replace(cfg.base, data_on_device=True, workers=0, compile=args.compile or args.compile_mode != "default",
                                 compile_mode=args.compile_mode, amp=args.amp,
                                 test_freq=max(1, args.epochs // 4)))
    if args.smoke:  # the ends and the midpoint: the row's points, and the figure's plumbing
        cfg = cfg.with_(alphas=(0.0, 0.5, 1.0))
    one = cfg.with_(seeds=(0,))
    subspaces = [(train_lines, eval_lines)] + ([(train_curves, eval_curves)] if args.curve else [])
    training = list(train_ensemble_members.runs(cfg)) + [r for t, _ in subspaces for r in t.runs(one)]
    evals = list(eval_ensembles.runs(cfg)) + [r for _, e in subspaces for r in e.runs(one)]
    return cfg, [r.settings for r in training], evals


def _train(settings) -> float:
    from subspaces import main

    return main.main(settings).curr_acc1


def run_all(args, cfg, training: list, evals: list) -> dict:
    """Train concurrently (``--parallel`` processes), then evaluate; returns wall times."""
    times = {}
    t0 = time.perf_counter()
    todo = [sweep.plan(sweep.Run(s), cfg) for s in training]
    with ProcessPoolExecutor(max_workers=args.parallel, mp_context=get_context("spawn")) as pool:
        list(pool.map(_train, [p.settings for p in todo if p.action != "skip"]))
    times["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sweep.execute(evals, cfg)
    times["evaluate"] = time.perf_counter() - t0
    return times


def headline(out: Path) -> dict:
    """The row to compare with the paper, from the results files."""
    from subspaces.utils.results import read_results

    members = read_results(out / sweep.MEMBERS / "results.csv")
    ens = read_results(out / sweep.ENSEMBLES / "results.csv")
    grid = read_results(out / sweep.EVAL_ONE_DIM / "results.csv")
    row = {"standard_acc": np.mean([float(r["curr_acc1"]) for r in members]),
           "standard_ece": np.mean([float(r["ece"]) for r in members]),
           "standard_ensemble_acc": float(ens[-1]["curr_acc1"]), "standard_ensemble_ece": float(ens[-1]["ece"])}
    for run_id in ("lines", "curves"):
        rows = {float(r["alpha0"]): r for r in grid if r["Name"].startswith(f"id={run_id}+")}
        if rows:
            row.update({f"{run_id}_midpoint_acc": float(rows[0.5]["curr_acc1"]), f"{run_id}_midpoint_ece": float(rows[0.5]["ece"]),
                        f"{run_id}_endpoint_acc": float(rows[0.0]["curr_acc1"]), f"{run_id}_endpoint_ece": float(rows[0.0]["ece"]),
                        f"{run_id}_endpoint_ensemble_acc": float(rows[0.0]["ensemble_acc"]),
                        f"{run_id}_endpoint_ensemble_ece": float(rows[0.0]["ensemble_ece"])})
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="CIFAR-10: python batches or a JPEG folder (default with --smoke: made here)")
    p.add_argument("--out", type=Path, default=ROOT / "learning-subspaces-results" / "paper-cifar10")
    p.add_argument("--device", default="cuda")
    p.add_argument("--epochs", type=int, default=160)
    p.add_argument("--parallel", type=int, default=4, help="training runs sharing the device at once")
    p.add_argument("--no-curve", dest="curve", action="store_false", help="train standard x2 and a line only")
    p.add_argument("--compile", action="store_true", help="torch.compile the models")
    p.add_argument("--compile-mode", default="default", choices=("default", "reduce-overhead", "max-autotune"),
                   help="torch.compile's mode (reduce-overhead: CUDA graphs; implies --compile)")
    p.add_argument("--amp", default="none", choices=("none", "bf16"), help="bf16 autocast (default fp32, the paper's numerics)")
    p.add_argument("--smoke", action="store_true", help="1 epoch on a small CIFAR-format set made here (CPU check)")
    args = p.parse_args(argv)
    if args.smoke:
        args.epochs = min(args.epochs, 1)
        args.out = args.out.with_name(args.out.name + "-smoke")
    args.out.mkdir(parents=True, exist_ok=True)
    data = resolve_data(args)
    cfg, training, evals = plan(args, data)
    t0 = time.perf_counter()
    times = run_all(args, cfg, training, evals)
    from subspaces.analysis.figures import figure4

    fig = figure4(args.out, args.out / "figures", "cifar10", partial=args.smoke)
    row = headline(args.out)
    print(f"# {args.epochs} epochs on {args.device}: train {times['train']:.0f}s, evaluate {times['evaluate']:.0f}s, "
          f"total {time.perf_counter() - t0:.0f}s; figure {fig.paths[0]}")
    for k, v in row.items():
        print(f"{k},{v:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
