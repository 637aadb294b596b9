"""Learning Neural Network Subspaces (Wortsman et al., ICML 2021) as a library.

``import subspaces`` gives the subpackages a researcher uses directly:

- :mod:`subspaces.modes`: subspace layers (lines, curves, simplexes), ``subspaces.modes.subspace(net,
  "lines")`` to turn any model into a subspace of it, the Eq. 3 regulariser, export of a point,
  permutation alignment;
- :mod:`subspaces.models`: the paper's models, built from layer types by name;
- :mod:`subspaces.trainers`: the training and evaluation trainers, by the original's names;
- :mod:`subspaces.data`: the data sets (Digits, CIFAR, TinyImageNet, ImageNet, image folders);
- :mod:`subspaces.utils`: checkpoints, results rows, BatchNorm recomputation, metrics.

The command line is ``subspaces-train`` (``python main.py`` in a clone); experiment sweeps are
:mod:`subspaces.sweep`, figures :mod:`subspaces.analysis`.

Subpackages are imported on first use (PEP 562), so ``import subspaces.utils.results`` or a
figure script does not pay for PyTorch's model and data code it never touches.
"""
from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "1.0.0"
_SUBMODULES = ("args", "data", "models", "modes", "trainers", "utils", "main", "sweep", "launch", "analysis")
__all__ = [*_SUBMODULES, "__version__"]


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_SUBMODULES))
