"""``--trainer train_one_dim_subspaces``: lines (LinesConv/LinesBN), curves (CurvesConv/CurvesBN),
Bezier curves (BezierConv<k>) and polygonal chains (PolyChainConv<k>): alpha ~ U(0, 1) per batch.
With ``--init-endpoints`` (and ``--fix-endpoints``) it connects trained networks (Garipov et al. 2018)."""
from __future__ import annotations

from .base import TRAINERS, RunContext, TestResult
from .subspace import SubspaceTrainer


@TRAINERS.register
class OneDimSubspaceTrainer(SubspaceTrainer):
    """Trains a line or a curve; tests at the midpoint alpha = 0.5, with BatchNorm statistics
    recomputed there first when ``--train-update-bn``."""

    name = "train_one_dim_subspaces"
    kinds = ("line", "curve", "bezier", "polychain")

    def test(self, ctx: RunContext, epoch: int) -> TestResult:
        acc, metrics, cossim, l2 = self.evaluate_centre(ctx, self.settings.train_update_bn)
        return TestResult(acc, {"norm": l2, "cossim": cossim, **metrics})
