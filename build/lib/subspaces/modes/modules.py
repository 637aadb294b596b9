"""Subspace layers: conv, BatchNorm and linear layers that hold several endpoint tensors.

One mechanism serves lines, curves and simplexes (paper, Section 3): a layer registers its extra
tensors ``weight1, weight2, ...`` (and ``bias1, ...``) in a loop, keeping the plain layer's
``weight``/``bias`` as the first endpoint, so the original code's checkpoints load by name. Its
forward pass uses ``get_weight()``, the point ``w = sum_i c_i(point) * w_i`` given by the layer's
:class:`~subspaces.modes.coefficients.Coefficients` object. The point lives in the original's attributes
(``alpha`` for lines and curves, ``t1..t{n-1}`` for simplexes); BatchNorm running statistics are
shared by all endpoints.

Layer types are looked up by name (:func:`get_layer_type`): ``StandardConv``, ``LinesConv``,
``CurvesConv``, ``SimplexConv<n>`` for any n >= 2, ``BezierConv<k>`` (a Bezier curve of degree k)
and ``PolyChainConv<k>`` (a polygonal chain with k bends) for k >= 1 (Garipov et al. 2018), and
the same for ``BN`` and ``Linear``. :func:`subspace_type` makes the subspace version of any other
layer class with the same mechanism (Conv1d/3d, LayerNorm, Embedding, MultiheadAttention, ...).
"""
from __future__ import annotations

import functools
import math
import re
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from subspaces.utils.errors import unknown_name
from subspaces.utils.registry import Registry

from .coefficients import (BezierCoefficients, Coefficients, CurveCoefficients, LineCoefficients,
    PolyChainCoefficients, SimplexCoefficients, combine)

StandardConv = nn.Conv2d
StandardBN = nn.BatchNorm2d
StandardLinear = nn.Linear


def _point_property(i: int) -> property:
    """The original's point attribute ``alpha``/``t{i+1}`` as a view of the layer's point."""

    def get(self) -> float:
        return self._point_state.point[i]

    def set(self, value: float) -> None:
        point = list(self._point_state.point)
        point[i] = float(value)
        self.set_point(point)

    return property(get, set, doc="A coordinate of the layer's point (the original's attribute name).")


class PointState(NamedTuple):
    """A layer's point and what its forward pass reads of it, set together by ``set_point``.

    ``cvals`` are the coefficients ``c(point)`` as Python floats (eager mode: no extra kernels);
    ``coeffs`` the same as a small tensor on the layer's device (what ``torch.compile`` traces: a
    tensor, not a constant, so a new point does not recompile).
    """

    point: tuple
    cvals: tuple
    coeffs: torch.Tensor


class SubspaceLayer:
    """Mixin for every subspace layer: the endpoint tensors and the point that weighs them.

    Subclasses set ``coefficients`` (a :class:`Coefficients`) and call :meth:`_add_endpoints`
    after the plain layer's ``__init__``.

    The point is owned by the layer and stored once, in a :class:`PointState` that only
    :meth:`set_point` replaces. The original's attributes (``alpha`` for lines and curves,
    ``t1..t{n-1}`` for simplexes) are properties over it: reading them reads the point, and
    ``setattr(m, "alpha", a)`` (the original's way) calls :meth:`set_point`. The state is a plain
    attribute, not a buffer: not in the state dict, untouched by code that saves or restores
    buffers; ``_apply`` (``.to()``, ``.double()``) moves its tensor with the parameters. A new point
    replaces the tensor instead of writing into it, so a graph that saved the old coefficients
    (``--num-samples`` > 1) keeps its own. :func:`subspaces.modes.set_point` sets a whole model with one
    coefficient tensor (one host-to-device copy) through the same method.
    """

    coefficients: Coefficients
    _endpoint_params: dict  # "weight" -> ("weight", "weight1", ...)
    _point_state: PointState

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        coefficients = cls.__dict__.get("coefficients")
        if coefficients is not None:
            for i, attr in enumerate(coefficients.point_attrs):
                setattr(cls, attr, _point_property(i))

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
        like = next(self.parameters())
        self.set_point(self.coefficients.centre(), torch.empty(0, dtype=like.dtype, device=like.device))

    def endpoints(self, name: str = "weight") -> list:
        """The tensors ``[name, name1, ...]`` of one parameter, in coefficient order."""
        return [getattr(self, n) for n in self._endpoint_params[name]]

    @property
    def point(self) -> tuple:
        """The current point (``(alpha,)``, or ``(t1, ..., t{n-1})``)."""
        return self._point_state.point

    @property
    def _cvals(self) -> tuple:
        return self._point_state.cvals

    @property
    def _coeffs(self) -> torch.Tensor:
        return self._point_state.coeffs

    def _check_point(self, point: Sequence[float]) -> None:
        attrs = self.coefficients.point_attrs
        if len(point) != len(attrs):
            raise ValueError(f"{type(self).__name__} takes a point of {len(attrs)} values, got {len(point)}")

    def set_point(self, point: Sequence[float], coeffs: "torch.Tensor | None" = None) -> None:
        """Set the point this layer computes with (``alpha``, or ``t1..t{n-1}``).

        ``coeffs``: the coefficients ``c(point)`` already on the layer's device (shared by many
        layers: :func:`subspaces.modes.set_point` passes one tensor to all); an empty tensor gives only the
        device and dtype to build them on.
        """
        self._check_point(point)
        point = tuple(map(float, point))
        cvals = tuple(self.coefficients(point))
        if coeffs is None or coeffs.numel() == 0:
            like = self._point_state.coeffs if coeffs is None else coeffs
            coeffs = torch.tensor(cvals, dtype=like.dtype).to(like.device)
        self.__dict__["_point_state"] = PointState(point, cvals, coeffs)

    def _apply(self, fn, recurse: bool = True):
        # .to(), .cuda(), .half() ...: the coefficients follow the parameters' device and dtype.
        super()._apply(fn, recurse)
        self.set_point(self.point, fn(self._point_state.coeffs)[:0])
        return self

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


class _WeightAtPoint(SubspaceLayer):
    """A conv or linear subspace layer: ``get_weight()`` (the original's name) is its weight at the point."""

    def get_weight(self) -> torch.Tensor:
        """The weight at the current point."""
        return self.combined("weight")


class SubspaceConvNd(_WeightAtPoint):
    """Mixin of the subspace convolutions (any dimension): the plain conv's computation
    (``_conv_forward``) with the weight and bias at the current point."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.get_weight(), self.combined("bias"))


class SubspaceLinearForward(_WeightAtPoint):
    """Mixin of the subspace linear layers: ``F.linear`` with the weight and bias at the point."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.get_weight(), self.combined("bias"))


class SubspaceConv(SubspaceConvNd, nn.Conv2d):
    """A ``Conv2d`` whose forward pass uses the weight at the current point (``get_weight()``)."""

    def __init__(self, *args, **kwargs):
        nn.Conv2d.__init__(self, *args, **kwargs)
        self._add_endpoints(("weight", "bias"), functools.partial(_default_init, self))


class SubspaceLinear(SubspaceLinearForward, nn.Linear):
    """A ``Linear`` twin of :class:`SubspaceConv`, for models with linear heads."""

    def __init__(self, *args, **kwargs):
        nn.Linear.__init__(self, *args, **kwargs)
        self._add_endpoints(("weight", "bias"), functools.partial(_default_init, self))


def _bn_init(name: str, p: torch.Tensor) -> None:
    # Every BatchNorm endpoint starts as the plain layer does: weight 1, bias 0.
    with torch.no_grad():
        p.fill_(1.0 if name == "weight" else 0.0)


class SubspaceBN(SubspaceLayer, nn.BatchNorm2d):
    """A ``BatchNorm2d`` whose affine weight and bias are points of the subspace.

    The running statistics are shared by all endpoints (as in the original): they fit one point
    only after :func:`subspaces.utils.bn.update_bn` recomputes them there.
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
# One registry per family (--conv-type, --bn-type, and the linear layers that go with them).
# Lines and curves as in the original; simplexes for any n through one cached subclass per n.

LAYER_TYPES = {
    "Conv": Registry("conv type", "--conv-type"),
    "BN": Registry("BatchNorm type", "--bn-type"),
    "Linear": Registry("linear type"),
}
for _family, _plain in (("Conv", nn.Conv2d), ("BN", nn.BatchNorm2d), ("Linear", nn.Linear)):
    LAYER_TYPES[_family].register(_plain, name=f"Standard{_family}")


_FAMILY_BASES = {"Conv": SubspaceConv, "BN": SubspaceBN, "Linear": SubspaceLinear}


def _named_type(coefficients: Coefficients, family: str) -> type:
    """The layer type ``coefficients.layer_name(family)`` (``LinesConv`` ...), registered for its flag."""
    name = coefficients.layer_name(family)
    attrs = {"coefficients": coefficients, "__module__": __name__, "__qualname__": name}
    return LAYER_TYPES[family].register(type(name, (_FAMILY_BASES[family],), attrs))


# The original's lines (paper, Section 3: two endpoints) and curves (quadratic Bezier, three tensors).
LinesConv, LinesBN, LinesLinear = (_named_type(LineCoefficients(), f) for f in ("Conv", "BN", "Linear"))
CurvesConv, CurvesBN, CurvesLinear = (_named_type(CurveCoefficients(), f) for f in ("Conv", "BN", "Linear"))


class SimplexConv(SubspaceConv):
    """Base of ``SimplexConv<n>``; use :func:`get_layer_type` (``SimplexConv3`` etc.)."""


class SimplexBN(SubspaceBN):
    """Base of ``SimplexBN<n>``; use :func:`get_layer_type` (``SimplexBN3`` etc.)."""


class SimplexLinear(SubspaceLinear):
    """Base of ``SimplexLinear<n>``; use :func:`get_layer_type` (``SimplexLinear3`` etc.)."""


# Parametrised families, one cached class per (kind, family, k): SimplexConv<n> (n vertices),
# BezierConv<k> (degree k: k + 1 tensors) and PolyChainConv<k> (k bends: k + 2 tensors), and
# their BN and Linear twins.
_PARAM_KINDS = {
    "Simplex": (SimplexCoefficients, 2, "n >= 2"),
    "Bezier": (BezierCoefficients, 1, "degree k >= 1"),
    "PolyChain": (PolyChainCoefficients, 1, "k >= 1 bends"),
}
_SIMPLEX_BASES = {"Conv": SimplexConv, "BN": SimplexBN, "Linear": SimplexLinear}
_PARAM_RE = re.compile(r"^(Simplex|Bezier|PolyChain)(Conv|BN|Linear)(\d+)$")


@functools.lru_cache(maxsize=None)
def _param_type(kind: str, family: str, k: int) -> type:
    coefficients = _PARAM_KINDS[kind][0](k)
    base = (_SIMPLEX_BASES if kind == "Simplex" else _FAMILY_BASES)[family]
    return type(coefficients.layer_name(family), (base,), {"coefficients": coefficients, "__module__": __name__})


def _param_factory(kind: str, family: str) -> Callable:
    minimum = _PARAM_KINDS[kind][1]
    return lambda m: _param_type(kind, family, int(m.group(1))) if int(m.group(1)) >= minimum else None


for _kind, (_, _, _rule) in _PARAM_KINDS.items():
    for _family in _FAMILY_BASES:
        LAYER_TYPES[_family].register_pattern(rf"{_kind}{_family}(\d+)", _param_factory(_kind, _family), f"{_kind}{_family}<{'n' if _kind == 'Simplex' else 'k'}> ({_rule})")


# --- subspace versions of any layer class (modes.subspace) ------------------------------------
# The plain classes the named types are made of: a Conv2d becomes LinesConv, and so on.
_NAMED_FAMILIES = {nn.Conv2d: "Conv", nn.BatchNorm2d: "BN", nn.Linear: "Linear"}
# Layers whose forward reads a child's parameters without calling the child (MultiheadAttention
# passes out_proj.weight/bias to its functional attention): their children's points are exposed too.
_READS_CHILDREN = {nn.MultiheadAttention: ("out_proj",)}
_GENERATED: dict = {}  # name -> class made by subspace_type (for pickle within the process)


class SubspaceExposed(SubspaceLayer):
    """Mixin for layers without a functional hook: the plain layer's own ``forward`` runs with the
    tensors at the current point in place of its parameters (and of those of the children it
    reads directly, ``_reads_children``), restored afterwards. The swapped-in tensors are
    functions of the endpoints, so autograd reaches every endpoint."""

    _reads_children: tuple = ()

    def forward(self, *args, **kwargs):
        layers = [self] + [c for c in (getattr(self, n) for n in self._reads_children) if isinstance(c, SubspaceLayer)]
        # Every combined tensor is computed before any is swapped in (endpoint 0 keeps the plain name).
        swaps = [(m, n, m.combined(n)) for m in layers for n in m._endpoint_params]
        saved = [(m, n, m._parameters[n]) for m, n, _ in swaps]
        try:
            for m, n, t in swaps:
                m._parameters[n] = t
            return super().forward(*args, **kwargs)
        finally:
            for m, n, p in saved:
                m._parameters[n] = p


def _forward_mixin(base: type) -> type:
    """How a subspace version of ``base`` computes: the conv or linear functional path when
    ``base`` keeps the plain forward, else the plain forward with its parameters swapped."""
    if issubclass(base, nn.modules.conv._ConvNd) and base.forward in (nn.Conv1d.forward, nn.Conv2d.forward, nn.Conv3d.forward):
        return SubspaceConvNd
    if issubclass(base, nn.Linear) and base.forward is nn.Linear.forward:
        return SubspaceLinearForward
    return SubspaceExposed


@functools.lru_cache(maxsize=None)
def subspace_type(base: type, coefficients: Coefficients) -> type:
    """The subspace version of the layer class ``base`` for ``coefficients``.

    ``nn.Conv2d``, ``nn.BatchNorm2d`` and ``nn.Linear`` give the named types (``LinesConv``,
    ``SimplexBN3``, ...); any other class a type made once, named like them (``LinesConv1d``,
    ``SimplexLayerNorm3``, ``BezierEmbedding3``), with the same mechanism: the mixin
    :class:`SubspaceLayer` holding ``weight, weight1, ...`` and the point, and the forward pass of
    :func:`_forward_mixin`. Instances are made by :func:`subspaces.modes.subspace` (in place).
    """
    family = _NAMED_FAMILIES.get(base)
    if family is not None:
        return get_layer_type(coefficients.layer_name(family), family)
    if issubclass(base, SubspaceLayer):
        raise ValueError(f"{base.__name__} is already a subspace layer")
    name = coefficients.layer_name(base.__name__)
    reads = next((v for k, v in _READS_CHILDREN.items() if issubclass(base, k)), ())
    cls = type(name, (_forward_mixin(base), base), {"coefficients": coefficients, "_reads_children": reads, "__module__": __name__})
    _GENERATED.setdefault(name, cls)
    return cls


def __getattr__(name: str) -> type:
    # Lets pickle (torch.save of a whole model, spawned workers) find the generated SimplexConv<n>,
    # BezierConv<k>, PolyChainConv<k>; and, within one process, the types of subspace_type.
    m = _PARAM_RE.match(name)
    if m and int(m.group(3)) >= _PARAM_KINDS[m.group(1)][1]:
        return _param_type(m.group(1), m.group(2), int(m.group(3)))
    if name in _GENERATED:
        return _GENERATED[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def layer_type_names(family: str | None = None) -> list:
    """The valid layer type names (``family`` one of Conv, BN, Linear, or all)."""
    return [n for f, reg in LAYER_TYPES.items() if family in (None, f) for n in reg.names()]


def get_layer_type(name: str, family: str | None = None) -> type:
    """Look up a layer type by name, e.g. ``LinesConv`` or ``SimplexBN5``.

    Raises :class:`UserError` with the valid names when ``name`` is unknown or of another family.
    """
    if family is not None:
        return LAYER_TYPES[family].get(name)
    for reg in LAYER_TYPES.values():
        found = reg.find(name)
        if found is not None:
            return found
    raise unknown_name("layer type", name, layer_type_names())


def coefficients_of(layer_type: type) -> Coefficients | None:
    """The coefficient function of a layer type; None for the standard layers."""
    return getattr(layer_type, "coefficients", None) if issubclass(layer_type, SubspaceLayer) else None


def linear_type_for(conv_type: str) -> str:
    """The linear layer type that matches a conv type (``LinesConv`` -> ``LinesLinear``,
    ``BezierConv3`` -> ``BezierLinear3``)."""
    m = re.fullmatch(r"(\w+?)Conv(\d*)", conv_type)
    return f"{m.group(1)}Linear{m.group(2)}" if m else conv_type
