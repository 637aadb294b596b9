"""``--trainer swa_endpoint_ensembles``: an ensemble of N networks pulled towards their average.

From N trained standard networks (``--resume a.pt,b.pt,...``) and ``--t`` in [0, 1], network j is
``t * w_j + (1 - t) / (N - 1) * sum_{i != j} w_i`` (every parameter: the conv weights and BatchNorm
affine parameters, as the original). ``t = 1`` gives the networks themselves, ``t = 1/N`` N copies
of their average (SWA-like). Each is tested after recomputing its BatchNorm statistics over the
training set, and the N are ensembled (the original wrote the N networks to files and ensembled them
in a second run; here one run does both). Columns as ``--trainer ensemble``: ``curr_acc1`` and
``ensemble_acc/nll/ece/brier`` of the ensemble, ``model_{j}_acc/nll/ece/brier``, ``avg_model_acc``,
``tvdist``, ``feat_cossim``, ``percent_disagree``; plus ``t``.
"""
from __future__ import annotations

import torch

from subspaces.args import replace
from subspaces.utils.errors import UserError
from subspaces.utils.weights import combine_weights, set_weights

from .base import TRAINERS, RunContext, TestResult
from .ensemble import EnsembleTrainer


def endpoint_coefficients(model, n: int, j: int, t: float) -> dict:
    """Network j's coefficients: ``t`` for network j, ``(1 - t) / (n - 1)`` for each other one."""
    c = torch.full((n,), (1.0 - t) / (n - 1), dtype=torch.float64)
    c[j] = t
    return {name: c for name, _ in model.named_parameters()}


@TRAINERS.register
class SWAEndpointEnsembles(EnsembleTrainer):
    """The ensemble of ``t * w_j + (1 - t) / (N - 1) * sum_{i != j} w_i`` for j = 1..N."""

    name = "swa_endpoint_ensembles"
    kinds = ("standard",)
    own_settings = ("t",)

    @classmethod
    def adjust_settings(cls, s):
        if s.t is None:
            raise UserError(f"{cls.name} needs --t T in [0, 1], the weight of each network in its own point")
        return replace(s, update_bn=True)  # each combined network's statistics are recomputed

    def assemble(self, models: list, build) -> list:
        n, t = len(models), self.settings.t
        # Every combination from the original weights first, then overwrite.
        combined = [combine_weights(models, endpoint_coefficients(models[0], n, j, t)) for j in range(n)]
        for model, weights in zip(models, combined):
            set_weights(model, weights)
        return models

    def test(self, ctx: RunContext, epoch: int) -> TestResult:
        result = super().test(ctx, epoch)
        result.metrics["t"] = self.settings.t
        return result
