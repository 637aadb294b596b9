"""The training step shared by lines, curves and simplexes (Algorithm 1 and Eq. 3)."""
from __future__ import annotations

import torch

from modes import conv_layers, cosine_regulariser, endpoint_pair, endpoint_stats, sample_and_set, set_point, subspace_coefficients, subspace_layers
from utils.bn import update_bn
from utils.seed import make_generator

from utils.modules import unwrap

from .base import EpochState, RunContext, Trainer
from .default import test_metrics


class _EpochState(EpochState):
    """What one epoch's steps share: the layers, their coefficient function, the generator."""

    def __init__(self, net, seed: int, epoch: int, rank: "int | None" = None):
        super().__init__()
        self.layers = subspace_layers(net)
        self.convs = conv_layers(net)
        self.coefficients = subspace_coefficients(net)
        # One generator per epoch, derived from (seed, epoch): a resumed run draws the same points.
        # (--point-per-rank: one per DDP rank; otherwise every rank draws the same points.)
        self.generator = make_generator(seed, epoch, "points", *(() if rank is None else (rank,)))


class SubspaceTrainer(Trainer):
    """Algorithm 1: each batch (or each of ``--num-samples`` parts of it) trains a random point
    of the subspace — one for the whole net, or one per layer with ``--layerwise`` — and every
    endpoint is updated; ``--beta`` > 0 adds the cosine regulariser of Eq. 3."""

    def begin_epoch(self, ctx: RunContext, epoch: int) -> _EpochState:
        rank = ctx.world.rank if self.settings.point_per_rank and ctx.world.size > 1 else None
        return _EpochState(unwrap(ctx.models[0]), self.settings.seed, epoch, rank)

    def loss(self, ctx: RunContext, st: _EpochState, x: torch.Tensor, y: torch.Tensor) -> tuple:
        s, model = self.settings, ctx.models[0]
        k = max(1, s.num_samples)
        if k == 1:
            sample_and_set(st.layers, st.coefficients, st.generator, s.layerwise)
            out = model(x)
            loss = ctx.criterion(out, y)
        else:
            # Appendix B: split the batch, each part with its own point; mean of the parts' losses.
            outs, loss = [], 0.0
            for xs, ys in zip(x.tensor_split(k), y.tensor_split(k)):
                sample_and_set(st.layers, st.coefficients, st.generator, s.layerwise)
                o = model(xs)
                outs.append(o)
                loss = loss + ctx.criterion(o, ys) / k
            out = torch.cat(outs)
        if s.beta > 0:
            i, j = endpoint_pair(st.coefficients.num_tensors, st.generator)
            loss = loss + s.beta * cosine_regulariser(st.convs, i, j)
        return loss, out

    def evaluate_centre(self, ctx: RunContext, epoch: int, recompute_bn: bool) -> tuple:
        """Accuracy and metrics at the centre of the subspace (midpoint of a line or curve)."""
        model = ctx.models[0]
        net = unwrap(model)
        coeffs = subspace_coefficients(net)
        set_point(net, coeffs.centre())
        if recompute_bn:
            update_bn(ctx.data.bn_loader, model, ctx.device)  # unwraps a compiled model itself
        acc, metrics = test_metrics(self.settings, ctx, model, epoch)
        cossim, l2 = endpoint_stats(net)
        ctx.log_scalar("test/norm", l2, epoch)
        ctx.log_scalar("test/cossim", cossim, epoch)
        return acc, metrics, cossim, l2
