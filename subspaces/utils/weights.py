"""Networks made from the weights of N trained networks of one architecture.

A network of the simplex the N networks span has weights ``w = sum_i c_i * w_i`` with ``c`` a point
of the probability simplex: the uniform average (``average_weights``), a random point drawn as the
paper draws simplex points -- ``Z ~ Exponential(1)^N`` normalised to sum 1, i.e. Dirichlet(1)
(``random_average_weights_*``) -- or ``t`` on one network and the rest shared by the others
(``swa_endpoint_ensembles``). Coefficients are given per parameter: a ``(N,)`` tensor (one point
for the whole tensor) or a ``(N, *shape)`` tensor (one point per weight element).

Every parameter is combined. In the original's models (and in every model here) the parameters are
exactly the conv weights and the BatchNorm affine parameters, the ones the original combines; the
BatchNorm running statistics are buffers, recomputed afterwards at the new weights.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

GRANULARITIES = ("global", "layerwise", "perweight")


def dirichlet(shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """Points of the probability simplex along dim 0: ``Z ~ Exponential(1)`` normalised to sum 1
    over dim 0 (a uniform draw from the simplex, Dirichlet(1)); float64 on the CPU."""
    z = torch.empty(tuple(shape), dtype=torch.float64).exponential_(1.0, generator=generator)
    return z / z.sum(dim=0, keepdim=True)


def uniform_coefficients(model: nn.Module, n: int) -> dict:
    """``1/n`` for every network, for every parameter of ``model``."""
    c = torch.full((n,), 1.0 / n, dtype=torch.float64)
    return {name: c for name, _ in model.named_parameters()}


def random_coefficients(model: nn.Module, n: int, granularity: str, generator: torch.Generator) -> dict:
    """A Dirichlet(1) point of the simplex of ``n`` networks: drawn once for the whole network
    (``global``), once per layer -- a module holding parameters, e.g. a conv, or a BatchNorm whose
    weight and bias share the point, as the original -- in module order (``layerwise``), or once per
    weight element, parameter by parameter (``perweight``)."""
    if granularity == "global":
        z = dirichlet((n,), generator)
        return {name: z for name, _ in model.named_parameters()}
    if granularity == "layerwise":
        out = {}
        for prefix, module in model.named_modules():
            own = [name for name, _ in module.named_parameters(recurse=False)]
            if own:
                z = dirichlet((n,), generator)
                out.update({f"{prefix}.{name}" if prefix else name: z for name in own})
        return out
    if granularity == "perweight":
        return {name: dirichlet((n, *p.shape), generator) for name, p in model.named_parameters()}
    raise ValueError(f"unknown granularity {granularity!r}; use one of {', '.join(GRANULARITIES)}")


@torch.no_grad()
def combine_weights(models: Sequence[nn.Module], coefficients: dict) -> dict:
    """``{name: sum_i c_i * p_i}`` for every parameter, ``c = coefficients[name]`` (``(N,)`` or
    ``(N, *shape)``), computed in the parameters' dtype on their device."""
    params = [dict(m.named_parameters()) for m in models]
    out = {}
    for name, p0 in params[0].items():
        c = coefficients[name].to(device=p0.device, dtype=p0.dtype)
        total = torch.zeros_like(p0)
        for i, ps in enumerate(params):
            total.add_(c[i] * ps[name])
        out[name] = total
    return out


@torch.no_grad()
def set_weights(model: nn.Module, weights: dict) -> None:
    """Copy ``weights`` (``{name: tensor}``, every parameter) into ``model``'s parameters."""
    for name, p in model.named_parameters():
        p.copy_(weights[name])
