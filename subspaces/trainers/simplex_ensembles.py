"""``--trainer simplex_ensembles``: an ensemble of random points of one trained simplex.

From a simplex checkpoint (``SimplexConv<n>``, ``--resume CKPT``), ``--num-models K`` points are
drawn as training draws them -- ``Z ~ Exponential(1)^n`` normalised to sum 1 (Dirichlet(1)), one
point for the whole network or, with ``--layerwise``, one per layer (Algorithm 1's draw,
:func:`subspaces.modes.sample_and_set`) -- from a generator fixed by ``--seed`` (``make_generator(seed,
"simplex_ensembles")``). Each point is tested after recomputing the BatchNorm statistics there, and
the K points are ensembled (summed logits, or ``--ensemble-mode probs``). Columns as ``--trainer
ensemble``: ``curr_acc1`` and ``ensemble_acc/nll/ece/brier`` of the ensemble, each point's
``model_{k}_acc/nll/ece/brier``, ``avg_model_acc``, ``avg_model_std``, and the diversity among
points (``tvdist``, ``percent_disagree``, ``feat_cossim`` plain and ``feat_sq_cossim`` squared).
"""
from __future__ import annotations

from subspaces.args import replace
from subspaces.modes import sample_and_set, subspace_coefficients, subspace_layers
from subspaces.utils.bn import update_bn
from subspaces.utils.errors import UserError
from subspaces.utils.modules import unwrap
from subspaces.utils.seed import make_generator

from .base import TRAINERS, RunContext, TestResult, Trainer
from .ensemble import ensemble_result
from .evaluate import EvalBatches, Evaluator


@TRAINERS.register
class SimplexEnsembles(Trainer):
    """Ensembles ``--num-models`` random points of a trained simplex, each with its own BatchNorm statistics."""

    name = "simplex_ensembles"
    kinds = ("simplex",)
    trains = False

    @classmethod
    def adjust_settings(cls, s):
        if s.num_models < 2:
            raise UserError(f"{cls.name} ensembles --num-models random points of the simplex; pass --num-models K with K >= 2")
        return replace(s, update_bn=True)  # each point's statistics are recomputed

    def check(self, models: list) -> None:
        super().check(models)
        if len(self.settings.resume or ()) != 1:
            raise UserError(f"{self.name} evaluates one trained simplex; pass --resume CKPT (one checkpoint)")

    def models_to_build(self) -> int:
        return 1  # one simplex, set to each of the --num-models points in turn

    def test(self, ctx: RunContext, epoch: int) -> TestResult:
        s = self.settings
        net = unwrap(ctx.models[0])
        layers, coeffs = subspace_layers(net), subspace_coefficients(net)
        gen = make_generator(s.seed, "simplex_ensembles")
        batches = EvalBatches(ctx.data)
        preds = []
        for _ in range(s.num_models):
            sample_and_set(layers, coeffs, gen, s.layerwise)
            ev = Evaluator(s, ctx, ctx.models[0], lambda loader, m, device: update_bn(loader, m, device, s.bn_weighting), batches)
            preds.append(ev.outputs(None, True))
        acc, metrics = ensemble_result(preds, s.ensemble_mode)
        ctx.log_scalar("test/acc", acc)
        ctx.log_scalar("test/loss", metrics["nll"])
        return TestResult(acc, metrics)
