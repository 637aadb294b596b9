"""Accuracy along the curve between two members (``connect_members.py`` first) and, for
comparison, along the straight line between the same two networks (no training: --init-endpoints
with LinesConv), each point after recomputing its BatchNorm statistics: one results row per pair
(alpha0, 1 - alpha0) of the grid, as for Figure 4, with dnn-mode-connectivity's summary along the
path (--curve-stats: train loss and error, test NLL and error, length-weighted means).

    python experiment_configs/digits/mode_connectivity/eval_connected.py [--seeds 0,1] [--dry-run]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from subspaces.args import replace  # noqa: E402
from experiment_configs.digits.common import SETUP  # noqa: E402
from experiment_configs.digits.ensembles import train_ensemble_members as members  # noqa: E402
from experiment_configs.digits.mode_connectivity import connect_members as connected  # noqa: E402
from subspaces.sweep import EVAL_CONNECT, Run, run_cli, script  # noqa: E402


def runs(cfg):
    for label_noise in cfg.label_noise:
        curve = connected.train_settings(cfg, label_noise)
        s = cfg.evaluation(curve, EVAL_CONNECT, trainer="eval_one_dim_subspaces", alphas=cfg.alphas, update_bn=True, fix_endpoints=False,
                            curve_stats=True)
        yield Run(s, needs=(curve,), trained_by=script(connected.__file__))
        a, b = connected.pair(cfg)
        line = cfg.evaluation(curve, EVAL_CONNECT, trainer="eval_one_dim_subspaces", alphas=cfg.alphas, update_bn=True,
                              conv_type="LinesConv", bn_type="LinesBN", fix_endpoints=False, curve_stats=True)
        # No --resume: the line's ends are the members themselves (--init-endpoints), untrained.
        line = replace(line, pretrained=False, name=f"id=line-between+ln={label_noise}+members={a}-{b}+seed={a}")
        yield Run(line, needs=connected.ends(cfg, label_noise), trained_by=script(members.__file__), needs_as="init_endpoints")


if __name__ == "__main__":
    sys.exit(run_cli(runs, SETUP, __doc__))
