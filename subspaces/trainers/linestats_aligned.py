"""``--trainer linestats_aligned``: Figure 4's third curve, the straight line between two trained
networks after permuting the second one's units to match the first's.

Much of the dip of the straight line between two independently trained networks
(``linestats_swa``) comes from their permutation symmetry (Entezari et al. 2022): the same
function can order its hidden units in many ways. This trainer permutes member B's units to match
member A's -- ``--align weight`` (weight matching, Ainsworth et al. 2023, "Git Re-Basin"; the
default) or ``--align activation`` (the correlations of their activations on the first
:data:`~subspaces.modes.matching.ACTIVATION_BATCHES` BatchNorm batches of the training set) -- which
leaves B's function unchanged, then evaluates exactly what ``linestats_swa`` evaluates: the
points ``(1 - alpha) * w_a + alpha * w_b_aligned``, BatchNorm recomputed at each (the simplest form
of REPAIR, Jordan et al. 2023), with the same columns, plus ``align_method``, ``align_passes``,
``align_units`` and ``align_moved`` (units of B that moved). The points are ``--alpha0/--alpha1``
or the ``--alphas`` grid. Weight matching visits the groups in an order drawn from ``--seed``.
"""
from __future__ import annotations

import itertools

from subspaces.args import replace
from subspaces.modes import load_endpoints
from subspaces.modes.matching import ACTIVATION_BATCHES, align_networks
from subspaces.utils.evaluation import to_device
from subspaces.utils.modules import unwrap
from subspaces.utils.seed import make_generator

from .base import TRAINERS, RunContext, TestResult
from .evaluate import EVAL_BN_EPOCH
from .linestats_swa import LinestatsSWA


@TRAINERS.register
class LinestatsAligned(LinestatsSWA):
    """The line ``(1 - alpha) * w_a + alpha * P(w_b)``, P the permutation aligning b's units to a's."""

    name = "linestats_aligned"
    own_settings = ("align",)  # the points by --alpha0/--alpha1 or --alphas (the original's --t/--baset are linestats_swa's)

    @classmethod
    def adjust_settings(cls, s):
        return replace(super().adjust_settings(s), align=s.align or "weight")

    def assemble(self, models: list, build) -> list:
        self.members = [unwrap(m) for m in models]  # aligned in init, where the data is
        return super().assemble(models, build)

    def init(self, ctx: RunContext) -> None:
        s = self.settings
        a, b = self.members
        batches = None
        if s.align == "activation":
            a.to(ctx.device), b.to(ctx.device)
            ctx.data.set_epoch(EVAL_BN_EPOCH)
            batches = [to_device(x, ctx.device) for x, _ in itertools.islice(ctx.data.bn_loader, ACTIVATION_BATCHES)]
        self.alignment, state_b = align_networks(a, b, s.align, batches, make_generator(s.seed, "align"))
        load_endpoints(ctx.models[0], [a.state_dict(), state_b], list(s.resume))
        self.members = None

    def test(self, ctx: RunContext, epoch: int) -> TestResult:
        result = super().test(ctx, epoch)
        extra = {f"align_{k}": v for k, v in self.alignment.summary().items() if k != "groups"}
        result.metrics.update(extra)
        for row in result.rows or ():
            row.metrics.update(extra)
        return result
