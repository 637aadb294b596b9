"""What the progress bars cost: a BatchNorm recompute with no bar, with the bar off, with it drawn.

``subspaces.utils.bn.update_bn`` wraps its batches in a tqdm bar (drawn on a terminal only, on
rank 0). This times one recompute of a line of cifar_resnet_20 (LinesConv/LinesBN) at its
midpoint over ``--batches`` batches of ``--batch-size`` synthetic 32x32 images, three ways,
interleaved in one process: the batches passed straight to ``torch.optim.swa_utils.update_bn``
(what update_bn did before it had a bar), ``update_bn`` with stderr not a terminal (the bar off:
pipes, log files, a sweep's ``--quiet``), and ``update_bn`` with a stderr that says it is a
terminal (the bar drawn, into memory). Small batches make the per-batch cost of the bar as
visible as it can be. Then the bare cost per item of iterating through each.

    python bench/progress_overhead.py
"""
from __future__ import annotations

import argparse
import contextlib
import io
import time

import common  # first: it puts the repository on sys.path
import torch
from torch.optim.swa_utils import update_bn as swa_update_bn

from subspaces import models
from subspaces.modes import set_point
from subspaces.utils.bn import update_bn
from subspaces.utils.progress import progress_bar


class Terminal(io.StringIO):
    """A stderr that says it is a terminal: tqdm draws the bar into it."""

    def isatty(self) -> bool:
        return True


def per_item_seconds(make, n: int) -> float:
    """Seconds per item of a loop over ``make(range(n))`` that does nothing else."""
    t0 = time.perf_counter()
    for _ in make(range(n)):
        pass
    return (time.perf_counter() - t0) / n


def main() -> None:
    """Time the three recomputes side by side, then the bare loops; print the tables."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--reps", type=int, default=15, help="interleaved repetitions (>= 5); figures are medians")
    p.add_argument("--items", type=int, default=200_000, help="items of the bare loops")
    args = p.parse_args()
    device = torch.device("cpu")
    common.header(f"One BatchNorm recompute, {args.batches} batches of {args.batch_size}: no bar vs the bar off vs drawn", device)
    torch.manual_seed(0)
    net = models.get_model("CIFARResNet", models.Builder("LinesConv", "LinesBN"), output_size=10, model_name="cifar_resnet_20")
    set_point(net, (0.5,))
    batches = [(torch.randn(args.batch_size, 3, 32, 32), torch.zeros(args.batch_size, dtype=torch.long)) for _ in range(args.batches)]

    def with_stderr(stream, fn):
        def run():
            with contextlib.redirect_stderr(stream):
                fn()
        return run

    times = common.interleaved({
        "no bar (swa_utils.update_bn on the batches)": lambda: swa_update_bn(batches, net),
        "bar off (stderr not a terminal)": with_stderr(io.StringIO(), lambda: update_bn(batches, net)),
        "bar drawn (stderr a terminal)": with_stderr(Terminal(), lambda: update_bn(batches, net)),
    }, args.reps, device)
    base = times["no bar (swa_utils.update_bn on the batches)"]
    print(common.table([[k, f"{common.median(v) * 1e3:.1f}", f"{min(v) * 1e3:.1f}", f"{common.paired_ratio(v, base):.3f}"]
                        for k, v in times.items()], ["variant", "ms per recompute (median)", "ms (min)", "paired ratio to no bar"]))

    n = args.items
    loops = {
        "plain loop": lambda it: it,
        "bar off": lambda it: progress_bar(it, "x", total=n),
    }
    with contextlib.redirect_stderr(Terminal()):
        drawn = per_item_seconds(lambda it: progress_bar(it, "x", total=n), n)
    with contextlib.redirect_stderr(io.StringIO()):
        rows = [[k, f"{per_item_seconds(f, n) * 1e6:.3f}"] for k, f in loops.items()]
    print()
    print(common.table(rows + [["bar drawn", f"{drawn * 1e6:.3f}"]], [f"loop over {n:,} items", "us per item"]))


if __name__ == "__main__":
    main()
