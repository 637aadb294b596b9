"""Calibration on ImageNet: accuracy and ECE of the line midpoint, standard training, a standard ensemble
of two and SWA at each label-noise level run (e.g. the configs with --label-noise 0.0,0.2).

Needs experiment_configs/imagenet: ensembles/*, one_dimensional_subspaces/train_lines.py, swa/train_swa.py.
    python analyze_results/imagenet/calibration.py [--log-dir DIR] [--out DIR]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from analyze_results.common import calibration, cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli(calibration, "imagenet", __doc__))
