"""SWAG's training run (Maddox et al. 2019): the SWA baseline of train_swa.py that also collects
SWAG's statistics -- the second moment of the weights and the last RANK deviations from their
running average -- at every averaging epoch, for eval_swag.py to sample from.

    python experiment_configs/digits/swa/train_swag.py [--seeds 0,1] [--label-noise 0.0,0.2] [--dry-run]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from subspaces.args import replace  # noqa: E402
from experiment_configs.digits.common import SETUP  # noqa: E402
from subspaces.sweep import SWA, Run, run_cli  # noqa: E402

RANK = 5  # deviation columns kept (the SWAG paper's 20 on CIFAR); Digits averages 5 epochs


def train_settings(cfg, seed, label_noise):
    """The SWAG run with ``seed``: ``id=swag+ln=0.0+lr_policy=swa_constant_lr+rank=20+seed=0``."""
    # SWAG needs two averaged epochs at least: the last quarter of training, or the last two.
    epochs = max(2, cfg.base.epochs)
    s = cfg.train(SWA, seed=seed, label_noise=label_noise, conv_type="StandardConv", bn_type="StandardBN",
                  trainer="swa", trainswa=True, num_models=2, lr_policy="swa_constant_lr", epochs=epochs,
                  swa_start=min(0.75, 1 - 2 / epochs), swa_lr=0.05, swag_rank=RANK)
    return replace(s, name=f"id=swag+ln={label_noise}+lr_policy={s.lr_policy}+rank={RANK}+seed={seed}")


def runs(cfg):
    for label_noise in cfg.label_noise:
        for seed in cfg.seeds:
            yield Run(train_settings(cfg, seed, label_noise))


if __name__ == "__main__":
    sys.exit(run_cli(runs, SETUP, __doc__))
