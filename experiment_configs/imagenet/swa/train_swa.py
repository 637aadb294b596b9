"""SWA baseline (calibration figure): standard training whose weights are averaged once per epoch
over the last quarter of training, then evaluated after recomputing BatchNorm statistics.

The learning rate is the SWA paper's: constant, ramped down to swa_lr (swa_constant_lr, the
original's "SWA (High Const. LR)"); from swa_start (a fraction of the epochs) it anneals to swa_lr.

    python experiment_configs/imagenet/swa/train_swa.py [--seeds 0,1] [--label-noise 0.0,0.2] [--dry-run]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from subspaces.args import replace  # noqa: E402
from experiment_configs.imagenet.common import SETUP  # noqa: E402
from subspaces.sweep import SWA, Run, run_cli  # noqa: E402


def train_settings(cfg, seed, label_noise):
    """The SWA run with ``seed``: ``id=swa+ln=0.0+lr_policy=swa_constant_lr+seed=0``."""
    s = cfg.train(SWA, seed=seed, label_noise=label_noise, conv_type="StandardConv", bn_type="StandardBN",
                  trainer="swa", trainswa=True, num_models=2, lr_policy="swa_constant_lr",
                  swa_start=0.75, swa_lr=0.05)
    return replace(s, name=f"id=swa+ln={label_noise}+lr_policy={s.lr_policy}+seed={seed}")


def runs(cfg):
    for label_noise in cfg.label_noise:
        for seed in cfg.seeds:
            yield Run(train_settings(cfg, seed, label_noise))


if __name__ == "__main__":
    sys.exit(run_cli(runs, SETUP, __doc__))
