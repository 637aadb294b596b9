"""Train standard and lines for 2 epochs each, fp32 and fast (bf16, channels-last, compile): images/s.

The training half of ``bench/gpu_check.sh``: every run is ``main.py`` itself (the settings a
command line would give), on an image folder with CIFAR-10's layout (``train/<class>/*``,
``test/<class>/*``) held on the device and augmented there (``--data-on-device``). The data are
decoded once for all runs. Epoch times come from the training loop alone (the test pass after
each epoch is not counted); images/s is that of the second epoch, whose steps are warm (the
first one includes torch.compile's compilation and the first allocations).

    python bench/gpu_check.py --device cuda --data datasets/cifar10-jpg
    python bench/gpu_check.py --device cpu --smoke --data /tmp/fake-folder
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time

import common  # first: it puts the repository on sys.path
import torch

import subspaces.data.folders
import subspaces.data.image_folder
from subspaces import main as main_mod
import subspaces.trainers.base
from subspaces.args import Settings

CONFIGS = {
    "fp32": {},
    "bf16+channels-last+compile": {"amp": "bf16", "channels_last": True, "compile": True},
}
KINDS = {
    "standard": {"conv_type": "StandardConv", "bn_type": "StandardBN", "trainer": "default"},
    "lines": {"conv_type": "LinesConv", "bn_type": "LinesBN", "trainer": "train_one_dim_subspaces", "beta": 1.0},
}


def decode_once() -> None:
    """Decode an image folder once per process, however many runs read it."""
    cached = functools.lru_cache(maxsize=4)(lambda paths: subspaces.data.folders.decode_all(list(paths)))
    subspaces.data.image_folder.decode_all = lambda paths, *a, **k: cached(tuple(paths))


def time_epochs() -> list:
    """Wall time of every train_epoch call (the device synchronised at both ends)."""
    times: list = []
    original = subspaces.trainers.base.Trainer.train_epoch

    def timed(self, ctx, epoch, state):
        common.synchronize(ctx.device)
        t0 = time.perf_counter()
        loss = original(self, ctx, epoch, state)  # ends with .item(): the device has finished
        times.append(time.perf_counter() - t0)
        return loss

    subspaces.trainers.base.Trainer.train_epoch = timed
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--data", required=True, help="image folder with train/<class>/* and test/<class>/*")
    p.add_argument("--model-name", default="cifar_resnet_20")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    p.add_argument("--compile-backend", default=None, help="torch.compile backend (default inductor; aot_eager for CPU smoke runs)")
    p.add_argument("--max-train", type=int, default=None, help="use every k-th training image, this many")
    p.add_argument("--max-test", type=int, default=None, help="use every k-th test image, this many")
    p.add_argument("--smoke", action="store_true", help="a tiny run that checks the plumbing (no meaningful figures)")
    args = p.parse_args()
    device = torch.device(args.device)
    if args.compile_backend:
        torch.compile = functools.partial(torch.compile, backend=args.compile_backend)
    decode_once()
    epoch_times = time_epochs()
    common.header(f"{args.model_name}, {args.epochs} epochs per run, batch {args.batch_size}, training images "
                  f"on the device (--data-on-device){' [smoke: plumbing only]' if args.smoke else ''}", device)
    rows, ratios = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.max_train or args.max_test:
            big = 1 << 62
            common.folder_subset(args.data, args.max_train or big, args.max_test or big, os.path.join(tmp, "subset"))
            args.data = os.path.join(tmp, "subset")
        train_dir = os.path.join(args.data, "train")
        n_train = len(subspaces.data.folders.scan(train_dir, {c: i for i, c in enumerate(subspaces.data.folders.find_classes(train_dir))}))
        print(f"# data: {args.data}: {n_train} training images")
        for config in args.configs.split(","):
            ips = {}
            for kind, flags in KINDS.items():
                s = Settings(set="ImageFolder", data=args.data, model_name=args.model_name, device=args.device,
                             data_on_device=True, epochs=args.epochs, batch_size=args.batch_size,
                             log_dir=os.path.join(tmp, "logs"), name=f"id={kind}+config={config}", workers=4,
                             **flags, **CONFIGS[config])
                del epoch_times[:]
                t0 = time.perf_counter()
                summary = main_mod.main(s)
                total = time.perf_counter() - t0
                warm = epoch_times[-1]
                ips[kind] = n_train / warm
                rows.append([config, kind, " ".join(f"{t:.2f}" for t in epoch_times), f"{ips[kind]:.0f}",
                             f"{total:.1f}", f"{summary.curr_acc1:.4f}"])
                print(f"#   {config} {kind}: epochs {' '.join(f'{t:.1f}s' for t in epoch_times)}, "
                      f"{ips[kind]:.0f} images/s, acc {summary.curr_acc1:.4f}", file=sys.stderr, flush=True)
            ratios[config] = ips["standard"] / ips["lines"]
    print()
    print(common.table(rows, ["config", "kind", "train s per epoch", "images/s (last epoch)", "run s (all)", "test acc"]))
    print()
    for config, r in ratios.items():
        print(f"ratio ({config}): lines/standard time per epoch {r:.3f}")
    print(f"ratio: {ratios[args.configs.split(',')[0]]:.3f}")


if __name__ == "__main__":
    main()
