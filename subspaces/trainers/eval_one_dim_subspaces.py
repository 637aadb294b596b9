"""``--trainer eval_one_dim_subspaces``: pairs of points along a trained line or curve (Figure 4).

For a pair (alpha0, alpha1) it reports what the original did -- the accuracy of the point at
alpha1 (``curr_acc1``), of the point at alpha0 (``m0_acc``), of their ensemble by summed logits
(``ensemble_acc``), the total variation distance between their softmax outputs (``tvdist``) and
the squared cosine similarity of their penultimate features (``feat_cossim``) -- plus NLL, ECE
(20 bins) and Brier score for both points and the ensemble. With ``--update-bn`` the BatchNorm
statistics are recomputed at each point first, as in the original.

``--alphas 0,0.05,...,1`` evaluates every pair (a, 1 - a) of the grid in one run, one results row
each, instead of the original's one run per alpha: each distinct point is evaluated once (one
BatchNorm recompute, one test pass), over the same decoded batches, so each row equals the row a
single-pair run writes for that pair.
"""
from __future__ import annotations

from collections import Counter

from subspaces.utils.bn import update_bn
from subspaces.utils.errors import UserError
from subspaces.utils.metrics import disagreement, feature_cossim, tv_distance
from subspaces.utils.progress import progress_bar

from .base import TRAINERS, ResultRow, RunContext, TestResult, Trainer
from .evaluate import Evaluator, members_metrics, point_key, point_metrics
from .report import log_grid
from .subspace import check_endpoint_settings, prepare_endpoints


def pair_metrics(p1, p0, mode: str = "logits") -> tuple:
    """``(acc of alpha1, metrics)`` of the pair: the alpha1 point ``p1`` and the alpha0 point ``p0``."""
    m1 = point_metrics(p1)
    acc1 = m1.pop("acc")
    metrics = {
        # The original's columns.
        "tvdist": tv_distance(p0.probs, p1.probs),
        "ensemble_acc": None,  # placeholder keeps the original's column order
        "feat_cossim": feature_cossim(p1.features, p0.features) if p1.features is not None else float("nan"),
        "m0_acc": None,
        # Calibration of each point and of the ensemble.
        **m1,
        "test_loss": m1["nll"],
        **point_metrics(p0, "m0_"),
        **members_metrics([p1, p0], mode),
        "percent_disagree": disagreement(p1.logits, p0.logits),
    }
    return acc1, metrics


def _fmt(a: float) -> str:
    return format(a, "g")


@TRAINERS.register
class EvalOneDimSubspaces(Trainer):
    """Evaluates a line or curve checkpoint (``--resume CKPT --pretrained --epochs 0``) at one pair
    ``--alpha0/--alpha1`` or at every pair (a, 1 - a) of ``--alphas``."""

    name = "eval_one_dim_subspaces"
    kinds = ("line", "curve", "bezier", "polychain")
    trains = False
    takes_endpoints = True  # --init-endpoints A,B with LinesConv: the straight line between two networks

    @classmethod
    def adjust_settings(cls, s):
        return check_endpoint_settings(s, trains=False)

    def check(self, models: list) -> None:
        super().check(models)
        if not self.settings.resume and not self.settings.init_endpoints:
            raise UserError(f"{self.name} evaluates a trained line or curve; pass --resume CKPT --pretrained "
                            f"(or --init-endpoints A.pt,B.pt for the line between two trained networks)")

    def prepare_models(self, models: list) -> None:
        prepare_endpoints(self.settings, models)

    def pairs(self) -> list:
        """The (alpha0, alpha1) pairs to evaluate, in the order of the results rows."""
        s = self.settings
        if s.alphas:
            return [(point_key((a,))[0], point_key((1.0 - a,))[0]) for a in s.alphas]
        return [(point_key((s.alpha0,))[0], point_key((s.alpha1,))[0])]

    def test(self, ctx: RunContext, epoch: int) -> TestResult:
        s = self.settings
        pairs = self.pairs()
        # Late-bound so that tests can count the recomputes through this module's update_bn.
        ev = Evaluator(s, ctx, ctx.models[0], lambda loader, model, device: update_bn(loader, model, device))
        uses = Counter(a for pair in pairs for a in pair)
        results: dict = {}
        # A point's outputs are kept until its last pair is done; pairs (a, 1-a) and (1-a, a) share
        # both points, so visiting them together keeps at most two points in memory.
        order = sorted(range(len(pairs)), key=lambda i: (min(pairs[i]), i))
        for i in progress_bar(order, "alpha pairs", total=len(order), main=ctx.world.main):
            a0, a1 = pairs[i]
            p1 = ev.outputs((a1,), s.update_bn)
            p0 = ev.outputs((a0,), s.update_bn)
            results[i] = pair_metrics(p1, p0, s.ensemble_mode)
            for a in (a0, a1):
                uses[a] -= 1
                if uses[a] == 0:
                    ev.release((a,), s.update_bn)
        rows = [
            ResultRow(results[i][0], results[i][1], name_suffix=f"+alpha0={_fmt(a0)}+alpha1={_fmt(a1)}", columns={"alpha0": a0, "alpha1": a1})
            for i, (a0, a1) in enumerate(pairs)
        ]
        log_grid(ctx, rows)  # TensorBoard: eval/<column> against alpha1
        if not s.alphas:
            return TestResult(*results[0])
        return TestResult(rows[0].acc1, rows[0].metrics, rows)
