"""Layerwise simplexes (Figure 5): as train_simplexes.py, but every layer draws its own point.

The centre (t_i = 1/n) is tested after recomputing its BatchNorm statistics; its accuracy is
Figure 5's point.

    python experiment_configs/digits/simplexes/train_simplexes_layerwise.py [--n 2,3,4] [--seeds 0,1] [--dry-run]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from subspaces.args import replace  # noqa: E402
from experiment_configs.digits.common import SETUP  # noqa: E402
from subspaces.sweep import SIMPLEXES, Run, run_cli, simplex_name  # noqa: E402


def train_settings(cfg, seed, label_noise, n):
    """The simplex of ``n`` endpoints trained with ``seed``: ``id=simplex-layerwise+n=3+ln=0.0+...+seed=0``."""
    s = cfg.train(SIMPLEXES, seed=seed, label_noise=label_noise, n=n, conv_type=f"SimplexConv{n}",
                  bn_type=f"SimplexBN{n}", trainer="train_simplexes", beta=1.0, layerwise=True,
                  num_samples=1, train_update_bn=True, update_bn=True)
    return replace(s, name=simplex_name("simplex-layerwise", s))


def runs(cfg):
    for label_noise in cfg.label_noise:
        for seed in cfg.seeds:
            for n in cfg.simplex_n:  # the number of endpoints
                yield Run(train_settings(cfg, seed, label_noise, n))


if __name__ == "__main__":
    sys.exit(run_cli(runs, SETUP, __doc__))
