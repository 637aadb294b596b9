"""Standard ensembles: every pair of trained members, predicting by summed logits (Figure 4's
"standard ensemble of two"). Needs ``train_ensemble_members.py`` first.

    python experiment_configs/imagenet/ensembles/eval_ensembles.py [--seeds 0,1,2] [--dry-run]
"""
import sys
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from subspaces.args import replace  # noqa: E402
from experiment_configs.imagenet.common import SETUP  # noqa: E402
from experiment_configs.imagenet.ensembles import train_ensemble_members as members  # noqa: E402
from subspaces.sweep import ENSEMBLES, Run, run_cli, script  # noqa: E402

SIZES = (2,)  # ensemble sizes; (2, 3) with three or more seeds


def runs(cfg):
    for label_noise in cfg.label_noise:
        for k in SIZES:
            for combo in combinations(cfg.seeds, k):
                trained = [members.train_settings(cfg, seed, label_noise) for seed in combo]
                s = cfg.evaluation(trained[0], ENSEMBLES, trainer="ensemble", num_models=k)
                s = replace(s, name=f"id=ensemble+ln={label_noise}+epochs={trained[0].epochs}"
                                    f"+num_models={k}+members={'-'.join(map(str, combo))}")
                yield Run(s, needs=tuple(trained), trained_by=script(members.__file__))


if __name__ == "__main__":
    sys.exit(run_cli(runs, SETUP, __doc__))
