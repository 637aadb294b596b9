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

``--curve-stats`` adds dnn-mode-connectivity's ``eval_curve.py`` summary along the evaluated
points in alpha order (Garipov et al. 2018): each point's train loss and error (over the BatchNorm
batches, the model in eval mode: one more pass over the training set per point) and test NLL and
error; the path's length (the sum of the distances between consecutive points' weights); and for
each quantity its min, max, mean and length-weighted mean. Printed as its table, and written as
results columns: ``train_nll``, ``train_err`` (``m0_`` for alpha0) per row, ``curve_length``,
``curve_points`` and ``curve_<quantity>_<min|max|avg|int>`` on every row of the run.
"""
from __future__ import annotations

import sys
from collections import Counter

import torch.nn.functional as F

from subspaces.modes import path_distances
from subspaces.utils.bn import update_bn
from subspaces.utils.errors import UserError
from subspaces.utils.metrics import disagreement, feature_cossim, path_stats, tv_distance
from subspaces.utils.modules import unwrap
from subspaces.utils.progress import progress_bar

from .base import TRAINERS, ResultRow, RunContext, TestResult, Trainer
from .evaluate import Evaluator, members_metrics, point_key, point_metrics
from .report import format_table, log_grid
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


CURVE_QUANTITIES = ("train_nll", "train_err", "test_nll", "test_err")


def check_curve_stats(s):
    """``--curve-stats`` needs a path: at least two distinct points among the pairs."""
    points = {a for pair in pairs_of(s) for a in pair}
    if s.curve_stats and len(points) < 2:
        raise UserError("--curve-stats summarises a path through at least two points; pass --alphas (e.g. 0,0.05,...,1) "
                        "or an --alpha0 other than --alpha1")
    return s


def pairs_of(s) -> list:
    """The (alpha0, alpha1) pairs ``s`` asks for, in the order of the results rows."""
    if s.alphas:
        return [(point_key((a,))[0], point_key((1.0 - a,))[0]) for a in s.alphas]
    return [(point_key((s.alpha0,))[0], point_key((s.alpha1,))[0])]


def curve_summary(alphas: list, values: dict, dl: list) -> dict:
    """``curve_length``, ``curve_points`` and ``curve_<quantity>_<min|max|avg|int>`` along the path
    through ``alphas`` (sorted), ``values[q]`` one value per alpha, ``dl`` the distances between
    consecutive points (dnn-mode-connectivity's ``eval_curve.py``)."""
    out = {"curve_length": float(sum(dl)), "curve_points": len(alphas)}
    for q in CURVE_QUANTITIES:
        out.update({f"curve_{q}_{k}": v for k, v in path_stats(values[q], dl).items()})
    return out


def print_curve(alphas: list, values: dict, summary: dict, out=None) -> None:
    """dnn-mode-connectivity's tables: one line per point, then start, end, min, max, avg, int."""
    out = out or sys.stdout
    stats = ("min", "max", "avg", "int")
    print(format_table(["alpha", *CURVE_QUANTITIES],
                       [[f"{a:.4f}", *(f"{values[q][i]:.4f}" for q in CURVE_QUANTITIES)] for i, a in enumerate(alphas)]), file=out)
    print(f"length {summary['curve_length']:.4f} over {len(alphas)} points (alpha {_fmt(alphas[0])} to {_fmt(alphas[-1])})", file=out)
    print(format_table(["", "start", "end", *stats],
                       [[q, *(f"{c:.4f}" for c in [values[q][0], values[q][-1], *(summary[f"curve_{q}_{k}"] for k in stats)])]
                        for q in CURVE_QUANTITIES]), file=out)


@TRAINERS.register
class EvalOneDimSubspaces(Trainer):
    """Evaluates a line or curve checkpoint (``--resume CKPT --pretrained --epochs 0``) at one pair
    ``--alpha0/--alpha1`` or at every pair (a, 1 - a) of ``--alphas``."""

    name = "eval_one_dim_subspaces"
    kinds = ("line", "curve", "bezier", "polychain")
    trains = False
    takes_endpoints = True  # --init-endpoints A,B with LinesConv: the straight line between two networks

    own_settings = ("curve_stats",)

    @classmethod
    def adjust_settings(cls, s):
        return check_curve_stats(check_endpoint_settings(s, trains=False))

    def check(self, models: list) -> None:
        super().check(models)
        if not self.settings.resume and not self.settings.init_endpoints:
            raise UserError(f"{self.name} evaluates a trained line or curve; pass --resume CKPT --pretrained "
                            f"(or --init-endpoints A.pt,B.pt for the line between two trained networks)")

    def prepare_models(self, models: list) -> None:
        prepare_endpoints(self.settings, models)

    def pairs(self) -> list:
        """The (alpha0, alpha1) pairs to evaluate, in the order of the results rows."""
        return pairs_of(self.settings)

    def test(self, ctx: RunContext, epoch: int) -> TestResult:
        s = self.settings
        pairs = self.pairs()
        # Late-bound so that tests can count the recomputes through this module's update_bn.
        ev = Evaluator(s, ctx, ctx.models[0], lambda loader, model, device: update_bn(loader, model, device, s.bn_weighting))
        uses = Counter(a for pair in pairs for a in pair)
        results: dict = {}
        along: dict = {}  # --curve-stats: alpha -> (train nll, train err, test nll, test err)
        # A point's outputs are kept until its last pair is done; pairs (a, 1-a) and (1-a, a) share
        # both points, so visiting them together keeps at most two points in memory.
        order = sorted(range(len(pairs)), key=lambda i: (min(pairs[i]), i))
        for i in progress_bar(order, "alpha pairs", total=len(order), main=ctx.world.main):
            a0, a1 = pairs[i]
            p1 = self._point(ev, a1, along)
            p0 = self._point(ev, a0, along)
            results[i] = pair_metrics(p1, p0, s.ensemble_mode)
            for a in (a0, a1):
                uses[a] -= 1
                if uses[a] == 0:
                    ev.release((a,), s.update_bn)
        curve = self._curve(ctx, along) if s.curve_stats else {}
        if s.curve_stats:
            for i, (a0, a1) in enumerate(pairs):
                results[i][1].update(train_nll=along[a1][0], train_err=along[a1][1], m0_train_nll=along[a0][0],
                                     m0_train_err=along[a0][1], **curve)
        rows = [
            ResultRow(results[i][0], results[i][1], name_suffix=f"+alpha0={_fmt(a0)}+alpha1={_fmt(a1)}", columns={"alpha0": a0, "alpha1": a1})
            for i, (a0, a1) in enumerate(pairs)
        ]
        log_grid(ctx, rows)  # TensorBoard: eval/<column> against alpha1
        if not s.alphas:
            return TestResult(*results[0])
        return TestResult(rows[0].acc1, rows[0].metrics, rows)

    def _point(self, ev: Evaluator, a: float, along: dict):
        """The test outputs at alpha ``a``; with ``--curve-stats`` also its train loss and error,
        taken while the model is set up at ``a`` (no second BatchNorm recompute)."""
        s = self.settings
        p = ev.outputs((a,), s.update_bn)
        if s.curve_stats and a not in along:
            train = ev.scores((a,), s.update_bn, split="train")
            along[a] = (*train, F.cross_entropy(p.logits, p.targets).item(), (p.logits.argmax(1) != p.targets).double().mean().item())
        return p

    def _curve(self, ctx: RunContext, along: dict) -> dict:
        """dnn-mode-connectivity's summary along the points in alpha order, printed; its columns."""
        alphas = sorted(along)
        values = {q: [along[a][k] for a in alphas] for k, q in enumerate(CURVE_QUANTITIES)}
        summary = curve_summary(alphas, values, path_distances(unwrap(ctx.models[0]), [(a,) for a in alphas]))
        if ctx.world.main:
            print_curve(alphas, values, summary)
        return summary
