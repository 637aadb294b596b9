"""Coefficient functions: how a point of a subspace weighs the endpoint tensors.

A point of the subspace is ``w = sum_i c_i * w_i`` (paper, Section 3). Lines, curves and simplexes
differ only in the coefficient function ``c(point)`` and in how Algorithm 1 draws a point; each is
a small object here, shared by every layer type (conv, BatchNorm, linear).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Sequence

import torch

Point = tuple  # a tuple of floats, one per name in ``Coefficients.point_attrs``


class Coefficients(ABC):
    """The coefficient function of one kind of subspace.

    ``point_attrs`` are the attribute names a layer carries for its point (the original's names:
    ``alpha`` for lines and curves, ``t1..t{n-1}`` for simplexes).
    """

    kind: str
    num_tensors: int
    point_attrs: tuple

    @abstractmethod
    def __call__(self, point: Sequence[float]) -> tuple:
        """The coefficients ``(c_0, ..., c_{k-1})`` of the tensors ``weight, weight1, ...``."""

    @abstractmethod
    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """Draw ``count`` points as a ``(count, len(point_attrs))`` float64 CPU tensor (Algorithm 1)."""

    @abstractmethod
    def centre(self) -> Point:
        """The point evaluated during training: the midpoint of a line/curve, the simplex centre."""

    def vertex(self, i: int) -> Point:
        """The point whose coefficients select tensor ``i`` alone."""
        raise NotImplementedError(f"{self.kind} has no vertex {i}")

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.num_tensors == other.num_tensors  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.num_tensors))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_tensors={self.num_tensors})"


class LineCoefficients(Coefficients):
    """A line between two endpoints: ``c = (1 - alpha, alpha)``, alpha ~ U(0, 1) in training."""

    kind = "line"
    num_tensors = 2
    point_attrs = ("alpha",)

    def __call__(self, point: Sequence[float]) -> tuple:
        (alpha,) = point
        return (1.0 - alpha, alpha)

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(count, 1, generator=generator, dtype=torch.float64)

    def centre(self) -> Point:
        return (0.5,)

    def vertex(self, i: int) -> Point:
        if i not in (0, 1):
            raise ValueError(f"a line has endpoints 0 and 1, not {i}")
        return (float(i),)


class CurveCoefficients(LineCoefficients):
    """A quadratic Bezier curve with endpoints ``weight``, ``weight1`` and control point ``weight2``.

    ``c = ((1 - alpha)^2, alpha^2, 2 alpha (1 - alpha))`` for ``(weight, weight1, weight2)``.
    """

    kind = "curve"
    num_tensors = 3

    def __call__(self, point: Sequence[float]) -> tuple:
        (alpha,) = point
        return ((1.0 - alpha) ** 2, alpha**2, 2.0 * alpha * (1.0 - alpha))


class SimplexCoefficients(Coefficients):
    """A simplex with ``n`` vertices: ``c = (1 - t_1 - ... - t_{n-1}, t_1, ..., t_{n-1})``.

    Training draws a uniform point of the simplex: ``Z ~ Exponential(1)^n`` normalised to sum 1.
    """

    kind = "simplex"

    def __init__(self, n: int):
        if n < 2:
            raise ValueError(f"a simplex needs at least 2 vertices, got {n}")
        self.num_tensors = n
        self.point_attrs = tuple(f"t{i}" for i in range(1, n))

    def __call__(self, point: Sequence[float]) -> tuple:
        return (1.0 - math.fsum(point), *point)

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.empty(count, self.num_tensors, dtype=torch.float64).exponential_(1.0, generator=generator)
        z = z / z.sum(dim=1, keepdim=True)
        return z[:, 1:]

    def centre(self) -> Point:
        return tuple(1.0 / self.num_tensors for _ in self.point_attrs)

    def vertex(self, i: int) -> Point:
        if not 0 <= i < self.num_tensors:
            raise ValueError(f"a simplex of {self.num_tensors} has vertices 0..{self.num_tensors - 1}, not {i}")
        return tuple(1.0 if k == i else 0.0 for k in range(1, self.num_tensors))


def combine(tensors: Sequence[torch.Tensor], coeffs: "Sequence[float] | torch.Tensor") -> torch.Tensor:
    """``sum_i coeffs[i] * tensors[i]`` in as few kernels as possible (one lerp for two tensors).

    ``coeffs`` is a sequence of floats (eager mode: no kernels for the coefficients) or a 1-d
    tensor (what compiled code reads: a tensor keeps ``torch.compile`` from specialising on the
    point). Two tensors with a tensor of coefficients are always a line ``c = (1 - a, a)`` (lines
    and simplexes of 2), so they take one ``lerp`` too.
    """
    if isinstance(coeffs, torch.Tensor):
        if len(tensors) == 2:
            return torch.lerp(tensors[0], tensors[1], coeffs[1])
        out = tensors[0] * coeffs[0]
        for i in range(1, len(tensors)):
            out = torch.addcmul(out, tensors[i], coeffs[i])
        return out
    if len(tensors) == 2 and abs(coeffs[0] + coeffs[1] - 1.0) < 1e-12:
        return torch.lerp(tensors[0], tensors[1], coeffs[1])
    out = tensors[0] * coeffs[0]
    for t, c in zip(tensors[1:], coeffs[1:]):
        out = out.add(t, alpha=c)
    return out
