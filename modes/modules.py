"""Subspace layers: conv, BatchNorm and linear layers that hold several endpoint tensors.

One mechanism serves lines, curves and simplexes (paper, Section 3): a layer registers its extra
tensors ``weight1, weight2, ...`` (and ``bias1, ...``) in a loop, keeping the plain layer's
``weight``/``bias`` as the first endpoint, so the original code's checkpoints load by name. Its
forward pass uses ``get_weight()``, the point ``w = sum_i c_i(point) * w_i`` given by the layer's
:class:`~modes.coefficients.Coefficients` object. The point lives in the original's attributes
(``alpha`` for lines and curves, ``t1..t{n-1}`` for simplexes); BatchNorm running statistics are
shared by all endpoints.

Layer types are looked up by name (:func:`get_layer_type`): ``StandardConv``, ``LinesConv``,
``CurvesConv``, ``SimplexConv<n>`` for any n >= 2, and the same for ``BN`` and ``Linear``.
"""
from __future__ import annotations

import functools
import math
import re
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.errors import UserError

from .coefficients import (
    Coefficients,
    CurveCoefficients,
    LineCoefficients,
    SimplexCoefficients,
    combine,
)

StandardConv = nn.Conv2d
StandardBN = nn.BatchNorm2d
StandardLinear = nn.Linear


class SubspaceLayer:
    """Mixin for every subspace layer: the endpoint tensors and the point that weighs them.

    Subclasses set ``coefficients`` (a :class:`Coefficients`) and call :meth:`_add_endpoints`
    after the plain layer's ``__init__``.

    The point lives in the original's float attributes (``alpha``, ``t1..``: the API, read and
    set as before). Setting it also stores its coefficients ``c(point)``, which the forward pass
    reads, twice: as Python floats (``_cvals``, what eager mode uses: no extra kernels) and as a
    small tensor on the layer's device (``_coeffs``, what ``torch.compile`` traces: a tensor, not
    a constant, so a new point does not recompile). :func:`modes.set_point` sets a whole model
    with one coefficient tensor (one host-to-device copy). Like the floats they mirror, these are
    plain attributes, not buffers: not module state (not in the state dict, untouched by code
    that saves or restores buffers); ``_apply`` keeps ``_coeffs`` on the layer's device and
    dtype. Setting a point replaces the tensor instead of writing into it, so a graph that saved
    the old coefficients (``--num-samples`` > 1) keeps its own.
    """

    coefficients: Coefficients
    _endpoint_params: dict  # "weight" -> ("weight", "weight1", ...)

    @property
    def num_tensors(self) -> int:
        """How many tensors each parameter has (2 for a line, 3 for a curve, n for a simplex)."""
        return self.coefficients.num_tensors

    def _add_endpoints(self, names: Sequence[str], init: Callable[[str, torch.Tensor], None]) -> None:
        self._endpoint_params = {}
        for name in names:
            base = getattr(self, name)
            if base is None:
                continue
            for i in range(1, self.num_tensors):
                p = nn.Parameter(torch.empty_like(base))
                init(name, p)
                self.register_parameter(f"{name}{i}", p)
            self._endpoint_params[name] = (name, *(f"{name}{i}" for i in range(1, self.num_tensors)))
        self.__dict__["_coeffs"] = torch.empty(self.num_tensors)
        self.set_point(self.coefficients.centre())

    def endpoints(self, name: str = "weight") -> list:
        """The tensors ``[name, name1, ...]`` of one parameter, in coefficient order."""
        return [getattr(self, n) for n in self._endpoint_params[name]]

    @property
    def point(self) -> tuple:
        """The current point, read from the original's attributes (``alpha`` or ``t1..``)."""
        return tuple(getattr(self, a) for a in self.coefficients.point_attrs)

    def _check_point(self, point: Sequence[float]) -> None:
        attrs = self.coefficients.point_attrs
        if len(point) != len(attrs):
            raise ValueError(f"{type(self).__name__} takes a point of {len(attrs)} values, got {len(point)}")

    def set_point(self, point: Sequence[float]) -> None:
        """Set the point this layer computes with (``alpha``, or ``t1..t{n-1}``).

        To set many layers, :func:`modes.set_point` is faster (one tensor for all of them).
        """
        self._check_point(point)
        point = tuple(map(float, point))
        cvals = tuple(self.coefficients(point))
        old = self._coeffs
        coeffs = torch.tensor(cvals, dtype=old.dtype).to(old.device)
        self.__dict__.update(zip(self.coefficients.point_attrs, point), _cvals=cvals, _coeffs=coeffs)

    def _apply(self, fn, recurse: bool = True):
        # .to(), .cuda(), .half() ...: the coefficients follow the parameters' device and dtype.
        super()._apply(fn, recurse)
        like = fn(self._coeffs)
        self.__dict__["_coeffs"] = torch.tensor(self._cvals, dtype=like.dtype).to(like.device)
        return self

    def __setattr__(self, name: str, value) -> None:
        # The original sets the point with setattr(m, "alpha", a): keep the coefficients in step.
        coefficients = getattr(type(self), "coefficients", None)
        if coefficients is not None and name in coefficients.point_attrs and "_coeffs" in self.__dict__:
            point = [value if a == name else getattr(self, a) for a in self.coefficients.point_attrs]
            self.set_point(point)
        else:
            super().__setattr__(name, value)

    def combined(self, name: str) -> torch.Tensor | None:
        """The parameter ``name`` at the current point: ``sum_i c_i * name_i``."""
        if name not in self._endpoint_params:
            return None
        tensors = self.endpoints(name)
        if not torch.compiler.is_compiling():
            return combine(tensors, self._cvals)
        coeffs = self._coeffs
        if coeffs.device != tensors[0].device:  # a DataParallel replica shares the original's
            coeffs = coeffs.to(tensors[0].device)
        return combine(tensors, coeffs)

    def initialize(self, initialize_fn: Callable[[torch.Tensor], object]) -> None:
        """Initialise the extra weight endpoints (``weight1, ...``) with ``initialize_fn``, as the
        original's ``initialize``; the builder initialises ``weight`` itself."""
        for n in self._endpoint_params["weight"][1:]:
            initialize_fn(getattr(self, n))


def _default_init(layer: nn.Module, name: str, p: torch.Tensor) -> None:
    """Each endpoint gets the plain layer's own default initialisation, drawn independently."""
    if name == "weight":
        nn.init.kaiming_uniform_(p, a=math.sqrt(5))
    else:
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(layer.weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        nn.init.uniform_(p, -bound, bound)


class SubspaceConv(SubspaceLayer, nn.Conv2d):
    """A ``Conv2d`` whose forward pass uses the weight at the current point (``get_weight()``)."""

    def __init__(self, *args, **kwargs):
        nn.Conv2d.__init__(self, *args, **kwargs)
        self._add_endpoints(("weight", "bias"), functools.partial(_default_init, self))

    def get_weight(self) -> torch.Tensor:
        """The conv weight at the current point."""
        return self.combined("weight")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.get_weight(), self.combined("bias"))


class SubspaceLinear(SubspaceLayer, nn.Linear):
    """A ``Linear`` twin of :class:`SubspaceConv`, for models with linear heads."""

    def __init__(self, *args, **kwargs):
        nn.Linear.__init__(self, *args, **kwargs)
        self._add_endpoints(("weight", "bias"), functools.partial(_default_init, self))

    def get_weight(self) -> torch.Tensor:
        """The linear weight at the current point."""
        return self.combined("weight")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.get_weight(), self.combined("bias"))


def _bn_init(name: str, p: torch.Tensor) -> None:
    # Every BatchNorm endpoint starts as the plain layer does: weight 1, bias 0.
    with torch.no_grad():
        p.fill_(1.0 if name == "weight" else 0.0)


class SubspaceBN(SubspaceLayer, nn.BatchNorm2d):
    """A ``BatchNorm2d`` whose affine weight and bias are points of the subspace.

    The running statistics are shared by all endpoints (as in the original): they fit one point
    only after :func:`utils.bn.update_bn` recomputes them there.
    """

    def __init__(self, *args, **kwargs):
        nn.BatchNorm2d.__init__(self, *args, **kwargs)
        if not self.affine:
            raise ValueError("a subspace BatchNorm needs affine=True: its endpoints are the affine parameters")
        self._add_endpoints(("weight", "bias"), _bn_init)

    def get_weight(self) -> tuple:
        """The affine ``(weight, bias)`` at the current point."""
        return self.combined("weight"), self.combined("bias")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        # The rest follows nn.BatchNorm2d.forward, with the combined affine parameters.
        if self.momentum is None:
            factor = 0.0
        else:
            factor = self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        w, b = self.get_weight()
        return F.batch_norm(
            input,
            self.running_mean if track else None,
            self.running_var if track else None,
            w,
            b,
            bn_training,
            factor,
            self.eps,
        )


# --- named layer types -------------------------------------------------------------------------
# Lines and curves as in the original; simplexes for any n through one cached subclass per n.


class LinesConv(SubspaceConv):
    coefficients = LineCoefficients()


class LinesBN(SubspaceBN):
    coefficients = LineCoefficients()


class LinesLinear(SubspaceLinear):
    coefficients = LineCoefficients()


class CurvesConv(SubspaceConv):
    coefficients = CurveCoefficients()


class CurvesBN(SubspaceBN):
    coefficients = CurveCoefficients()


class CurvesLinear(SubspaceLinear):
    coefficients = CurveCoefficients()


class SimplexConv(SubspaceConv):
    """Base of ``SimplexConv<n>``; use :func:`get_layer_type` (``SimplexConv3`` etc.)."""


class SimplexBN(SubspaceBN):
    """Base of ``SimplexBN<n>``; use :func:`get_layer_type` (``SimplexBN3`` etc.)."""


class SimplexLinear(SubspaceLinear):
    """Base of ``SimplexLinear<n>``; use :func:`get_layer_type` (``SimplexLinear3`` etc.)."""


_FIXED_TYPES = {
    "StandardConv": StandardConv,
    "StandardBN": StandardBN,
    "StandardLinear": StandardLinear,
    "LinesConv": LinesConv,
    "LinesBN": LinesBN,
    "LinesLinear": LinesLinear,
    "CurvesConv": CurvesConv,
    "CurvesBN": CurvesBN,
    "CurvesLinear": CurvesLinear,
}
_SIMPLEX_BASES = {"Conv": SimplexConv, "BN": SimplexBN, "Linear": SimplexLinear}
_SIMPLEX_RE = re.compile(r"^Simplex(Conv|BN|Linear)(\d+)$")


@functools.lru_cache(maxsize=None)
def _simplex_type(family: str, n: int) -> type:
    base = _SIMPLEX_BASES[family]
    return type(f"Simplex{family}{n}", (base,), {"coefficients": SimplexCoefficients(n), "__module__": __name__})


def __getattr__(name: str) -> type:
    # Lets pickle (torch.save of a whole model, spawned workers) find the generated SimplexConv<n>.
    m = _SIMPLEX_RE.match(name)
    if m and int(m.group(2)) >= 2:
        return _simplex_type(m.group(1), int(m.group(2)))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def layer_type_names(family: str | None = None) -> list:
    """The valid layer type names (``family`` one of Conv, BN, Linear, or all)."""
    names = [k for k in _FIXED_TYPES if family is None or k.endswith(family)]
    fams = [family] if family else list(_SIMPLEX_BASES)
    return names + [f"Simplex{f}<n> (n >= 2)" for f in fams]


def get_layer_type(name: str, family: str | None = None) -> type:
    """Look up a layer type by name, e.g. ``LinesConv`` or ``SimplexBN5``.

    Raises :class:`UserError` with the valid names when ``name`` is unknown or of another family.
    """
    cls = _FIXED_TYPES.get(name)
    if cls is None:
        m = _SIMPLEX_RE.match(name)
        if m and int(m.group(2)) >= 2:
            cls = _simplex_type(m.group(1), int(m.group(2)))
    if cls is None or (family is not None and _family_of(name) != family):
        kind = {"Conv": "conv type", "BN": "BatchNorm type", "Linear": "linear type"}.get(family or "", "layer type")
        flag = {"Conv": " (--conv-type)", "BN": " (--bn-type)"}.get(family or "", "")
        raise UserError(f"unknown {kind} {name!r}{flag}; choose one of: {', '.join(layer_type_names(family))}")
    return cls


def _family_of(name: str) -> str:
    for fam in ("Conv", "BN", "Linear"):
        if name.endswith(fam) or re.match(rf"^Simplex{fam}\d+$", name):
            return fam
    return ""


def coefficients_of(layer_type: type) -> Coefficients | None:
    """The coefficient function of a layer type; None for the standard layers."""
    return getattr(layer_type, "coefficients", None) if issubclass(layer_type, SubspaceLayer) else None


def linear_type_for(conv_type: str) -> str:
    """The linear layer type that matches a conv type (``LinesConv`` -> ``LinesLinear``)."""
    m = _SIMPLEX_RE.match(conv_type)
    if m:
        return f"SimplexLinear{m.group(2)}"
    return conv_type[: -len("Conv")] + "Linear" if conv_type.endswith("Conv") else conv_type
