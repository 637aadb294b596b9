"""What the evaluation trainers share: points evaluated once, batches decoded once, metric rows.

Evaluating a point of a subspace means setting the point, recomputing the BatchNorm statistics
there over the training data when asked (paper, Section 3: statistics collected at random points
fit no single point), and collecting the test-set logits and penultimate features. An
:class:`Evaluator` does this once per distinct point and keeps the outputs until released, and
replays the same decoded BatchNorm batches and test batches for every point, so that all points
(and every run that evaluates the same point) see the same augmented batches.
"""
from __future__ import annotations

import statistics
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn

from subspaces.modes import set_point
from subspaces.utils.errors import UserError
from subspaces.utils.evaluation import CachedBatches, Predictions, loss_and_error, predict
from subspaces.utils.metrics import classification_metrics, ensemble_metrics
from subspaces.utils.modules import unwrap

from .base import RunContext, Trainer

# The epoch whose shuffle and augmentation the BatchNorm batches of an evaluation use: fixed, so
# that a single-pair run and a grid run (or two runs of one checkpoint) draw the same batches.
EVAL_BN_EPOCH = 0


def bn_batches_seed(settings, trainer_cls: type, checkpoints: Sequence[dict]) -> int:
    """The ``--seed`` whose training batches (epoch :data:`EVAL_BN_EPOCH`) an evaluation recomputes
    BatchNorm statistics over: the checkpoint's own training seed when an evaluation trainer
    evaluates one checkpoint, so that its numbers do not depend on the evaluation's ``--seed``
    (which keeps its own draws: SWAG samples, simplex points) and an exported point
    (``subspaces.modes.export --update-bn``, which uses the checkpoint's seed) scores exactly as
    the subspace there; else (several checkpoints, ``--init-endpoints``, training, a checkpoint
    without settings) the run's ``--seed``."""
    if trainer_cls.trains or len(checkpoints) != 1 or settings.init_endpoints:
        return settings.seed
    saved = (checkpoints[0].get("settings") or {}).get("seed")
    return settings.seed if saved is None else int(saved)


BNUpdate = Callable[[object, nn.Module, torch.device], None]


class MembersTrainer(Trainer):
    """An evaluation of two or more trained standard networks, one per ``--resume`` state dict."""

    kinds = ("standard",)
    trains = False
    models_from_checkpoints = True  # one network per state dict in --resume

    def check(self, models: list) -> None:
        super().check(models)
        if len(models) < 2:
            raise UserError(f"{self.name} needs at least two networks, got {len(models)}; pass --resume a.pt,b.pt[,...]")


def point_key(point: Optional[Sequence[float]]) -> Optional[tuple]:
    """A hashable key of a point, rounded so that ``1 - 0.05`` and ``0.95`` are one point."""
    return None if point is None else tuple(round(float(p), 12) for p in point)


class EvalBatches:
    """The BatchNorm batches (training set, augmented as in training, epoch :data:`EVAL_BN_EPOCH`)
    and the test batches of a run, each decoded once and replayed (see :class:`CachedBatches`)."""

    def __init__(self, data, cache_bn: bool = True):
        self.bn = CachedBatches(data.bn_loader, reset=lambda: data.set_epoch(EVAL_BN_EPOCH), max_bytes=None if cache_bn else 0)
        self.test = CachedBatches(data.val_loader)


class Evaluator:
    """Outputs of one model at points of its subspace, each distinct point computed once.

    ``bn_update(loader, model, device)`` recomputes the BatchNorm statistics (passed in so tests
    can count calls). A point evaluated without a recompute uses the statistics the model had
    when the evaluator was made (the checkpoint's), whatever points were recomputed before.
    Penultimate features are collected when the model has ``forward_with_features`` (the
    project's models do; a model made a subspace by :func:`subspaces.modes.subspace` may not).
    """

    def __init__(self, settings, ctx: RunContext, model: nn.Module, bn_update: BNUpdate, batches: Optional[EvalBatches] = None):
        self.settings, self.ctx, self.model = settings, ctx, model
        self.net = unwrap(model)
        self.batches = batches or EvalBatches(ctx.data)
        self.bn_update = bn_update
        self.with_features = hasattr(self.net, "forward_with_features")
        self._saved_buffers = {k: v.detach().clone() for k, v in self.net.named_buffers()}
        self._cache: dict = {}
        self._current: Optional[tuple] = None  # the (point, recompute) the model is set up for

    def outputs(self, point: Optional[Sequence[float]], recompute_bn: bool, split: str = "test") -> Predictions:
        """Logits and features at ``point`` (None: the model as it is, e.g. a standard net) over
        the test set, or with ``split="train"`` over the BatchNorm batches (the training set,
        augmented as in training): what a training loss at the point is computed from."""
        state = (point_key(point), bool(recompute_bn))
        if (state, split) not in self._cache:
            s = self.settings
            self._prepare(state)
            loader = self.batches.test if split == "test" else self.batches.bn
            self._cache[(state, split)] = predict(self.model, loader, self.ctx.device, with_features=self.with_features and split == "test",
                                                  amp=s.amp, channels_last=s.channels_last)
        return self._cache[(state, split)]

    def scores(self, point: Optional[Sequence[float]], recompute_bn: bool, split: str = "test") -> tuple:
        """``(mean cross-entropy, error rate)`` at ``point`` over the test set or, with
        ``split="train"``, over the BatchNorm batches; without keeping the logits (a training set's
        may not fit in memory). Kept until :meth:`release`."""
        state = (point_key(point), bool(recompute_bn))
        key = (state, split, "scores")
        if key not in self._cache:
            s = self.settings
            self._prepare(state)
            loader = self.batches.test if split == "test" else self.batches.bn
            self._cache[key] = loss_and_error(self.model, loader, self.ctx.device, amp=s.amp, channels_last=s.channels_last)
        return self._cache[key]

    def _prepare(self, state: tuple) -> None:
        """Set the point and its BatchNorm statistics, unless the model is already set up so."""
        if state == self._current:
            return
        point, recompute_bn = state
        if point is not None:
            set_point(self.net, point)
        if recompute_bn:
            self.bn_update(self.batches.bn, self.model, self.ctx.device)
        else:
            self._restore_buffers()
        self._current = state

    def release(self, point: Optional[Sequence[float]], recompute_bn: bool) -> None:
        """Forget the outputs at ``point`` (no pair needs them any more)."""
        state = (point_key(point), bool(recompute_bn))
        for split in ("test", "train"):
            self._cache.pop((state, split), None)
            self._cache.pop((state, split, "scores"), None)

    @torch.no_grad()
    def _restore_buffers(self) -> None:
        for k, v in self.net.named_buffers():
            v.copy_(self._saved_buffers[k])


def point_metrics(p: Predictions, prefix: str = "") -> dict:
    """Accuracy, NLL, ECE (20 bins) and Brier score of one point's outputs, names prefixed."""
    return classification_metrics(p.logits, p.targets, prefix)


def members_metrics(preds: Sequence[Predictions], mode: str, prefix: str = "ensemble_") -> dict:
    """Accuracy, NLL, ECE and Brier of the ensemble of ``preds`` (summed logits or mean probabilities)."""
    return ensemble_metrics([p.logits for p in preds], preds[0].targets, mode, prefix)


def each_member_metrics(preds: Sequence[Predictions]) -> dict:
    """``model_{i}_acc/nll/ece/brier`` of every member (the original's names) and the mean and
    spread of their accuracies (``avg_model_acc``, ``avg_model_std``)."""
    metrics, accs = {}, []
    for i, p in enumerate(preds):
        m = point_metrics(p, f"model_{i}_")
        accs.append(m[f"model_{i}_acc"])
        metrics.update(m)
    metrics["avg_model_acc"] = statistics.fmean(accs)
    metrics["avg_model_std"] = statistics.pstdev(accs)
    return metrics
