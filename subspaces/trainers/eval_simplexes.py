"""``--trainer eval_simplexes``: the centre, the vertices and the vertex ensemble of a simplex.

The centre (t_i = 1/n) is the point Figure 5 reports; it is evaluated after recomputing the
BatchNorm statistics there, always, as the original's training test does. Each vertex is
evaluated too (with its own BatchNorm statistics when ``--update-bn``), and the ensemble of the
vertices by summed logits (or averaged probabilities with ``--ensemble-mode probs``), with NLL,
ECE (20 bins) and Brier score for every evaluated point and for the ensemble, and the diversity
among vertices: mean pairwise TV distance, squared feature cosine similarity and disagreement.
"""
from __future__ import annotations


from subspaces.modes import endpoint_stats, subspace_coefficients
from subspaces.utils.bn import update_bn
from subspaces.utils.errors import UserError
from subspaces.utils.metrics import pairwise_stats
from subspaces.utils.modules import unwrap
from subspaces.utils.progress import progress_bar

from .base import TRAINERS, RunContext, TestResult, Trainer
from .evaluate import Evaluator, each_member_metrics, members_metrics, point_metrics


@TRAINERS.register
class EvalSimplexes(Trainer):
    """Evaluates a simplex checkpoint (``--resume CKPT --pretrained --epochs 0``).

    Columns: ``curr_acc1``/``wa_acc`` (centre, the original's name), ``nll, ece, brier, test_loss``
    (centre); ``model_{i}_acc`` (the original's simplex-ensemble name) and ``model_{i}_nll/ece/brier``
    per vertex, ``avg_model_acc``, ``avg_model_std``; ``ensemble_acc/nll/ece/brier``; ``tvdist``,
    ``feat_cossim`` (squared, as for lines), ``percent_disagree``, ``percent_disagree_correct``;
    ``cossim``, ``l2`` between the endpoints' weights.
    """

    name = "eval_simplexes"
    kinds = ("simplex",)
    trains = False

    @classmethod
    def recomputes_bn(cls, settings) -> bool:
        return True  # at the centre, always

    def check(self, models: list) -> None:
        super().check(models)
        if not self.settings.resume:
            raise UserError(f"{self.name} evaluates a trained simplex; pass --resume CKPT --pretrained")

    def test(self, ctx: RunContext, epoch: int) -> TestResult:
        s = self.settings
        net = unwrap(ctx.models[0])
        coeffs = subspace_coefficients(net)
        ev = Evaluator(s, ctx, ctx.models[0], lambda loader, model, device: update_bn(loader, model, device, s.bn_weighting))
        centre = ev.outputs(coeffs.centre(), True)
        vertices = [ev.outputs(coeffs.vertex(i), s.update_bn)
                    for i in progress_bar(range(coeffs.num_tensors), "simplex vertices", main=ctx.world.main)]

        m = point_metrics(centre)
        acc = m.pop("acc")
        metrics = {"wa_acc": acc, **m, "test_loss": m["nll"]}
        metrics.update(each_member_metrics(vertices))
        metrics.update(members_metrics(vertices, s.ensemble_mode))
        feats = [v.features for v in vertices] if ev.with_features else None
        pw = pairwise_stats([v.logits for v in vertices], centre.targets, feats)
        metrics.update({
            "tvdist": pw["tvdist"],
            "feat_cossim": pw.get("feat_cossim_sq", float("nan")),
            "percent_disagree": pw["percent_disagree"],
            "percent_disagree_correct": pw["percent_disagree_correct"],
        })
        metrics["cossim"], metrics["l2"] = endpoint_stats(net)
        ctx.log_scalar("eval/wa_acc", acc)
        ctx.log_scalar("eval/ensemble_acc", metrics["ensemble_acc"])
        return TestResult(acc, metrics)
