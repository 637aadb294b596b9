"""SWAG's Bayesian model average: 30 networks drawn from each SWAG run's Gaussian (scale 0.5, the
SWAG paper's), each with its BatchNorm statistics recomputed, their predicted probabilities
averaged; the SWA mean is reported beside it. Needs ``train_swag.py`` first.

    python experiment_configs/imagenet/swa/eval_swag.py [--seeds 0,1] [--dry-run]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from subspaces.args import replace  # noqa: E402
from experiment_configs.imagenet.common import SETUP  # noqa: E402
from experiment_configs.imagenet.swa import train_swag as trained_by  # noqa: E402
from subspaces.sweep import EVAL_SWAG, Run, run_cli, script  # noqa: E402

SAMPLES, SCALE = 30, 0.5


def runs(cfg):
    for label_noise in cfg.label_noise:
        for seed in cfg.seeds:
            trained = trained_by.train_settings(cfg, seed, label_noise)
            s = cfg.evaluation(trained, EVAL_SWAG, trainer="swag", trainswa=False, swag_rank=None,
                               swag_samples=SAMPLES, swag_scale=SCALE)
            s = replace(s, name=f"id=swag-bma+ln={label_noise}+rank={trained_by.RANK}+samples={SAMPLES}+scale={SCALE}+seed={seed}")
            yield Run(s, needs=(trained,), trained_by=script(trained_by.__file__))


if __name__ == "__main__":
    sys.exit(run_cli(runs, SETUP, __doc__))
