"""Standard training, one network per seed: the ensemble members and Figures 4-5's baseline.

    python experiment_configs/cifar10/ensembles/train_ensemble_members.py [--seeds 0,1,2] [--dry-run]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from subspaces.args import replace  # noqa: E402
from experiment_configs.cifar10.common import SETUP  # noqa: E402
from subspaces.sweep import MEMBERS, Run, member_name, run_cli  # noqa: E402


def train_settings(cfg, seed, label_noise):
    """The member trained with ``seed``: ``id=base+ln=0.0+seed=0``."""
    s = cfg.train(MEMBERS, seed=seed, label_noise=label_noise, conv_type="StandardConv",
                  bn_type="StandardBN", trainer="default")
    return replace(s, name=member_name(s))


def runs(cfg):
    for label_noise in cfg.label_noise:
        for seed in cfg.seeds:
            yield Run(train_settings(cfg, seed, label_noise))


if __name__ == "__main__":
    sys.exit(run_cli(runs, SETUP, __doc__))
