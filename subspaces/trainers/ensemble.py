"""``--trainer ensemble``: k independently trained standard networks, one per ``--resume`` state dict.

The baseline the subspaces are compared against (Figure 4's "standard ensemble of two"). As the
original, the ensemble predicts by summed logits (``--ensemble-mode probs``: averaged
probabilities), ``curr_acc1`` is its accuracy, and the diversity columns keep the original's
names and meanings: ``tvdist`` (mean pairwise TV distance of softmax outputs), ``percent_disagree``,
``percent_disagree_correct`` (pairs disagree and one is right) and ``feat_cossim`` (mean pairwise
cosine similarity of penultimate features, *not* squared, as the original's ensemble.py);
``feat_sq_cossim`` is the squared one, comparable to the lines' ``feat_cossim``. New: the
ensemble's ``nll, ece, brier`` (``test_loss`` = nll; repeated as ``ensemble_acc/nll/ece/brier``, the
names of the line evaluation's pair ensembles) and each member's ``model_{i}_acc/nll/ece/brier``.
"""
from __future__ import annotations

from subspaces.utils.bn import update_bn
from subspaces.utils.metrics import pairwise_stats

from .base import TRAINERS, RunContext, TestResult
from .evaluate import EvalBatches, Evaluator, MembersTrainer, each_member_metrics, members_metrics


@TRAINERS.register
class EnsembleTrainer(MembersTrainer):
    """Evaluates the ensemble of the models in ``--resume a.pt,b.pt,...`` (one member per state dict)."""

    name = "ensemble"

    def test(self, ctx: RunContext, epoch: int) -> TestResult:
        s = self.settings
        batches = EvalBatches(ctx.data)  # every member sees the same decoded batches
        preds = []
        for model in ctx.models:
            ev = Evaluator(s, ctx, model, lambda loader, m, device: update_bn(loader, m, device, s.bn_weighting), batches)
            preds.append(ev.outputs(None, s.update_bn))
        acc, metrics = ensemble_result(preds, s.ensemble_mode)
        ctx.log_scalar("test/acc", acc)
        ctx.log_scalar("test/loss", metrics["nll"])
        return TestResult(acc, metrics)


def ensemble_result(preds: list, mode: str) -> tuple:
    """``(accuracy, metrics)`` of the ensemble of the members' outputs ``preds``: the columns above."""
    ens = members_metrics(preds, mode, prefix="")
    acc = ens.pop("acc")
    pw = pairwise_stats([p.logits for p in preds], preds[0].targets, [p.features for p in preds])
    metrics = {
        "tvdist": pw["tvdist"],
        "percent_disagree": pw["percent_disagree"],
        "percent_disagree_correct": pw["percent_disagree_correct"],
        "feat_cossim": pw["feat_cossim_plain"],
        "feat_sq_cossim": pw["feat_cossim_sq"],
        **ens,
        "test_loss": ens["nll"],
        # The same under the names the line evaluation gives its pair ensembles (Figure 4's baseline).
        "ensemble_acc": acc,
        **{f"ensemble_{k}": v for k, v in ens.items()},
        "ensemble_mode": mode,
    }
    metrics.update(each_member_metrics(preds))
    return acc, metrics
