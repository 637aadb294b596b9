"""Subspace layers (lines, curves, simplexes, Bezier curves, polygonal chains) and the helpers
that set and draw their points, make any model a subspace, and export a plain network.

``modes.subspace`` is the function :func:`subspaces.modes.convert.subspace` (turn a model into a subspace in
place); the model-level helpers live in the module ``modes/subspace.py`` and are exported here.
"""
from .coefficients import (BezierCoefficients, Coefficients, CurveCoefficients, LineCoefficients,
    PolyChainCoefficients, SimplexCoefficients, combine)
from .modules import (CurvesBN, CurvesConv, CurvesLinear, LinesBN, LinesConv, LinesLinear, StandardBN,
    StandardConv, StandardLinear, SubspaceBN, SubspaceConv, SubspaceLayer, SubspaceLinear, coefficients_of,
    get_layer_type, layer_type_names, linear_type_for, subspace_type)
from .subspace import (conv_layers, cosine_regulariser, endpoint_pair, endpoint_stats, path_distances, regularised_tensors,
    sample_and_set, set_point, set_points, subspace_coefficients, subspace_layers)
from .convert import coefficients_for, fix_endpoints, load_endpoints, plain_keys, plain_state_dict  # noqa: E402
from .convert import subspace  # noqa: E402  (after the module modes.subspace: the name is the function)

__all__ = [n for n in dir() if not n.startswith("_")]
