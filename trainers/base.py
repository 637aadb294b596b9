"""The uniform trainer interface: ``init``, ``train`` (one epoch), ``test`` -> :class:`TestResult`.

A trainer holds no global state: everything a run has (settings, models, optimisers, data,
loss, device, TensorBoard writer) comes in a :class:`RunContext`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn as nn
from tqdm import tqdm

from modes import subspace_coefficients
from utils.errors import UserError
from utils.bn import uncompiled  # noqa: F401  (re-exported)
from utils.evaluation import autocast, to_device


@dataclass
class ResultRow:
    """One results.csv row a test produced: accuracy, metrics, and what tells it apart."""

    acc1: float
    metrics: dict
    name_suffix: str = ""  # appended to the run name, e.g. "+alpha0=0.25+alpha1=0.75"
    columns: dict = field(default_factory=dict)  # settings this row overrides (alpha0, alpha1)


@dataclass
class TestResult:
    """What ``Trainer.test`` returns: the run's accuracy and metrics; ``rows`` when it yields
    several results rows (a grid evaluation), otherwise one row is made from acc1 and metrics."""

    acc1: float
    metrics: dict
    rows: Optional[list] = None

    def result_rows(self) -> list:
        """The rows to write to results.csv."""
        return self.rows if self.rows is not None else [ResultRow(self.acc1, self.metrics)]


@dataclass
class RunContext:
    """Everything one run has, handed to the trainer explicitly."""

    settings: object
    models: list
    optimizers: list
    data: object
    criterion: nn.Module
    device: torch.device
    writer: object = None  # a SummaryWriter, or None when not saving
    save_checkpoint: Callable[[int, int], None] = lambda epoch, it: None
    scaler: object = None  # torch.amp.GradScaler for --amp fp16

    def log_scalar(self, tag: str, value: float, step: int) -> None:
        """Write a TensorBoard scalar when the run is saved."""
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)


class Trainer:
    """Base trainer. Subclasses set ``kinds`` (the subspace kinds they accept: "standard",
    "line", "curve", "simplex") and implement ``loss`` (training) and/or ``test``."""

    name = "base"
    kinds: tuple = ("standard",)
    trains = True  # False: an evaluation-only trainer (no epochs, no checkpoints)

    def __init__(self, settings):
        self.settings = settings

    # -- checks before anything is written ----------------------------------------------------
    def check(self, models: list) -> None:
        """Raise UserError when the models do not fit this trainer (e.g. a line for train_simplexes)."""
        coeffs = subspace_coefficients(getattr(models[0], "module", models[0]))
        kind = coeffs.kind if coeffs is not None else "standard"
        if kind not in self.kinds:
            raise UserError(
                f"trainer {self.name} works on {' / '.join(self.kinds)} models, but --conv-type "
                f"{self.settings.conv_type} makes a {kind} model; {self._fix_hint(kind)}"
            )

    def _fix_hint(self, kind: str) -> str:
        return {
            "standard": "use --trainer default (or ensemble/swa) for StandardConv models",
            "line": "use --trainer train_one_dim_subspaces or eval_one_dim_subspaces for lines",
            "curve": "use --trainer train_one_dim_subspaces or eval_one_dim_subspaces for curves",
            "simplex": "use --trainer train_simplexes or eval_simplexes for SimplexConv<n> models",
        }[kind]

    # -- the original's three roles ------------------------------------------------------------
    def init(self, ctx: RunContext) -> None:
        """Called once before the first epoch."""

    def train(self, ctx: RunContext, epoch: int) -> float:
        """Train one epoch; return the mean training loss."""
        return train_epoch(ctx, epoch, self.loss, self.begin_epoch(ctx, epoch))

    def test(self, ctx: RunContext, epoch: int) -> TestResult:
        """Evaluate; return accuracy and metrics."""
        raise NotImplementedError

    # -- the training step ---------------------------------------------------------------------
    def begin_epoch(self, ctx: RunContext, epoch: int) -> object:
        """Per-epoch state for ``loss`` (e.g. the point generator); None by default."""
        return None

    def loss(self, ctx: RunContext, state: object, x: torch.Tensor, y: torch.Tensor) -> tuple:
        """Loss and logits of one batch (the forward pass of the training step)."""
        out = ctx.models[0](x)
        return ctx.criterion(out, y), out


def train_step(ctx: RunContext, loss_fn: Callable, state: object, x: torch.Tensor, y: torch.Tensor) -> tuple:
    """One training step of the first model: ``loss_fn`` forward (under ``--amp`` autocast),
    backward, optimizer step. Returns ``(loss, logits)``, still on the device: nothing here
    waits for the device."""
    optimizer = ctx.optimizers[0]
    optimizer.zero_grad(set_to_none=True)
    with autocast(ctx.device, ctx.settings.amp):
        loss, out = loss_fn(ctx, state, x, y)
    if ctx.scaler is not None:
        ctx.scaler.scale(loss).backward()
        ctx.scaler.step(optimizer)
        ctx.scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss, out


def train_epoch(ctx: RunContext, epoch: int, loss_fn: Callable, state: object) -> float:
    """One epoch of the first model: :func:`train_step` on every batch.

    No host-device sync per step: the running loss and accuracy stay on the device and are read
    every ``--log-interval`` batches (for the progress bar and TensorBoard) and at the end.
    """
    s = ctx.settings
    model = ctx.models[0]
    model.train()
    loader = ctx.data.train_loader
    n_batches = len(loader)
    total_loss = torch.zeros((), device=ctx.device)
    correct = torch.zeros((), device=ctx.device, dtype=torch.long)
    seen = 0
    bar = tqdm(loader, total=n_batches, desc=f"epoch {epoch + 1}/{s.epochs}", leave=False, dynamic_ncols=True, disable=None)
    for batch_idx, (x, y) in enumerate(bar):
        x, y = to_device(x, ctx.device, s.channels_last), y.to(ctx.device, non_blocking=True)
        loss, out = train_step(ctx, loss_fn, state, x, y)
        total_loss += loss.detach()
        correct += (out.detach().argmax(dim=1) == y).sum()
        seen += len(y)
        it = n_batches * epoch + batch_idx
        if batch_idx % s.log_interval == 0:
            value = loss.item()
            bar.set_postfix(loss=f"{value:.4f}", acc=f"{correct.item() / seen:.3f}")
            ctx.log_scalar("train/loss", value, it)
        if s.save and s.save_iters and it in s.save_iters:
            ctx.save_checkpoint(epoch, it)
    bar.close()
    return (total_loss / max(1, n_batches)).item()
