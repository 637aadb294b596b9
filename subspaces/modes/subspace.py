"""Model-level helpers: find subspace layers, set or draw points, Eq. 3 and the tensors it uses, endpoint statistics."""
from __future__ import annotations

import itertools
from typing import Iterable, Sequence

import torch
import torch.nn as nn
from torch.nn.modules.conv import _ConvNd

from .coefficients import Coefficients
from .modules import SubspaceLayer


def subspace_layers(model: nn.Module) -> list:
    """Every subspace layer of ``model``, in module order (found by their own base class)."""
    return [m for m in model.modules() if isinstance(m, SubspaceLayer)]


def subspace_coefficients(model: nn.Module) -> Coefficients | None:
    """The model's coefficient function, or None for a standard model.

    Raises ValueError when layers of different subspace kinds are mixed.
    """
    kinds = {m.coefficients for m in subspace_layers(model)}
    if len(kinds) > 1:
        raise ValueError(f"the model mixes subspace kinds: {sorted(map(repr, kinds))}")
    return next(iter(kinds), None)


def set_point(layers: Iterable | nn.Module, point: Sequence[float] | float) -> None:
    """Set one point on every subspace layer (a model or a list of its layers): ``alpha`` (a
    number or ``(alpha,)``) for a line or curve, ``(t_1, ..., t_{n-1})`` for a simplex.

    The coefficients are computed once and reach the device in one copy, shared by all layers.
    """
    if isinstance(point, (int, float)):
        point = (float(point),)
    if isinstance(layers, nn.Module):
        layers = subspace_layers(layers)
    _assign(list(layers), [tuple(point)], shared=True)


def set_points(layers: Sequence, points: torch.Tensor) -> None:
    """Set one point per layer (the layerwise variant): ``points`` has one row per layer."""
    if len(points) != len(layers):
        raise ValueError(f"{len(points)} points for {len(layers)} layers")
    _assign(list(layers), [tuple(p) for p in points.tolist()], shared=False)


def _assign(layers: list, points: list, shared: bool) -> None:
    """Set ``points`` (one, or one per layer) through each layer's ``set_point``, with one
    coefficient table per group of layers of the same device, dtype and coefficient function.

    No host-device sync: the table is built on the host and copied once per group, without
    blocking, from pinned memory when it goes to a GPU (the caching host allocator keeps that
    memory until the copy is done).
    """
    groups: dict = {}
    for i, m in enumerate(layers):
        c = m._coeffs
        groups.setdefault((c.device, c.dtype, m.coefficients), []).append(i)
    for (device, dtype, coefficients), idx in groups.items():
        pts = [tuple(map(float, points[0 if shared else i])) for i in ([idx[0]] if shared else idx)]
        for p in pts:
            layers[idx[0]]._check_point(p)  # raises with the layer type in the message
        table = torch.tensor([tuple(coefficients(p)) for p in pts], dtype=dtype)
        if device.type == "cuda":
            table = table.pin_memory().to(device, non_blocking=True)
        elif device.type != "cpu":
            table = table.to(device)
        rows = table.unbind(0)
        for k, i in enumerate(idx):
            layers[i].set_point(pts[0 if shared else k], rows[0 if shared else k])


def sample_and_set(layers: Sequence, coefficients: Coefficients, generator: torch.Generator, layerwise: bool) -> tuple:
    """Algorithm 1's draw: one point for the whole net, or one per layer when ``layerwise``.

    Returns the point drawn for the whole net (the first layer's when layerwise).
    """
    points = coefficients.sample(len(layers) if layerwise else 1, generator)
    if layerwise:
        set_points(layers, points)
    else:
        set_point(layers, points[0].tolist())
    return tuple(points[0].tolist())


def endpoint_pair(num_tensors: int, generator: torch.Generator) -> tuple:
    """Two distinct tensor indices drawn uniformly (for curves among all three tensors)."""
    i, j = torch.randperm(num_tensors, generator=generator)[:2].tolist()
    return i, j


def conv_layers(model: nn.Module) -> list:
    """The subspace conv layers: the subspace layers that are convolutions of any dimension (a
    model made by :func:`subspaces.modes.subspace` too)."""
    return [m for m in model.modules() if isinstance(m, SubspaceLayer) and isinstance(m, _ConvNd)]


# MultiheadAttention's input projections: one packed matrix, or three when kdim/vdim differ.
_ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


def regularised_tensors(model: nn.Module) -> list:
    """The tensors Eq. 3 and :func:`endpoint_stats` run over, as ``(layer, parameter name)`` pairs
    in module order.

    - A model with subspace convolutions: their ``weight`` tensors only (the paper's Eq. 3, over
      all conv layers; biases, BatchNorm and linear heads are left out, so the built-in models'
      results do not change).
    - A model without convolutions (an MLP or a transformer made by :func:`subspaces.modes.subspace`):
      the weight matrices of its subspace linear layers (attention's ``out_proj`` included) and
      of its attention's input projections (``in_proj_weight``, or ``q/k/v_proj_weight``).
      Biases, norms and embeddings are left out, as the paper leaves out BatchNorm.

    Empty when the model has none of them (Eq. 3 then has nothing to run over).
    """
    convs = conv_layers(model)
    if convs:
        return [(m, "weight") for m in convs]
    out = []
    for m in model.modules():
        if isinstance(m, SubspaceLayer) and isinstance(m, nn.Linear):
            out.append((m, "weight"))
        elif isinstance(m, SubspaceLayer) and isinstance(m, nn.MultiheadAttention):
            out += [(m, n) for n in _ATTENTION_WEIGHTS if n in m._endpoint_params]
    return out


def _flat(tensors: Sequence, i: int) -> torch.Tensor:
    """Tensor ``i`` of every entry, flattened and concatenated; an entry is ``(layer, name)`` or a
    layer (its ``weight``)."""
    parts = []
    for item in tensors:
        layer, name = item if isinstance(item, tuple) else (item, "weight")
        parts.append(layer.endpoints(name)[i].reshape(-1))
    if not parts:
        raise ValueError("Eq. 3 needs at least one subspace tensor (see regularised_tensors)")
    return torch.cat(parts)


def cosine_regulariser(tensors: Sequence, i: int, j: int) -> torch.Tensor:
    """Eq. 3: ``(sum <w_i, w_j>)^2 / (sum |w_i|^2 * sum |w_j|^2)`` over all ``tensors`` together
    (:func:`regularised_tensors`: a conv net's conv weights; a list of conv layers works too).

    The endpoints are concatenated first, so the whole term is a handful of fused kernels.
    """
    wi, wj = _flat(tensors, i), _flat(tensors, j)
    return torch.dot(wi, wj).pow(2) / (torch.dot(wi, wi) * torch.dot(wj, wj))


@torch.no_grad()
def endpoint_stats(model: nn.Module) -> tuple:
    """Mean pairwise squared cosine similarity and L2 distance between the endpoints' weights: the
    tensors Eq. 3 uses (:func:`regularised_tensors`, the conv weights of a conv net).

    Averaged over all pairs of tensors (one pair for a line; for a curve and a simplex every pair).
    Returns ``(cossim, l2)``; ``(0.0, 0.0)`` for a model without such tensors.
    """
    tensors = regularised_tensors(model)
    if not tensors:
        return 0.0, 0.0
    k = tensors[0][0].num_tensors
    flat = [_flat(tensors, i) for i in range(k)]
    pairs = list(itertools.combinations(range(k), 2))
    cos = sum(torch.dot(flat[i], flat[j]) ** 2 / (flat[i].dot(flat[i]) * flat[j].dot(flat[j])) for i, j in pairs)
    sq = sum((flat[i] - flat[j]).pow(2).sum() for i, j in pairs)
    return float(cos / len(pairs)), float((sq / len(pairs)).sqrt())


@torch.no_grad()
def path_distances(model: nn.Module, points: Sequence[Sequence[float]]) -> list:
    """The distances ``|w(p_{i+1}) - w(p_i)|`` between consecutive points of the subspace, ``w(p)`` the
    vector of all its parameters at ``p`` (dnn-mode-connectivity's ``dl``: a curve's length is their
    sum). The weights are linear in the coefficients, ``w(p) = sum_k c_k(p) W_k``, so each distance
    is ``sqrt(d^T G d)`` with ``d = c(p_{i+1}) - c(p_i)`` and ``G`` the Gram matrix of the tensors
    ``W_k`` (float64, one pass over the weights, no copy of the network per point)."""
    coefficients = subspace_coefficients(model)
    k = coefficients.num_tensors
    gram = torch.zeros(k, k, dtype=torch.float64)
    for layer in subspace_layers(model):
        for name in layer._endpoint_params:
            t = torch.stack([e.detach().reshape(-1) for e in layer.endpoints(name)]).double()
            gram += (t @ t.T).cpu()
    c = torch.tensor([tuple(coefficients(tuple(p))) for p in points], dtype=torch.float64)
    d = c[1:] - c[:-1]
    return ((d @ gram) * d).sum(1).clamp_min(0).sqrt().tolist()
