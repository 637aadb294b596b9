"""Learning Neural Network Subspaces (Wortsman et al., ICML 2021) as a library.

``import subspaces`` gives the subpackages a researcher uses directly:

- :mod:`subspaces.modes`: subspace layers (lines, curves, simplexes), ``subspaces.modes.subspace(net,
  "lines")`` to turn any model into a subspace of it, the Eq. 3 regulariser, export of a point;
- :mod:`subspaces.models`: the paper's models, built from layer types by name;
- :mod:`subspaces.trainers`: the training and evaluation trainers, by the original's names;
- :mod:`subspaces.data`: the data sets (Digits, CIFAR, TinyImageNet, ImageNet, image folders);
- :mod:`subspaces.utils`: checkpoints, results rows, BatchNorm recomputation, metrics.

The command line is ``subspaces-train`` (``python main.py`` in a clone); experiment sweeps are
:mod:`subspaces.sweep`, figures :mod:`subspaces.analysis`.
"""
from . import args, data, models, modes, trainers, utils  # noqa: F401

__version__ = "1.0.0"
__all__ = ["args", "data", "models", "modes", "trainers", "utils", "__version__"]
