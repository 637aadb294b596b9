"""``--trainer train_simplexes``: simplexes with n vertices (SimplexConv<n>/SimplexBN<n>)."""
from __future__ import annotations

from .base import TRAINERS, RunContext, TestResult
from .subspace import SubspaceTrainer


@TRAINERS.register
class SimplexTrainer(SubspaceTrainer):
    """Trains a simplex; tests at its centre (t_i = 1/n), always after recomputing the BatchNorm
    statistics there. ``wa_acc`` is the centre's accuracy, as the original named it."""

    name = "train_simplexes"
    kinds = ("simplex",)

    @classmethod
    def recomputes_bn(cls, settings) -> bool:
        return True  # at the centre, always

    def test(self, ctx: RunContext, epoch: int) -> TestResult:
        acc, metrics, cossim, l2 = self.evaluate_centre(ctx, True)
        ctx.log_scalar("test/wa_acc", acc)
        return TestResult(acc, {"wa_acc": acc, "l2": l2, "cossim": cossim, **metrics})
