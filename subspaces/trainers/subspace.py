"""The training step shared by lines, curves and simplexes (Algorithm 1 and Eq. 3), and the
endpoints of mode connectivity (``--init-endpoints``, ``--fix-endpoints``) every subspace trainer
takes."""
from __future__ import annotations

import torch

from subspaces.modes import (cosine_regulariser, endpoint_pair, endpoint_stats, regularised_tensors, sample_and_set, set_point,
    subspace_coefficients, subspace_layers)
from subspaces.modes.convert import fix_endpoints, load_endpoints
from subspaces.modes.modules import coefficients_of, get_layer_type
from subspaces.utils.bn import update_bn
from subspaces.utils.checkpoint import load_checkpoint
from subspaces.utils.errors import UserError
from subspaces.utils.modules import unwrap
from subspaces.utils.seed import make_generator

from .base import EpochState, RunContext, Trainer
from .default import test_metrics


class _EpochState(EpochState):
    """What one epoch's steps share: the layers, their coefficient function, the generator."""

    def __init__(self, net, seed: int, epoch: int, rank: "int | None" = None):
        super().__init__()
        self.layers = subspace_layers(net)
        self.tensors = regularised_tensors(net)  # what Eq. 3 runs over
        self.coefficients = subspace_coefficients(net)
        # One generator per epoch, derived from (seed, epoch): a resumed run draws the same points.
        # (--point-per-rank: one per DDP rank; otherwise every rank draws the same points.)
        self.generator = make_generator(seed, epoch, "points", *(() if rank is None else (rank,)))


def check_regulariser(s, tensors: list) -> None:
    """Eq. 3 (``--beta`` > 0) needs tensors to run over (``tensors``: what
    :func:`subspaces.modes.regularised_tensors` found): refused in one line for a model that has none."""
    if s.beta > 0 and not tensors:
        raise UserError(f"--beta {s.beta} turns on Eq. 3, which runs over subspace convolution, linear or attention weights, "
                        f"and this model has none; pass --beta 0 (or make those layers subspace layers)")


def check_endpoint_settings(s, trains: bool):
    """``--init-endpoints`` names as many checkpoints as the layer type has endpoints (2 for a line
    or curve, n for a simplex); ``--fix-endpoints`` needs training and inner tensors to train."""
    if not s.init_endpoints:
        return s
    coefficients = coefficients_of(get_layer_type(s.conv_type, "Conv"))
    if coefficients is None:
        raise UserError(f"--init-endpoints loads the endpoints of a subspace, but --conv-type {s.conv_type} is a standard "
                        f"network; pass e.g. --conv-type CurvesConv --bn-type CurvesBN")
    k = coefficients.num_endpoints
    if len(s.init_endpoints) != k:
        raise UserError(f"--init-endpoints names {len(s.init_endpoints)} checkpoint(s), but a {s.conv_type} {coefficients.kind} "
                        f"has {k} endpoints; pass {k} comma-separated checkpoints")
    if s.fix_endpoints and not trains:
        raise UserError(f"--fix-endpoints keeps endpoints out of training, and --trainer {s.trainer} trains nothing; drop --fix-endpoints")
    if s.fix_endpoints and coefficients.num_tensors == k:
        raise UserError(f"--fix-endpoints leaves nothing to train in a {s.conv_type} (all its {k} tensors are endpoints); "
                        f"connect them with a curve (--conv-type CurvesConv, BezierConv<k> or PolyChainConv<k>) or drop --fix-endpoints")
    return s


def prepare_endpoints(s, models: list) -> None:
    """Load the ``--init-endpoints`` networks (the first model of each checkpoint) into every model's
    endpoints, the inner tensors on the line between them (Garipov et al. 2018), and freeze the
    endpoints with ``--fix-endpoints``. Runs before ``--resume`` weights are loaded (which win)."""
    if not s.init_endpoints:
        return
    state_dicts = []
    for path in s.init_endpoints:
        ckpt = load_checkpoint(path, "--init-endpoints")
        conv_type = (ckpt.get("settings") or {}).get("conv_type", "StandardConv")
        if conv_type != "StandardConv":
            raise UserError(f"{path} holds a {conv_type} network; --init-endpoints takes standard networks (--conv-type StandardConv): "
                            f"export one point of it first (python -m subspaces.modes.export {path} --point ... --out net.pt)")
        state_dicts.append(ckpt["state_dicts"][0])
    for net in models:
        load_endpoints(net, state_dicts, list(s.init_endpoints))
        if s.fix_endpoints:
            fix_endpoints(net)


class SubspaceTrainer(Trainer):
    """Algorithm 1: each batch (or each of ``--num-samples`` parts of it) trains a random point
    of the subspace — one for the whole net, or one per layer with ``--layerwise`` — and every
    endpoint is updated (all but the fixed ones with ``--fix-endpoints``); ``--beta`` > 0 adds the
    cosine regulariser of Eq. 3 over :func:`subspaces.modes.regularised_tensors` (a conv net's conv
    weights; a model without convolutions, its linear and attention weights)."""

    takes_endpoints = True

    @classmethod
    def adjust_settings(cls, s):
        return check_endpoint_settings(s, trains=True)

    @classmethod
    def recomputes_bn(cls, settings) -> bool:
        return settings.train_update_bn  # at the midpoint before each test

    def prepare_models(self, models: list) -> None:
        prepare_endpoints(self.settings, models)

    def check(self, models: list) -> None:
        super().check(models)
        check_regulariser(self.settings, regularised_tensors(unwrap(models[0])))

    def begin_epoch(self, ctx: RunContext, epoch: int) -> _EpochState:
        rank = ctx.world.rank if self.settings.point_per_rank and ctx.world.size > 1 else None
        st = _EpochState(unwrap(ctx.models[0]), self.settings.seed, epoch, rank)
        check_regulariser(self.settings, st.tensors)  # for callers that skip check()
        return st

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
            loss = loss + s.beta * cosine_regulariser(st.tensors, i, j)
        return loss, out

    def evaluate_centre(self, ctx: RunContext, recompute_bn: bool) -> tuple:
        """Accuracy and metrics at the centre of the subspace (midpoint of a line or curve)."""
        model = ctx.models[0]
        net = unwrap(model)
        coeffs = subspace_coefficients(net)
        set_point(net, coeffs.centre())
        if recompute_bn:
            update_bn(ctx.data.bn_loader, model, ctx.device, self.settings.bn_weighting)  # unwraps a compiled model itself
        acc, metrics = test_metrics(self.settings, ctx, model)
        cossim, l2 = endpoint_stats(net)
        ctx.log_scalar("test/norm", l2)
        ctx.log_scalar("test/cossim", cossim)
        return acc, metrics, cossim, l2
