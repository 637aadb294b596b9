"""Subspace layers (lines, curves, simplexes) and the helpers that set and draw their points."""
from .coefficients import (
    Coefficients,
    CurveCoefficients,
    LineCoefficients,
    SimplexCoefficients,
    combine,
)
from .modules import (
    CurvesBN,
    CurvesConv,
    CurvesLinear,
    LinesBN,
    LinesConv,
    LinesLinear,
    StandardBN,
    StandardConv,
    StandardLinear,
    SubspaceBN,
    SubspaceConv,
    SubspaceLayer,
    SubspaceLinear,
    coefficients_of,
    get_layer_type,
    layer_type_names,
    linear_type_for,
)
from .subspace import (
    conv_layers,
    cosine_regulariser,
    endpoint_pair,
    endpoint_stats,
    load_endpoints,
    sample_and_set,
    set_point,
    set_points,
    subspace_coefficients,
    subspace_layers,
)

__all__ = [n for n in dir() if not n.startswith("_")]
