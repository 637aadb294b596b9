"""Figure 4's third curve: the straight line between two separately trained members after permuting
the second one's units to match the first's (weight matching, Git Re-Basin), which keeps its
function: (1 - alpha) * w_a + alpha * P(w_b) at every pair (alpha0, 1 - alpha0) of the grid 0, 0.05,
..., 1, each point after recomputing its BatchNorm statistics (linestats_aligned), one results row
per pair, beside the unaligned line of eval_linestats_swa.py (the same pairs and grid). Needs
``ensembles/train_ensemble_members.py`` first.

    python experiment_configs/tinyimagenet/one_dimensional_subspaces/eval_aligned_line.py [--seeds 0,1] [--dry-run]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from experiment_configs.tinyimagenet.common import SETUP  # noqa: E402
from experiment_configs.tinyimagenet.one_dimensional_subspaces import eval_linestats_swa as straight  # noqa: E402
from subspaces.sweep import aligned_line, run_cli  # noqa: E402


def runs(cfg):
    """eval_linestats_swa's runs, member B aligned to A first: run id ``linestats-aligned``."""
    return map(aligned_line, straight.runs(cfg))


if __name__ == "__main__":
    sys.exit(run_cli(runs, SETUP, __doc__))
