"""Coefficient functions: how a point of a subspace weighs the endpoint tensors.

A point of the subspace is ``w = sum_i c_i * w_i`` (paper, Section 3). Lines, curves and simplexes
differ only in the coefficient function ``c(point)`` and in how Algorithm 1 draws a point; each is
a small object here, shared by every layer type (conv, BatchNorm, linear). Mode connectivity's
curves (Garipov et al. 2018) are two more: Bezier curves of any degree and polygonal chains.

Tensor order, for every one-dimensional kind: the endpoints first (``weight`` at alpha = 0,
``weight1`` at alpha = 1, the original's curve layout), then the inner tensors ``weight2, ...``
(control points or bends) in order along the curve.
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

    @property
    def num_endpoints(self) -> int:
        """How many tensors are endpoints (what ``--init-endpoints`` loads): 2 for the
        one-dimensional kinds, all n vertices for a simplex. The others are inner tensors."""
        return 2

    def inner_position(self, i: int) -> float:
        """Where inner tensor ``i`` (``i >= num_endpoints``) starts on the straight line between
        the two endpoints, as a fraction from endpoint 0 (Garipov et al. 2018's initialisation)."""
        raise ValueError(f"{self.kind} has no inner tensor {i}")

    def layer_name(self, family: str) -> str:
        """The name of this kind's layer type of ``family`` (``LinesConv``, ``SimplexBN3``, ...)."""
        raise NotImplementedError

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
            raise ValueError(f"a {self.kind} has endpoints 0 and 1, not {i}")
        return (float(i),)

    def inner_position(self, i: int) -> float:
        # Inner tensors 2..k sit at 1/k, ..., (k-1)/k of the way (k + 1 tensors in all): Garipov's
        # init_linear for Bezier control points and polychain bends alike.
        if not 2 <= i < self.num_tensors:
            raise ValueError(f"a {self.kind} of {self.num_tensors} tensors has inner tensors 2..{self.num_tensors - 1}, not {i}")
        return (i - 1) / (self.num_tensors - 1)

    def layer_name(self, family: str) -> str:
        return f"Lines{family}"


class CurveCoefficients(LineCoefficients):
    """A quadratic Bezier curve with endpoints ``weight``, ``weight1`` and control point ``weight2``.

    ``c = ((1 - alpha)^2, alpha^2, 2 alpha (1 - alpha))`` for ``(weight, weight1, weight2)``.
    """

    kind = "curve"
    num_tensors = 3

    def __call__(self, point: Sequence[float]) -> tuple:
        (alpha,) = point
        return ((1.0 - alpha) ** 2, alpha**2, 2.0 * alpha * (1.0 - alpha))

    def layer_name(self, family: str) -> str:
        return f"Curves{family}"


class _OrderedCurve(LineCoefficients):
    """Base of the mode-connectivity curves: one kind per order ``k >= 1`` (a Bezier curve's degree,
    a polygonal chain's number of bends) of ``k + extra`` tensors; layer types ``<prefix><family><k>``."""

    prefix: str
    extra: int
    order_name: str

    def __init__(self, k: int):
        if k < 1:
            raise ValueError(f"{self.prefix}: {self.order_name} must be at least 1, got {k}")
        self.k = k
        self.num_tensors = k + self.extra

    def layer_name(self, family: str) -> str:
        return f"{self.prefix}{family}{self.k}"


class BezierCoefficients(_OrderedCurve):
    """A Bezier curve of degree ``k`` (Garipov et al. 2018, Eq. 4 for k = 2): ``k + 1`` tensors,
    the endpoints ``weight`` (alpha = 0) and ``weight1`` (alpha = 1), then the control points
    ``weight2..weight{k}``; the coefficients are the Bernstein polynomials
    ``B_{j,k}(alpha) = C(k, j) alpha^j (1 - alpha)^(k - j)``, control point j (1 <= j < k) in
    ``weight{j + 1}``. Degree 2 is the original's curve (CurvesConv), degree 1 a line.
    """

    kind, prefix, extra, order_name = "bezier", "Bezier", 1, "the degree"

    def __call__(self, point: Sequence[float]) -> tuple:
        (alpha,) = point
        k = self.k
        b = [math.comb(k, j) * alpha**j * (1.0 - alpha) ** (k - j) for j in range(k + 1)]
        return (b[0], b[k], *b[1:k])


class PolyChainCoefficients(_OrderedCurve):
    """A polygonal chain with ``k`` bends (Garipov et al. 2018): piecewise linear through
    ``weight`` (alpha = 0), the bends ``weight2..weight{k + 1}`` (bend j at alpha = j / (k + 1))
    and ``weight1`` (alpha = 1)."""

    kind, prefix, extra, order_name = "polychain", "PolyChain", 2, "the number of bends"

    def __call__(self, point: Sequence[float]) -> tuple:
        (alpha,) = point
        segments = self.k + 1
        s = alpha * segments
        seg = min(max(int(math.floor(s)), 0), segments - 1)  # alpha = 1 ends the last segment
        u = s - seg
        # Nodes along the chain: weight, weight2, ..., weight{k+1}, weight1.
        order = (0, *range(2, self.num_tensors), 1)
        c = [0.0] * self.num_tensors
        c[order[seg]] += 1.0 - u
        c[order[seg + 1]] += u
        return tuple(c)


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

    @property
    def num_endpoints(self) -> int:
        return self.num_tensors

    def layer_name(self, family: str) -> str:
        return f"Simplex{family}{self.num_tensors}"

    def from_barycentric(self, coords: Sequence[float]) -> Point:
        """The point ``(t1, ..., t{n-1})`` of barycentric coordinates ``(c_0, ..., c_{n-1})``.

        Coordinates may be negative (a point of the simplex's affine hull, e.g. a plane plot's
        grid): the coefficient function is affine, so ``c(point)`` gives them back as long as they
        sum to 1.
        """
        if len(coords) != self.num_tensors:
            raise ValueError(f"a simplex of {self.num_tensors} takes {self.num_tensors} barycentric coordinates, got {len(coords)}")
        return tuple(float(c) for c in coords[1:])


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
