"""Calibration on Digits (what it draws, from which runs: --help):
    python analyze_results/digits/calibration.py [--log-dir DIR] [--out DIR]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from experiment_configs import RESULTS_ROOT  # noqa: E402
from subspaces.analysis.figures import calibration, cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli(calibration, "digits", __doc__, results_root=RESULTS_ROOT))
