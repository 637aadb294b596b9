"""Networks made from the weights of every pair of trained members: their uniform average
(average_weights) and a random point of the line between them drawn once for the whole network,
once per layer and once per weight (random_average_weights_{global,layerwise,perweight}; Dirichlet(1),
fixed by the seed), each with its BatchNorm statistics recomputed. Needs ``train_ensemble_members.py``.

    python experiment_configs/tinyimagenet/ensembles/eval_average_weights.py [--seeds 0,1,2] [--dry-run]
"""
import sys
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from subspaces.args import replace  # noqa: E402
from experiment_configs.tinyimagenet.common import SETUP  # noqa: E402
from experiment_configs.tinyimagenet.ensembles import train_ensemble_members as members  # noqa: E402
from subspaces.sweep import ENSEMBLES, Run, run_cli, script  # noqa: E402

TRAINERS = ("average_weights", "random_average_weights_global", "random_average_weights_layerwise",
            "random_average_weights_perweight")
SIZES = (2,)  # networks combined; (2, 3) with three or more seeds


def runs(cfg):
    for label_noise in cfg.label_noise:
        for k in SIZES:
            for combo in combinations(cfg.seeds, k):
                trained = [members.train_settings(cfg, seed, label_noise) for seed in combo]
                for trainer in TRAINERS:
                    s = cfg.evaluation(trained[0], ENSEMBLES, trainer=trainer, num_models=k)
                    s = replace(s, name=f"id={trainer.replace('_', '-')}+ln={label_noise}+epochs={trained[0].epochs}"
                                        f"+num_models={k}+members={'-'.join(map(str, combo))}")
                    yield Run(s, needs=tuple(trained), trained_by=script(members.__file__))


if __name__ == "__main__":
    sys.exit(run_cli(runs, SETUP, __doc__))
