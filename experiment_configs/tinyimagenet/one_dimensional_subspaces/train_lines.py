"""Lines (Figure 4): LinesConv/LinesBN, one point alpha ~ U(0, 1) per batch, beta 1, per seed.

The midpoint is tested after recomputing its BatchNorm statistics (train_update_bn, as the
original's configs).

    python experiment_configs/tinyimagenet/one_dimensional_subspaces/train_lines.py [--seeds 0,1] [--dry-run]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from subspaces.args import replace  # noqa: E402
from experiment_configs.tinyimagenet.common import SETUP  # noqa: E402
from subspaces.sweep import ONE_DIM, Run, run_cli, subspace_name  # noqa: E402


def train_settings(cfg, seed, label_noise):
    """The line trained with ``seed``: ``id=lines+ln=0.0+beta=1.0+num_samples=1+seed=0``."""
    s = cfg.train(ONE_DIM, seed=seed, label_noise=label_noise, conv_type="LinesConv", bn_type="LinesBN",
                  trainer="train_one_dim_subspaces", beta=1.0, layerwise=False, num_samples=1,
                  train_update_bn=True, update_bn=True)
    return replace(s, name=subspace_name("lines", s))


def runs(cfg):
    for label_noise in cfg.label_noise:
        for seed in cfg.seeds:
            yield Run(train_settings(cfg, seed, label_noise))


if __name__ == "__main__":
    sys.exit(run_cli(runs, SETUP, __doc__))
