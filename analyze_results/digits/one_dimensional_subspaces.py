"""Figure 4 on Digits: accuracy along lines, layerwise lines and curves (each point, and the ensemble
of the points alpha and 1 - alpha) against the same along the straight line between two separately
trained networks, standard training and a standard ensemble of two.

Needs the ensembles and one_dimensional_subspaces configs of experiment_configs/digits (train, then eval).
    python analyze_results/digits/one_dimensional_subspaces.py [--log-dir DIR] [--out DIR]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from analyze_results.common import cli, figure4  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli(figure4, "digits", __doc__))
