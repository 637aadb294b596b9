"""Between plain networks and subspaces: any model made a subspace in place, trained networks
loaded as the endpoints of one, and the plain network at a point of one.

- :func:`subspace` turns an existing ``nn.Module`` (its convolutions, linear layers, BatchNorm,
  LayerNorm, GroupNorm, Embedding and MultiheadAttention) into subspace layers in place, through
  :func:`subspaces.modes.modules.subspace_type`: the model keeps its own forward code and its state-dict
  names (endpoint 0 keeps ``weight``/``bias``; the others are ``weight1``, ..., as everywhere).
- :func:`load_endpoints` puts the state dicts of trained plain networks into a subspace's
  endpoints (mode connectivity, Garipov et al. 2018), the inner tensors of a curve on the straight
  line between them (Garipov's initialisation); :func:`fix_endpoints` keeps them out of training.
- :func:`plain_state_dict` is the plain network at the subspace's current point: the state dict a
  model without subspace layers loads.
"""
from __future__ import annotations

import copy
import warnings
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from subspaces.utils.checkpoint import state_mismatch, strip_module_prefix
from subspaces.utils.errors import UserError, unknown_name
from subspaces.utils.modules import unwrap

from .coefficients import (BezierCoefficients, Coefficients, CurveCoefficients, LineCoefficients,
    PolyChainCoefficients, SimplexCoefficients)
from .modules import SubspaceLayer, subspace_type
from .subspace import subspace_coefficients, subspace_layers

# The layer classes subspace() converts (and their subclasses); other parameters stay shared.
CONVERTED = (_ConvNd, nn.Linear, _BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.Embedding, nn.MultiheadAttention)
KINDS = ("lines", "curves", "simplex", "bezier", "polychain")


def coefficients_for(kind: str, n: Optional[int] = None, bends: Optional[int] = None) -> Coefficients:
    """The coefficient function ``kind`` names: lines, curves (the original's quadratic Bezier),
    simplex (``n`` vertices), bezier (``bends`` control points: degree ``bends + 1``) or polychain
    (``bends`` bends)."""
    needs = {"simplex": "n", "bezier": "bends", "polychain": "bends"}
    if kind not in KINDS:
        raise unknown_name("subspace kind", kind, KINDS)
    given = {k for k, v in (("n", n), ("bends", bends)) if v is not None}
    if given != ({needs[kind]} if kind in needs else set()):
        want = f"pass {needs[kind]}=" if kind in needs else "pass neither n= nor bends="
        raise UserError(f"a {kind} subspace takes {needs.get(kind, 'no size')}; {want}")
    if kind == "lines":
        return LineCoefficients()
    if kind == "curves":
        return CurveCoefficients()
    size = n if kind == "simplex" else bends
    if size < (2 if kind == "simplex" else 1):
        raise UserError(f"{needs[kind]}={size} is too small for a {kind}; pass {'n >= 2' if kind == 'simplex' else 'bends >= 1'}")
    if kind == "simplex":
        return SimplexCoefficients(n)
    return BezierCoefficients(bends + 1) if kind == "bezier" else PolyChainCoefficients(bends)


def _reset(module: nn.Module) -> None:
    """Draw ``module``'s parameters afresh, as its own initialisation does."""
    if isinstance(module, nn.MultiheadAttention):
        module.out_proj.reset_parameters()
        module._reset_parameters()  # as its constructor: xavier in_proj, zero biases
    else:
        module.reset_parameters()


def _convert(module: nn.Module, coefficients: Coefficients, scratches: Sequence[nn.Module]) -> bool:
    """Make ``module`` a subspace layer in place; endpoint i >= 1 takes ``scratches[i-1]``'s values."""
    names = [n for n, p in module._parameters.items() if p is not None and p.requires_grad]
    if not names:
        return False  # nothing trainable (e.g. a BatchNorm without affine): stays shared
    if isinstance(module, nn.Embedding) and (module.max_norm is not None or module.sparse):
        raise UserError("an Embedding with max_norm or sparse=True renormalises or updates its weight in place; "
                        "build it without them to make it a subspace")
    values = {n: iter([s._parameters[n].detach() for s in scratches]) for n in names}
    module.__class__ = subspace_type(type(module), coefficients)

    def init(name: str, p: torch.Tensor) -> None:
        with torch.no_grad():
            p.copy_(next(values[name]))

    module._add_endpoints(names, init)
    return True


def _standard_paths(model: nn.Module) -> None:
    """Turn off the transformer fast paths that read children's weights without calling them (they
    would see endpoint 0): the encoder layer's fused kernel, and the encoder's nested-tensor
    conversion that goes with it. ``activation_relu_or_gelu = 0`` is what a custom activation sets."""
    for m in model.modules():
        if isinstance(m, nn.TransformerEncoderLayer):
            m.activation_relu_or_gelu = 0
        if isinstance(m, nn.TransformerEncoder):
            m.use_nested_tensor = False


def subspace(model: nn.Module, kind: str, n: Optional[int] = None, bends: Optional[int] = None,
             init: Optional[Callable[[nn.Module], None]] = None) -> nn.Module:
    """Turn ``model`` into a subspace of networks in place and return it.

    Every convolution (1d/2d/3d), linear layer, BatchNorm, LayerNorm, GroupNorm, RMSNorm, Embedding
    and MultiheadAttention (its projections, ``out_proj`` included) becomes a subspace layer of
    ``kind`` ("lines", "curves", "simplex" with ``n``, "bezier" or "polychain" with ``bends``). The
    model keeps its forward code and state-dict names: the current values become endpoint 0
    (``weight``), and each other tensor (``weight1``, ...) is drawn independently by the layer's
    own ``reset_parameters`` (on a scratch copy), as the paper initialises endpoints; ``init(layer)``
    replaces it where the model's constructor initialises differently (torchvision's ResNets draw
    their convolutions with ``kaiming_normal_(mode="fan_out")``, not the Conv2d default). Parameters
    with ``requires_grad=False`` stay shared; so do those of other module types (a warning names
    them). Trainers, the evaluation grid, ``modes.set_point`` and :func:`plain_state_dict` then
    work on it as on the built-in models.
    """
    coefficients = coefficients_for(kind, n, bends)
    if subspace_layers(model):
        raise UserError(f"the model already has subspace layers ({type(subspace_layers(model)[0]).__name__}); convert a plain model")
    done: set = set()
    for name, m in list(model.named_modules()):
        if id(m) in done or not isinstance(m, CONVERTED):
            continue
        scratches = [copy.deepcopy(m) for _ in range(1, coefficients.num_tensors)]
        for s in scratches:
            (init or _reset)(s)
        _convert(m, coefficients, scratches)
        if isinstance(m, nn.MultiheadAttention):  # out_proj is read by the attention, not called
            _convert(m.out_proj, coefficients, [s.out_proj for s in scratches])
            done.add(id(m.out_proj))
        done.add(id(m))
    _standard_paths(model)
    shared = [n for n, p in model.named_parameters() if p.requires_grad and not _is_endpoint_param(model, n)]
    if shared:
        warnings.warn(f"{len(shared)} parameter(s) stay shared by every point of the subspace (e.g. {shared[0]}): "
                      f"their modules are not of a converted type", stacklevel=2)
    return model


def _is_endpoint_param(model: nn.Module, name: str) -> bool:
    prefix, _, leaf = name.rpartition(".")
    owner = model.get_submodule(prefix) if prefix else model
    return isinstance(owner, SubspaceLayer) and any(leaf in names for names in owner._endpoint_params.values())


def _endpoint_keys(model: nn.Module) -> dict:
    """``{plain key: (layer, parameter name, full keys of its tensors in coefficient order)}``."""
    out = {}
    for prefix, m in model.named_modules():
        if isinstance(m, SubspaceLayer):
            pre = f"{prefix}." if prefix else ""
            for base, names in m._endpoint_params.items():
                out[pre + base] = (m, base, [pre + n for n in names])
    return out


@torch.no_grad()
def plain_state_dict(model: nn.Module, tensor: Optional[int] = None) -> dict:
    """The state dict of the plain network at the model's current point (each layer's own point
    when layerwise): every subspace parameter combined under its plain name (``weight``), the extra
    endpoints (``weight1``, ...) dropped, buffers (BatchNorm statistics) as they are. It loads
    strictly into the same model built with plain layers (``StandardConv``/``StandardBN``, or the
    user's model before :func:`subspace`). ``tensor=i`` takes tensor i of every parameter instead
    (a curve's control point is no point of the curve: this is how a plane plot reaches it).
    """
    model = unwrap(model)
    keys = _endpoint_keys(model)
    extra = {k for _, _, names in keys.values() for k in names[1:]}
    own = model.state_dict()
    out = {}
    for k, v in own.items():
        if k in extra:
            continue
        if k in keys:
            layer, base, names = keys[k]
            v = layer.combined(base) if tensor is None else own[names[tensor]]
        out[k] = v.detach().clone()
    return out


def plain_keys(model: nn.Module) -> dict:
    """``{key: shape}`` of :func:`plain_state_dict` (without computing it)."""
    keys = _endpoint_keys(unwrap(model))
    extra = {k for _, _, names in keys.values() for k in names[1:]}
    return {k: tuple(v.shape) for k, v in unwrap(model).state_dict().items() if k not in extra}


@torch.no_grad()
def load_endpoints(model: nn.Module, state_dicts: Sequence[dict], sources: Sequence[str]) -> None:
    """Load plain networks' state dicts into the endpoints of the subspace ``model``.

    Network i goes into tensor i (``weight`` for i = 0, ``weight{i}`` otherwise): the two ends
    alpha = 0 and 1 of a line or curve, the vertices of a simplex. The inner tensors of a curve
    (Bezier control points, polychain bends) start on the straight line between the two ends at
    their own position (Garipov et al. 2018's initialisation); buffers (BatchNorm statistics, which
    evaluation recomputes at each point anyway) and parameters outside subspace layers come from
    the first network. A state dict of another architecture raises UserError naming ``sources[i]``.
    """
    model = unwrap(model)
    coefficients = subspace_coefficients(model)
    if coefficients is None:
        raise UserError("the model has no subspace layers to load endpoints into; pass a LinesConv, CurvesConv, BezierConv<k>, "
                        "PolyChainConv<k> or SimplexConv<n> --conv-type")
    k = coefficients.num_endpoints
    if len(state_dicts) != k:
        raise UserError(f"a {coefficients.kind} of {coefficients.num_tensors} tensors has {k} endpoints, but {len(state_dicts)} "
                        f"networks were given; pass {k} checkpoints to --init-endpoints")
    expected = plain_keys(model)
    sds = [strip_module_prefix(sd) for sd in state_dicts]
    for sd, src in zip(sds, sources):
        problem = state_mismatch(expected, sd)
        if problem:
            raise UserError(f"checkpoint {src} does not fit the model as an endpoint: {problem}; --init-endpoints takes standard "
                            f"networks (StandardConv) of this run's architecture: pass the --model, --model-name and --width-mult they were trained with")
    keys = _endpoint_keys(model)
    new = {}
    for key, (_, _, names) in keys.items():
        ends = [sd[key] for sd in sds]
        for i, full in enumerate(names):
            new[full] = ends[i] if i < k else torch.lerp(ends[0].float(), ends[1].float(), coefficients.inner_position(i)).to(ends[0].dtype)
    extra = {n for _, _, names in keys.values() for n in names}
    for key, v in model.state_dict().items():
        if key not in extra:
            new[key] = sds[0].get(key, v)  # num_batches_tracked may be missing in old checkpoints
    model.load_state_dict(new, strict=True)


def fix_endpoints(model: nn.Module) -> int:
    """Keep the endpoints out of training (``requires_grad=False``: no gradient, no optimizer
    update, no weight decay); the inner tensors train. Returns how many tensors were fixed."""
    coefficients = subspace_coefficients(unwrap(model))
    count = 0
    for layer in subspace_layers(unwrap(model)):
        for names in layer._endpoint_params.values():
            for n in names[: coefficients.num_endpoints]:
                getattr(layer, n).requires_grad_(False)
                count += 1
    return count
