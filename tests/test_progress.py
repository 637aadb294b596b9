"""What a researcher watches during a long run: progress bars (evaluation grid, BatchNorm
recomputation), the printed table of an evaluation grid, and TensorBoard scalars on one x axis.

One tiny line is trained once for the module (Digits, width 0.25, 2 epochs, --save); its event
files and its checkpoint serve every test below.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.helpers import cli, final_ckpt

LINE = ["--set", "Digits", "--conv-type", "LinesConv", "--bn-type", "LinesBN", "--batch-size", "64", "--width-mult", "0.25"]
EPOCHS = 2


def scalars(run_dir: Path) -> dict:
    """``{tag: [(step, value), ...]}`` of a run folder's TensorBoard event files."""
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def line_run(tmp_path_factory) -> Path:
    """The run folder of a tiny line trained for EPOCHS epochs with --save."""
    log = tmp_path_factory.mktemp("line")
    assert cli(LINE + ["--trainer", "train_one_dim_subspaces", "--epochs", EPOCHS, "--save", "--log-dir", log, "--name", "line"]) == 0
    return log / "line+try=0"


def test_training_and_test_scalars_share_the_global_step(line_run):
    """train/loss, train/lr and test/* are all on the global training step: the test after epoch e
    sits at e * batches_per_epoch, the `iter` of that epoch's checkpoint."""
    steps = int(final_ckpt(line_run).stem.split("_")[-1])  # epoch_<E>_iter_<E * batches>
    per_epoch = steps // EPOCHS
    tb = scalars(line_run)
    for tag in ("test/acc", "test/loss", "test/ece", "test/norm", "test/cossim"):
        assert [s for s, _ in tb[tag]] == [per_epoch * e for e in range(1, EPOCHS + 1)], tag
    assert [s for s, _ in tb["train/lr"]] == [per_epoch * e for e in range(EPOCHS)]
    loss_steps = [s for s, _ in tb["train/loss"]]
    assert loss_steps[0] == 0 and max(loss_steps) < steps and len(loss_steps) > EPOCHS
