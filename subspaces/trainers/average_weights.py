"""``--trainer average_weights`` and ``random_average_weights_{global,layerwise,perweight}``: one
network of the simplex spanned by N trained standard networks (``--resume a.pt,b.pt,...``).

``average_weights`` is their uniform average; the random variants a Dirichlet(1) point of the
simplex -- ``Z ~ Exponential(1)^N`` normalised to sum 1, the paper's draw of a simplex point --
drawn once for the whole network (``_global``), once per layer (``_layerwise``) or once per weight
element (``_perweight``), from a generator fixed by ``--seed`` (``make_generator(seed,
"random_average_weights", <granularity>)``). As in the original, the combined network is tested
after recomputing its BatchNorm statistics over the training set (always: the members' statistics
fit none of the combined networks). Columns: ``curr_acc1``, ``nll``, ``ece`` (20 bins), ``brier``,
``test_loss``; the global draw also writes its weights as ``coeff_0 .. coeff_{N-1}``.
"""
from __future__ import annotations

from subspaces.args import replace
from subspaces.utils.bn import update_bn
from subspaces.utils.seed import make_generator
from subspaces.utils.weights import combine_weights, random_coefficients, set_weights, uniform_coefficients

from .base import TRAINERS, RunContext, TestResult
from .evaluate import Evaluator, MembersTrainer, point_metrics


@TRAINERS.register
class AverageWeights(MembersTrainer):
    """The uniform average of the ``--resume`` networks' weights, BatchNorm recomputed, tested."""

    name = "average_weights"

    @classmethod
    def adjust_settings(cls, s):
        return replace(s, update_bn=True)  # the combined network's statistics are always recomputed

    def coefficients(self, model, n: int) -> dict:
        """Each parameter's weights of the n networks."""
        return uniform_coefficients(model, n)

    def assemble(self, models: list, build) -> list:
        self.coeffs = self.coefficients(models[0], len(models))
        set_weights(models[0], combine_weights(models, self.coeffs))
        return models[:1]

    def extra_metrics(self) -> dict:
        """Columns besides the test metrics."""
        return {}

    def test(self, ctx: RunContext, epoch: int) -> TestResult:
        ev = Evaluator(self.settings, ctx, ctx.models[0], lambda loader, m, device: update_bn(loader, m, device, self.settings.bn_weighting))
        m = point_metrics(ev.outputs(None, True))
        acc = m.pop("acc")
        ctx.log_scalar("test/acc", acc)
        ctx.log_scalar("test/loss", m["nll"])
        return TestResult(acc, {**m, "test_loss": m["nll"], **self.extra_metrics()})


class RandomAverageWeights(AverageWeights):
    """A Dirichlet(1) point of the simplex spanned by the networks, fixed by ``--seed``."""

    granularity = "global"

    def coefficients(self, model, n: int) -> dict:
        gen = make_generator(self.settings.seed, "random_average_weights", self.granularity)
        return random_coefficients(model, n, self.granularity, gen)

    def extra_metrics(self) -> dict:
        if self.granularity != "global":
            return {}
        z = next(iter(self.coeffs.values()))
        return {f"coeff_{i}": float(c) for i, c in enumerate(z)}


@TRAINERS.register
class RandomAverageWeightsGlobal(RandomAverageWeights):
    """One draw for the whole network (written as ``coeff_i``)."""

    name = "random_average_weights_global"
    granularity = "global"


@TRAINERS.register
class RandomAverageWeightsLayerwise(RandomAverageWeights):
    """One draw per layer (conv, BatchNorm), in module order."""

    name = "random_average_weights_layerwise"
    granularity = "layerwise"


@TRAINERS.register
class RandomAverageWeightsPerweight(RandomAverageWeights):
    """One draw per weight element."""

    name = "random_average_weights_perweight"
    granularity = "perweight"
