"""Figure 4's data for lines: every pair of points (alpha0, 1 - alpha0) for alpha0 in 0, 0.05,
..., 1 -- the accuracy of each point and of their ensemble, one results row per pair. As the
original on ImageNet, each point keeps the BatchNorm statistics of training (no recompute).
Needs ``train_lines.py`` first.

    python experiment_configs/imagenet/one_dimensional_subspaces/eval_lines.py [--seeds 0,1] [--dry-run]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from experiment_configs.imagenet.common import SETUP  # noqa: E402
from experiment_configs.imagenet.one_dimensional_subspaces import train_lines as trained_by  # noqa: E402
from subspaces.sweep import EVAL_ONE_DIM, Run, run_cli, script  # noqa: E402


def runs(cfg):
    for label_noise in cfg.label_noise:
        for seed in cfg.seeds:
            trained = trained_by.train_settings(cfg, seed, label_noise)
            # As the original on ImageNet, no BatchNorm recompute at each point (update_bn=True: recompute).
            s = cfg.evaluation(trained, EVAL_ONE_DIM, trainer="eval_one_dim_subspaces", alphas=cfg.alphas, update_bn=False)
            yield Run(s, needs=(trained,), trained_by=script(trained_by.__file__))


if __name__ == "__main__":
    sys.exit(run_cli(runs, SETUP, __doc__))
