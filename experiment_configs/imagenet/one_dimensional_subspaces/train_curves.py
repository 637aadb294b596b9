"""Curves (Figure 4): quadratic Bezier curves (CurvesConv/CurvesBN, two endpoints and a control
point), one alpha ~ U(0, 1) per batch, beta 1, per seed.

    python experiment_configs/imagenet/one_dimensional_subspaces/train_curves.py [--seeds 0,1] [--dry-run]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from subspaces.args import replace  # noqa: E402
from experiment_configs.imagenet.common import SETUP  # noqa: E402
from subspaces.sweep import ONE_DIM, Run, run_cli, subspace_name  # noqa: E402


def train_settings(cfg, seed, label_noise):
    """The curve trained with ``seed``: ``id=curves+ln=0.0+beta=1.0+num_samples=1+seed=0``."""
    # As the original's ImageNet configs, no BatchNorm recompute at the midpoint before each test
    # (a pass over 1.28M images); set train_update_bn=True to recompute.
    s = cfg.train(ONE_DIM, seed=seed, label_noise=label_noise, conv_type="CurvesConv", bn_type="CurvesBN",
                  trainer="train_one_dim_subspaces", beta=1.0, layerwise=False, num_samples=1,
                  train_update_bn=False, update_bn=False)
    return replace(s, name=subspace_name("curves", s))


def runs(cfg):
    for label_noise in cfg.label_noise:
        for seed in cfg.seeds:
            yield Run(train_settings(cfg, seed, label_noise))


if __name__ == "__main__":
    sys.exit(run_cli(runs, SETUP, __doc__))
