"""Figure 4's third curve: the straight line between two separately trained members after permuting
the second one's units to match the first's (weight matching, Git Re-Basin), which keeps its
function: (1 - alpha) * w_a + alpha * P(w_b) at every pair (alpha0, 1 - alpha0) of the grid 0, 0.05,
..., 1, each point after recomputing its BatchNorm statistics (linestats_aligned), one results row
per pair, beside the unaligned line of eval_linestats_swa.py. Needs
``ensembles/train_ensemble_members.py`` first.

    python experiment_configs/digits/one_dimensional_subspaces/eval_aligned_line.py [--seeds 0,1] [--dry-run]
"""
import sys
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from subspaces.args import replace  # noqa: E402
from experiment_configs.digits.common import SETUP  # noqa: E402
from experiment_configs.digits.ensembles import train_ensemble_members as trained_by  # noqa: E402
from subspaces.sweep import EVAL_ONE_DIM, Run, run_cli, script  # noqa: E402


def runs(cfg):
    for label_noise in cfg.label_noise:
        for a, b in combinations(cfg.seeds, 2):
            trained = [trained_by.train_settings(cfg, seed, label_noise) for seed in (a, b)]
            s = cfg.evaluation(trained[0], EVAL_ONE_DIM, trainer="linestats_aligned", num_models=2, alphas=cfg.alphas,
                               update_bn=True, align="weight")
            s = replace(s, name=f"id=linestats-aligned+ln={label_noise}+epochs={trained[0].epochs}+members={a}-{b}")
            yield Run(s, needs=tuple(trained), trained_by=script(trained_by.__file__))


if __name__ == "__main__":
    sys.exit(run_cli(runs, SETUP, __doc__))
