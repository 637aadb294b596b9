"""``--trainswa`` / ``--trainer swa``: the stochastic weight averaging baseline (Izmailov et al., 2018).

The paper compares subspace midpoints with SWA: train one standard network; from ``--swa-start``
(a fraction of ``--epochs``) on, average its weights after every epoch while the learning rate
anneals to ``--swa-lr``; evaluate the average after recomputing its BatchNorm statistics over the
training data. Built on ``torch.optim.swa_utils``: :class:`AveragedModel` keeps the running
average, :class:`SWALR` gives the learning rate of the averaging phase, ``update_bn`` the
statistics (through :func:`utils.bn.update_bn`).

The average lives in ``models[1]`` (main.py freezes ``models[1:]`` with ``--trainswa``), so it is
saved in the checkpoint's ``state_dicts`` like any model and loads with ``weights_only=True``.
How many epochs it averages follows from the epoch (one update per epoch from the start epoch),
and the learning rate is a pure function of the epoch, so a resumed run continues exactly.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn
from torch.optim.swa_utils import SWALR, AveragedModel

from utils.bn import update_bn
from utils.errors import UserError
from utils.schedulers import assign_learning_rate, get_schedule

from .base import RunContext, TestResult, train_epoch
from .default import DefaultTrainer, test_metrics
from .evaluate import EvalBatches

MAX_ANNEAL_EPOCHS = 10  # SWALR's default annealing length


def swa_start_epoch(settings) -> int:
    """The first epoch after which the weights are averaged: ``int(swa_start * epochs)``, at most the last."""
    return max(0, min(int(settings.swa_start * settings.epochs), settings.epochs - 1))


def anneal_epochs(settings) -> int:
    """SWALR's annealing length: a quarter of the averaging phase, at most 10 epochs."""
    return min(MAX_ANNEAL_EPOCHS, (settings.epochs - swa_start_epoch(settings)) // 4)


def swa_learning_rate(settings, epoch: int) -> float:
    """The learning rate of an averaging epoch: what :class:`SWALR` gives after ``epoch - start`` steps,
    cosine-annealing from the ``--lr-policy`` rate at the start epoch to ``--swa-lr``.

    Computed by stepping a fresh SWALR on a throwaway optimiser, so it depends on the epoch alone.
    """
    start = swa_start_epoch(settings)
    lr0 = get_schedule(settings.lr_policy, settings)(start)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(()))], lr=lr0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": no training here
        sched = SWALR(opt, swa_lr=settings.swa_lr, anneal_epochs=anneal_epochs(settings), anneal_strategy="cos")
        for _ in range(max(0, epoch - start)):
            sched.step()
    return float(opt.param_groups[0]["lr"])


class SWATrainer(DefaultTrainer):
    """Standard training of ``models[0]``; ``models[1]`` is its stochastic weight average."""

    name = "swa"
    kinds = ("standard",)

    def check(self, models: list) -> None:
        super().check(models)
        if len(models) < 2:  # main.py gives the swa trainer two models; --swa-start/--swa-lr are checked there
            raise UserError("the SWA baseline keeps its average in a second model; pass --num-models 2 (or --trainswa)")
        s = self.settings
        if s.pretrained and s.epochs == 0:
            # With --pretrained the epoch count restarts, so nothing tells whether models[1] is an average.
            raise UserError("--pretrained --epochs 0 cannot tell how far an SWA checkpoint averaged; evaluate it with --resume CKPT --epochs <its epochs> (no --pretrained)")

    def init(self, ctx: RunContext) -> None:
        # Average into models[1] itself, so that checkpoints hold it (AveragedModel would average
        # into a deep copy of the model it is given: give it a placeholder and swap models[1] in).
        self.swa = AveragedModel(nn.Identity())
        self.swa.module = getattr(ctx.models[1], "module", ctx.models[1])
        self._synced = False

    def _sync(self, completed_epochs: int) -> None:
        """On the first call, set how many epochs the average holds (0 on a fresh run)."""
        if not self._synced:
            self.swa.n_averaged.fill_(max(0, completed_epochs - swa_start_epoch(self.settings)))
            self._synced = True

    def train(self, ctx: RunContext, epoch: int) -> float:
        s = self.settings
        self._sync(epoch)
        averaging = epoch >= swa_start_epoch(s)
        if averaging:
            lr = swa_learning_rate(s, epoch)
            for opt in ctx.optimizers:
                if opt is not None:
                    assign_learning_rate(opt, lr)
            ctx.log_scalar("train/swa_lr", lr, epoch)
        loss = train_epoch(ctx, epoch, self.loss, None)
        if averaging:
            self.swa.update_parameters(getattr(ctx.models[0], "module", ctx.models[0]))
        return loss

    def test(self, ctx: RunContext, epoch: int) -> TestResult:
        # From main.py's evaluation-only path, ``epoch`` is the number of completed epochs.
        self._sync(epoch)
        acc0, m0 = test_metrics(ctx, ctx.models[0], epoch, prefix="test_model")
        n = int(self.swa.n_averaged)
        metrics = {"model_acc": acc0, **{f"model_{k}": v for k, v in m0.items() if k != "test_loss"}, "swa_n": n, "swa_start_epoch": swa_start_epoch(self.settings)}
        if n == 0:
            return TestResult(acc0, {"swa_acc": None, **m0, **metrics})
        # The average's BatchNorm statistics, recomputed over the training data (fixed batches).
        update_bn(EvalBatches(ctx.data, cache_bn=False).bn, ctx.models[1], ctx.device)
        acc, m = test_metrics(ctx, ctx.models[1], epoch, prefix="test")
        return TestResult(acc, {"swa_acc": acc, **m, **metrics})
