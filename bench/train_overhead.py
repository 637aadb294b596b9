"""Time per training step of a line, a curve and a simplex of 3 against standard training.

"A line of networks for the cost of training one": the same model (cifar_resnet_20), the same
batch (128 synthetic 32x32 images), the project's real training step -- the trainer's loss
(Algorithm 1: draw a point, forward; plus the regulariser of Eq. 3 with beta = 1 for the
subspaces, as in the paper's configs), backward, SGD step -- measured side by side, the kinds
interleaved in every repetition. The last line is ``ratio: <lines / standard>``.

    python bench/train_overhead.py                       # CPU (the target: ratio <= 1.05)
    python bench/train_overhead.py --device cuda         # one GPU
    python bench/train_overhead.py --device cuda --amp bf16 --channels-last --compile
"""
from __future__ import annotations

import argparse

import common  # first: it puts the repository on sys.path
import torch
import torch.nn as nn

from subspaces import models
from subspaces.args import Settings
from subspaces.trainers import RunContext, get_trainer
from subspaces.utils.memory import keep_freed_memory
from subspaces.utils.optim import get_optimizer

# kind -> (conv type, BN type, trainer)
KINDS = {
    "standard": ("StandardConv", "StandardBN", "default"),
    "lines": ("LinesConv", "LinesBN", "train_one_dim_subspaces"),
    "curves": ("CurvesConv", "CurvesBN", "train_one_dim_subspaces"),
    "simplex3": ("SimplexConv3", "SimplexBN3", "train_simplexes"),
}


class Run:
    """One kind's model, optimizer and trainer, and a step of it on a fixed batch."""

    def __init__(self, kind: str, args, device: torch.device, x: torch.Tensor, y: torch.Tensor):
        conv, bn, trainer = KINDS[kind]
        self.settings = Settings(
            conv_type=conv, bn_type=bn, trainer=trainer, beta=-1.0 if kind == "standard" else args.beta,
            layerwise=args.layerwise, batch_size=args.batch_size, device=str(device), amp=args.amp,
            channels_last=args.channels_last, compile=args.compile, seed=0,
        )
        torch.manual_seed(0)
        net = models.get_model("CIFARResNet", models.Builder(conv, bn), output_size=10, model_name=args.model_name).to(device)
        if args.channels_last:
            net.to(memory_format=torch.channels_last)
        model = torch.compile(net) if args.compile else net
        self.ctx = RunContext([model], [get_optimizer(self.settings, net)], None, nn.CrossEntropyLoss(), device)
        self.trainer = get_trainer(trainer)(self.settings)
        self.state = self.trainer.begin_epoch(self.ctx, 0)
        model.train()
        self.x, self.y = x, y

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.trainer.train_step(self.ctx, self.state, self.x, self.y)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--kinds", default="standard,lines,curves,simplex3", help=f"comma-separated, of {', '.join(KINDS)}")
    p.add_argument("--model-name", default="cifar_resnet_20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--reps", type=int, default=7, help="interleaved repetitions (>= 5); figures are medians")
    p.add_argument("--steps", type=int, default=3, help="training steps per kind per repetition")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per kind first")
    p.add_argument("--beta", type=float, default=1.0, help="Eq. 3 weight for the subspaces (the paper's 1)")
    p.add_argument("--layerwise", action="store_true")
    p.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--glibc-default-malloc", action="store_true",
                   help="skip keep_freed_memory(), which main() calls on CPU (shows its effect)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cpu" and not args.glibc_default_malloc:
        keep_freed_memory()  # as main() does on the CPU
    kinds = args.kinds.split(",")
    if "standard" not in kinds:
        kinds.insert(0, "standard")

    common.header(f"Training step time: {', '.join(kinds)} ({args.model_name}, batch {args.batch_size}, "
                  f"{args.amp if args.amp != 'none' else 'fp32'}{', channels-last' if args.channels_last else ''}"
                  f"{', compiled' if args.compile else ''}{', glibc default malloc' if args.glibc_default_malloc else ''}"
                  f"; subspaces with beta={args.beta})", device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, 32, 32, generator=gen).to(device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch_size,), generator=gen).to(device)
    runs = {k: Run(k, args, device, x, y) for k in kinds}
    for r in runs.values():
        r.steps(args.warmup)
    common.synchronize(device)
    times = common.interleaved({k: (lambda r=r: r.steps(args.steps)) for k, r in runs.items()}, args.reps, device)

    per_step = {k: [t / args.steps for t in ts] for k, ts in times.items()}
    std = common.median(per_step["standard"])
    rows = []
    for k in kinds:
        m = common.median(per_step[k])
        rows.append([k, f"{m * 1e3:.1f}", f"{min(per_step[k]) * 1e3:.1f}", f"{args.batch_size / m:.0f}",
                     f"{m / std:.3f}", f"{common.paired_ratio(per_step[k], per_step['standard']):.3f}"])
    print()
    print(common.table(rows, ["kind", "ms/step (median)", "ms/step (min)", "images/s", "/ standard (medians)", "/ standard (paired median)"]))
    print(f"\n{args.reps} interleaved repetitions of {args.steps} steps each, after {args.warmup} warm-up steps per kind.")
    if "lines" in per_step:
        print(f"ratio: {common.median(per_step['lines']) / std:.3f}")
    else:
        print(f"ratio: {common.median(per_step[kinds[-1]]) / std:.3f}")


if __name__ == "__main__":
    main()
