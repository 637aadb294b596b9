"""Layerwise lines (Figure 4): as train_lines.py, but every layer draws its own alpha.

    python experiment_configs/cifar10/one_dimensional_subspaces/train_lines_layerwise.py [--seeds 0,1] [--dry-run]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from subspaces.args import replace  # noqa: E402
from experiment_configs.cifar10.common import SETUP  # noqa: E402
from subspaces.sweep import ONE_DIM, Run, run_cli, subspace_name  # noqa: E402


def train_settings(cfg, seed, label_noise):
    """The layerwise line trained with ``seed``: ``id=lines-layerwise+ln=0.0+...+seed=0``."""
    s = cfg.train(ONE_DIM, seed=seed, label_noise=label_noise, conv_type="LinesConv", bn_type="LinesBN",
                  trainer="train_one_dim_subspaces", beta=1.0, layerwise=True, num_samples=1,
                  train_update_bn=True, update_bn=True)
    return replace(s, name=subspace_name("lines-layerwise", s))


def runs(cfg):
    for label_noise in cfg.label_noise:
        for seed in cfg.seeds:
            yield Run(train_settings(cfg, seed, label_noise))


if __name__ == "__main__":
    sys.exit(run_cli(runs, SETUP, __doc__))
