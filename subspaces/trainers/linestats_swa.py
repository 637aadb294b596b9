"""``--trainer linestats_swa``: Figure 4's pair evaluation along the straight line between two
separately trained networks -- the baseline the learned line is compared with.

From two standard checkpoints ``--resume a.pt,b.pt`` the trainer builds a real line,
``LinesConv``/``LinesBN`` layers of the same architecture whose endpoints are the two networks
(``weight`` from a, ``weight1`` from b: :func:`subspaces.modes.load_endpoints`), so the point alpha is
``(1 - alpha) * w_a + alpha * w_b`` and everything else is ``eval_one_dim_subspaces``: the pair
(``--alpha0``, ``--alpha1``) or every pair (a, 1 - a) of ``--alphas``, one row per pair, each
distinct point evaluated once after recomputing its BatchNorm statistics (always: the two
networks' statistics fit no point between them), with the same columns (``curr_acc1`` at alpha1,
``m0_acc`` at alpha0, ``ensemble_acc``, ``tvdist``, ``feat_cossim`` squared, ``percent_disagree``,
NLL/ECE/Brier of both points and their ensemble).

The original's knobs are flags too: ``--t`` is the point written as ``curr_acc1`` (``--alpha1``)
and ``--baset`` the other one (``--alpha0``).
"""
from __future__ import annotations

from subspaces.args import replace
from subspaces.modes import load_endpoints
from subspaces.utils.errors import UserError
from subspaces.utils.modules import unwrap

from .base import TRAINERS, Trainer
from .eval_one_dim_subspaces import EvalOneDimSubspaces, check_curve_stats


@TRAINERS.register
class LinestatsSWA(EvalOneDimSubspaces):
    """Evaluates points ``(1 - alpha) * w_a + alpha * w_b`` of the line between two trained networks."""

    name = "linestats_swa"
    kinds = ("standard",)
    models_from_checkpoints = True  # the two endpoints, one per state dict
    own_settings = ("t", "baset", "curve_stats")

    @classmethod
    def adjust_settings(cls, s):
        if s.alphas and (s.t is not None or s.baset is not None):
            raise UserError("--alphas evaluates every pair (a, 1 - a); drop --t/--baset, or drop --alphas to evaluate one pair")
        if s.t is not None:
            s = replace(s, alpha1=s.t)
        if s.baset is not None:
            s = replace(s, alpha0=s.baset)
        return check_curve_stats(replace(s, update_bn=True))

    def check(self, models: list) -> None:
        Trainer.check(self, models)  # two standard networks, not a line
        if len(models) != 2:
            raise UserError(f"{self.name} evaluates the line between exactly two trained networks, got {len(models)}; pass --resume a.pt,b.pt")

    def assemble(self, models: list, build) -> list:
        line = build(conv_type="LinesConv", bn_type="LinesBN")
        load_endpoints(line, [unwrap(m).state_dict() for m in models], list(self.settings.resume))
        return [line]
