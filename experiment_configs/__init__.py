"""Experiment configs: one script per experiment and data set, each a loop over seeds (and n).

They run from a clone (``python experiment_configs/<data set>/<experiment>.py``) and import the
``subspaces`` package; their results go under ``RESULTS_ROOT/<data set>/`` unless ``--log-dir``.
"""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_ROOT = REPO_ROOT / "learning-subspaces-results"

# The config scripts every data set folder has (experiment_configs/<data set>/<this>.py), in the
# order a whole reproduction runs them: every evaluation after the training it reads.
CONFIG_SCRIPTS = (
    "ensembles/train_ensemble_members", "ensembles/eval_ensembles", "ensembles/eval_average_weights",
    "one_dimensional_subspaces/train_lines", "one_dimensional_subspaces/train_lines_layerwise",
    "one_dimensional_subspaces/train_curves", "one_dimensional_subspaces/eval_lines",
    "one_dimensional_subspaces/eval_lines_layerwise", "one_dimensional_subspaces/eval_curves",
    "one_dimensional_subspaces/eval_linestats_swa", "one_dimensional_subspaces/eval_aligned_line",
    "simplexes/train_simplexes", "simplexes/train_simplexes_layerwise",
    "swa/train_swa", "swa/train_swag", "swa/eval_swag",
)
