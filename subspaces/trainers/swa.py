"""``--trainswa`` / ``--trainer swa``: the stochastic weight averaging baseline (Izmailov et al., 2018).

The paper compares subspace midpoints with SWA: train one standard network; from ``--swa-start``
(a fraction of ``--epochs``) on, average its weights after every epoch while the learning rate
anneals to ``--swa-lr``; evaluate the average after recomputing its BatchNorm statistics over the
training data. Built on ``torch.optim.swa_utils``: :class:`AveragedModel` keeps the running
average, :class:`SWALR` gives the learning rate of the averaging phase, ``update_bn`` the
statistics (through :func:`subspaces.utils.bn.update_bn`).

The average lives in ``models[1]`` (frozen, as ``models[2:]``, by ``prepare_models``), so it is
saved in the checkpoint's ``state_dicts`` like any model and loads with ``weights_only=True``.
How many epochs it averages follows from the epoch (one update per epoch from the start epoch),
and the learning rate is a pure function of the epoch, so a resumed run continues exactly.

With ``--swag-rank K`` the run also collects SWAG's statistics (Maddox et al. 2019, "A Simple
Baseline for Bayesian Uncertainty in Deep Learning", Algorithm 1) at every averaging epoch: the
running second moment of the weights and the last K deviations of the weights from the running
mean (the SWA average, after its update), for ``--trainer swag`` to sample from. They are the
trainer's state in checkpoints (``trainer`` key), so a resumed run continues the collection exactly.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn as nn
from torch.optim.swa_utils import SWALR, AveragedModel

from subspaces.utils.bn import update_bn
from subspaces.utils.errors import UserError
from subspaces.utils.modules import unwrap
from subspaces.utils.schedulers import get_schedule
from subspaces.args import replace

from .base import TRAINERS, RunContext, TestResult
from .default import DefaultTrainer, test_metrics
from .evaluate import EvalBatches

MAX_ANNEAL_EPOCHS = 10  # SWALR's default annealing length
VAR_CLAMP = 1e-30  # swa_gaussian's var_clamp: the smallest variance of SWAG's diagonal


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


class SWAGStatistics:
    """SWAG's moments (Maddox et al. 2019, Algorithm 1), per parameter name.

    After the n-th averaged model ``w`` (n counted from 1) with running mean ``mean_n`` (the SWA
    average, already updated with ``w``): ``sq_mean_n = sq_mean_{n-1} + (w^2 - sq_mean_{n-1}) / n``,
    and the deviation column ``w - mean_n`` joins ``deviations``, of which the last ``rank`` are kept
    (oldest first, as SWAG's ``cov_mat_sqrt``).
    """

    def __init__(self, rank: int):
        self.rank, self.n = int(rank), 0
        self.sq_mean: dict = {}
        self.deviations: dict = {}  # name -> (k, *shape), k <= rank

    @torch.no_grad()
    def collect(self, params: dict, mean: dict) -> None:
        """Add the averaged weights ``params`` (``{name: tensor}``); ``mean`` is the updated running mean."""
        for name, w in params.items():
            w = w.detach()
            if self.n == 0:
                self.sq_mean[name] = w.pow(2)
                self.deviations[name] = (w - mean[name]).unsqueeze(0)
                continue
            sq = self.sq_mean[name].to(w.device)
            self.sq_mean[name] = sq + (w.pow(2) - sq) / (self.n + 1)
            dev = torch.cat([self.deviations[name].to(w.device), (w - mean[name]).unsqueeze(0)])
            self.deviations[name] = dev[-self.rank:]
        self.n += 1

    @property
    def num_columns(self) -> int:
        """How many deviation columns are held (``min(n, rank)``)."""
        return next(iter(self.deviations.values())).shape[0] if self.deviations else 0

    def to(self, device: torch.device) -> "SWAGStatistics":
        """Move the statistics to ``device`` (once, before drawing many samples there)."""
        self.sq_mean = {k: v.to(device) for k, v in self.sq_mean.items()}
        self.deviations = {k: v.to(device) for k, v in self.deviations.items()}
        return self

    def state_dict(self) -> dict:
        return {"rank": self.rank, "n": self.n, "sq_mean": dict(self.sq_mean), "deviations": dict(self.deviations)}

    @classmethod
    def from_state(cls, state: dict) -> "SWAGStatistics":
        """The statistics :meth:`state_dict` saved."""
        stats = cls(state["rank"])
        stats.n, stats.sq_mean, stats.deviations = int(state["n"]), dict(state["sq_mean"]), dict(state["deviations"])
        return stats

    @torch.no_grad()
    def sample(self, mean: dict, scale: float, generator: torch.Generator, cov: str = "lowrank") -> dict:
        """One draw from SWAG's Gaussian (:meth:`draw`), its normal draws ``z2 ~ N(0, I_K)`` (shared by
        the whole network; ``cov="lowrank"`` only) then ``z1 ~ N(0, I)`` parameter by parameter in
        ``mean``'s order, on the CPU from ``generator`` (so a draw is the same on every device)."""
        z2 = torch.randn(self.num_columns, generator=generator, dtype=torch.float32) if cov == "lowrank" else None
        z1 = {name: torch.randn(m.shape, generator=generator, dtype=torch.float32) for name, m in mean.items()}
        return self.draw(mean, scale, z1, z2)

    @torch.no_grad()
    def draw(self, mean: dict, scale: float, z1: dict, z2: "torch.Tensor | None") -> dict:
        """``w = mean + sqrt(scale) * (sqrt(var) * z1 + D^T z2 / sqrt(rank - 1))`` for given normal
        draws: swa_gaussian's ``SWAG.sample(scale, cov=True)``; with ``z2=None`` its diagonal-only
        ``sample(scale, cov=False)``, ``w = mean + sqrt(scale) * sqrt(var) * z1``.

        As in swa_gaussian: ``var = clamp(sq_mean - mean^2, 1e-30)`` (its ``var_clamp``); ``D`` the
        deviation columns held (at most ``rank``), divided by ``sqrt(rank - 1)`` -- the rank asked
        for (its ``max_num_models``), also when fewer columns were collected; ``scale = 0.5`` is the
        SWAG paper's ``1/sqrt(2)`` factor on both terms.
        """
        out = {}
        for name, m in mean.items():
            var = (self.sq_mean[name].to(m.device) - m.pow(2)).clamp_min(VAR_CLAMP)
            noise = var.sqrt() * z1[name].to(m.device, m.dtype)
            if z2 is not None:
                dev = self.deviations[name].to(m.device)
                noise = noise + torch.tensordot(z2.to(m.device, m.dtype), dev, dims=1) / math.sqrt(self.rank - 1)
            out[name] = m + math.sqrt(scale) * noise
        return out


@TRAINERS.register
class SWATrainer(DefaultTrainer):
    """Standard training of ``models[0]``; ``models[1]`` is its stochastic weight average and
    ``models[2:]`` the snapshots of ``--swa-save-epochs`` (the original's SWA baseline keeps them
    in its model list too, as fixed copies of ``models[0]`` after those epochs)."""

    name = "swa"
    kinds = ("standard",)
    own_settings = ("swag_rank", "swa_save_epochs")

    def __init__(self, settings):
        super().__init__(settings)
        self.swag = SWAGStatistics(settings.swag_rank) if settings.swag_rank else None

    @classmethod
    def adjust_settings(cls, s):
        if not (0.0 <= s.swa_start < 1.0 and s.swa_lr > 0):
            raise UserError(f"--swa-start {s.swa_start} must be a fraction of the epochs in [0, 1) and --swa-lr {s.swa_lr} positive")
        if s.swag_rank is not None:
            if s.swag_rank < 2:
                raise UserError(f"--swag-rank {s.swag_rank} must be at least 2 (SWAG's low-rank covariance needs two deviations; the SWAG paper uses 20)")
            averaged = s.epochs - swa_start_epoch(s)
            if s.epochs and averaged < 2:
                raise UserError(f"--swag-rank needs at least 2 averaging epochs, but --swa-start {s.swa_start} of --epochs {s.epochs} "
                                f"averages {averaged}; lower --swa-start or raise --epochs")
        snapshots = tuple(s.swa_save_epochs or ())
        bad = [e for e in snapshots if not 1 <= e <= s.epochs]
        if bad or len(set(snapshots)) != len(snapshots):
            raise UserError(f"--swa-save-epochs {','.join(map(str, snapshots))} must be distinct epochs in 1..{s.epochs} (--epochs)")
        return replace(s, trainswa=True, num_models=max(s.num_models, 2 + len(snapshots)))

    @classmethod
    def recomputes_bn(cls, settings) -> bool:
        return True  # the average's statistics, at every test

    def check(self, models: list) -> None:
        super().check(models)
        s = self.settings
        if s.pretrained and s.epochs == 0:
            # With --pretrained the epoch count restarts, so nothing tells whether models[1] is an average.
            raise UserError("--pretrained --epochs 0 cannot tell how far an SWA checkpoint averaged; evaluate it with --resume CKPT --epochs <its epochs> (no --pretrained)")

    def prepare_models(self, models: list) -> None:
        for net in models[1:]:
            net.requires_grad_(False)  # as the original: the SWA baseline trains models[0] only

    def init(self, ctx: RunContext) -> None:
        # Average into models[1] itself, so that checkpoints hold it (AveragedModel would average
        # into a deep copy of the model it is given: give it a placeholder and swap models[1] in).
        self.swa = AveragedModel(nn.Identity())
        self.swa.module = unwrap(ctx.models[1])
        self._synced = False

    def _sync(self, completed_epochs: int) -> None:
        """On the first call, set how many epochs the average holds (0 on a fresh run)."""
        if not self._synced:
            self.swa.n_averaged.fill_(max(0, completed_epochs - swa_start_epoch(self.settings)))
            self._synced = True

    def learning_rate(self, epoch: int, schedule) -> float:
        # From --swa-start on, SWALR's annealing to --swa-lr replaces the --lr-policy schedule.
        if epoch >= swa_start_epoch(self.settings):
            return swa_learning_rate(self.settings, epoch)
        return schedule(epoch)

    def train(self, ctx: RunContext, epoch: int) -> float:
        s = self.settings
        self._sync(epoch)
        loss = self.train_epoch(ctx, epoch, self.begin_epoch(ctx, epoch))
        if epoch >= swa_start_epoch(s):
            self.swa.update_parameters(unwrap(ctx.models[0]))
            if self.swag is not None:
                self.swag.collect(dict(unwrap(ctx.models[0]).named_parameters()), dict(unwrap(ctx.models[1]).named_parameters()))
        if s.swa_save_epochs and epoch + 1 in s.swa_save_epochs:
            snapshot = unwrap(ctx.models[2 + s.swa_save_epochs.index(epoch + 1)])
            snapshot.load_state_dict(unwrap(ctx.models[0]).state_dict())
        return loss

    def state_dict(self) -> dict:
        state = {"swag_rank": self.settings.swag_rank or 0}
        if self.swag is not None:
            state["swag"] = self.swag.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        saved = int(state.get("swag_rank", 0))
        if saved != (self.settings.swag_rank or 0):
            # SWAG's moments must cover every averaging epoch: no starting or dropping them midway.
            fix = f"pass --swag-rank {saved}" if saved else "drop --swag-rank (or start a new run with it)"
            raise UserError(f"checkpoint {self.settings.resume[0]} was trained with{'' if saved else 'out'} SWAG statistics"
                            f"{f' of rank {saved}' if saved else ''}; {fix}")
        if self.swag is not None and state.get("swag"):
            self.swag = SWAGStatistics.from_state(state["swag"])

    def test(self, ctx: RunContext, epoch: int) -> TestResult:
        # From the evaluation-only path, ``epoch`` is the number of completed epochs.
        s = self.settings
        self._sync(epoch)
        acc0, m0 = test_metrics(s, ctx, ctx.models[0], prefix="test_model")
        n = int(self.swa.n_averaged)
        metrics = {"model_acc": acc0, **{f"model_{k}": v for k, v in m0.items() if k != "test_loss"}, "swa_n": n, "swa_start_epoch": swa_start_epoch(s)}
        if n == 0:
            return TestResult(acc0, {"swa_acc": None, **m0, **metrics})
        # The average's BatchNorm statistics, recomputed over the training data (fixed batches).
        update_bn(EvalBatches(ctx.data, cache_bn=False).bn, ctx.models[1], ctx.device, s.bn_weighting)
        acc, m = test_metrics(s, ctx, ctx.models[1], prefix="test")
        return TestResult(acc, {"swa_acc": acc, **m, **metrics})
