"""``--trainer swag``: SWAG (Maddox et al. 2019) from an SWA checkpoint that collected its statistics.

Train with ``--trainswa --swag-rank K`` (``trainers/swa.py`` collects the second moment and the
last K deviations at every averaging epoch); then ``--trainer swag --resume <that checkpoint>``
draws ``--swag-samples S`` networks from SWAG's Gaussian (``--swag-scale``, default 0.5: the SWAG
paper's ``1/sqrt(2)``; ``--swag-cov lowrank``, the default, or ``diag``: swa_gaussian's
``sample(cov=True)`` and ``sample(cov=False)``, see :meth:`SWAGStatistics.draw`), recomputes each
one's BatchNorm statistics over the training set, and reports the Bayesian model average -- the
mean of the S networks' predicted probabilities: ``curr_acc1``, ``nll``, ``ece`` (20 bins),
``brier``, ``test_loss`` -- with the SWA mean's own ``swa_acc/nll/ece/brier`` (BatchNorm recomputed
too), each sample's accuracy averaged (``avg_model_acc``, ``avg_model_std``), and
``swag_samples``, ``swag_scale``, ``swag_cov``, ``swag_rank`` (the deviation columns held; fewer
than the training run's ``--swag-rank`` is warned about in one line), ``swag_n`` (averaged
epochs). Draws come from ``make_generator(seed, "swag")``, so ``--seed`` fixes them.

The original's ``swag`` trainer drew one network from N snapshots (the low-rank term with every
snapshot as a column); this is SWAG proper, as the SWAG paper and its code do it.
"""
from __future__ import annotations

import statistics
import sys

import torch

from subspaces.args import replace
from subspaces.utils.bn import update_bn
from subspaces.utils.errors import UserError
from subspaces.utils.metrics import probs_metrics
from subspaces.utils.modules import unwrap
from subspaces.utils.progress import progress_bar
from subspaces.utils.seed import make_generator
from subspaces.utils.weights import set_weights

from .base import TRAINERS, RunContext, TestResult, Trainer
from .evaluate import EvalBatches, Evaluator, point_metrics
from .swa import SWAGStatistics

NO_STATS = "train with --trainswa --swag-rank K (K >= 2) and pass its checkpoint"


@TRAINERS.register
class SWAGTrainer(Trainer):
    """The Bayesian model average of ``--swag-samples`` draws from SWAG's posterior."""

    name = "swag"
    kinds = ("standard",)
    trains = False
    models_from_checkpoints = True  # the SWA checkpoint's models: [SGD network, SWA mean, ...]
    own_settings = ("swag_samples", "swag_scale", "swag_cov")

    @classmethod
    def adjust_settings(cls, s):
        return replace(s, update_bn=True)  # every sample's statistics are recomputed

    def load_checkpoints(self, checkpoints: list) -> None:
        paths = self.settings.resume or ()
        if len(paths) != 1:
            raise UserError(f"{self.name} evaluates one SWA checkpoint, got {len(paths)}; pass --resume CKPT ({NO_STATS})")
        state = (checkpoints[0].get("trainer") or {}).get("swag")
        if not state:
            raise UserError(f"checkpoint {paths[0]} holds no SWAG statistics; {NO_STATS}")
        self.stats = SWAGStatistics.from_state(state)
        if self.stats.num_columns < 2:
            raise UserError(f"checkpoint {paths[0]} has averaged {self.stats.n} epoch(s); SWAG needs at least 2: "
                            f"pass a checkpoint from later in the run")
        k, rank = self.stats.num_columns, self.stats.rank
        if k < rank and self.settings.swag_cov == "lowrank":
            print(f"warning: {paths[0]} holds {k} deviation columns, fewer than its --swag-rank {rank}; the low-rank term is "
                  f"divided by sqrt({rank} - 1) as swa_gaussian does (sqrt({k} - 1) would make it {((rank - 1) / (k - 1)) ** 0.5:.2f}x larger): "
                  f"average at least {rank} epochs for the full rank", file=sys.stderr)

    def assemble(self, models: list, build) -> list:
        if len(models) < 2:
            raise UserError(f"checkpoint {self.settings.resume[0]} holds no SWA average; {NO_STATS}")
        names = {n for n, _ in models[1].named_parameters()}
        if names != set(self.stats.sq_mean):
            raise UserError(f"the SWAG statistics of {self.settings.resume[0]} do not fit its model; {NO_STATS}")
        return [models[1], models[0]]  # the SWA mean, and a network to hold each sample

    def test(self, ctx: RunContext, epoch: int) -> TestResult:
        s = self.settings
        bn = lambda loader, m, device: update_bn(loader, m, device, s.bn_weighting)  # noqa: E731
        batches = EvalBatches(ctx.data)
        mean_model, sample_model = ctx.models
        swa = point_metrics(Evaluator(s, ctx, mean_model, bn, batches).outputs(None, True), "swa_")
        mean = dict(unwrap(mean_model).named_parameters())
        self.stats.to(ctx.device)
        gen = make_generator(s.seed, "swag")
        probs, accs = None, []
        for _ in progress_bar(range(s.swag_samples), "SWAG samples", main=ctx.world.main):
            set_weights(unwrap(sample_model), self.stats.sample(mean, s.swag_scale, gen, s.swag_cov))
            p = Evaluator(s, ctx, sample_model, bn, batches).outputs(None, True)
            accs.append(point_metrics(p)["acc"])
            probs = p.probs if probs is None else probs + p.probs
        bma = probs_metrics(probs / s.swag_samples, p.targets)
        acc = bma.pop("acc")
        metrics = {
            **bma, "test_loss": bma["nll"], **swa,
            "avg_model_acc": statistics.fmean(accs), "avg_model_std": statistics.pstdev(accs),
            "swag_samples": s.swag_samples, "swag_scale": s.swag_scale, "swag_cov": s.swag_cov, "swag_rank": self.stats.num_columns, "swag_n": self.stats.n,
        }
        ctx.log_scalar("test/acc", acc)
        ctx.log_scalar("test/loss", bma["nll"])
        return TestResult(acc, metrics)
