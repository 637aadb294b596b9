"""Model-level helpers: find subspace layers, set or draw points, Eq. 3, endpoint statistics."""
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


def _flat(convs: Sequence, i: int) -> torch.Tensor:
    return torch.cat([m.endpoints("weight")[i].reshape(-1) for m in convs])


def cosine_regulariser(convs: Sequence, i: int, j: int) -> torch.Tensor:
    """Eq. 3: ``(sum <w_i, w_j>)^2 / (sum |w_i|^2 * sum |w_j|^2)`` over all conv layers together.

    The endpoints are concatenated first, so the whole term is a handful of fused kernels.
    """
    wi, wj = _flat(convs, i), _flat(convs, j)
    return torch.dot(wi, wj).pow(2) / (torch.dot(wi, wi) * torch.dot(wj, wj))


def conv_layers(model: nn.Module) -> list:
    """The subspace conv layers (those Eq. 3 and the endpoint statistics run over): the subspace
    layers that are convolutions of any dimension (a model made by :func:`subspaces.modes.subspace` too)."""
    return [m for m in model.modules() if isinstance(m, SubspaceLayer) and isinstance(m, _ConvNd)]


@torch.no_grad()
def endpoint_stats(model: nn.Module) -> tuple:
    """Mean pairwise squared cosine similarity and L2 distance between endpoint conv weights.

    Averaged over all pairs of tensors (one pair for a line; for a curve and a simplex every pair).
    Returns ``(cossim, l2)``; ``(0.0, 0.0)`` for a model without subspace conv layers.
    """
    convs = conv_layers(model)
    if not convs:
        return 0.0, 0.0
    k = convs[0].num_tensors
    flat = [_flat(convs, i) for i in range(k)]
    pairs = list(itertools.combinations(range(k), 2))
    cos = sum(torch.dot(flat[i], flat[j]) ** 2 / (flat[i].dot(flat[i]) * flat[j].dot(flat[j])) for i, j in pairs)
    sq = sum((flat[i] - flat[j]).pow(2).sum() for i, j in pairs)
    return float(cos / len(pairs)), float((sq / len(pairs)).sqrt())
