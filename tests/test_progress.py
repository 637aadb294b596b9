"""What a researcher watches during a long run: progress bars (evaluation grid, BatchNorm
recomputation), the printed table of an evaluation grid, and TensorBoard scalars on one x axis.

One tiny line is trained once for the module (Digits, width 0.25, 2 epochs, --save); its event
files and its checkpoint serve every test below.
"""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from subspaces.utils import bn, distributed
from subspaces.utils.distributed import World
from subspaces.utils.results import read_results
from tests.helpers import Terminal, cli, final_ckpt

ROOT = Path(__file__).resolve().parents[1]
LINE = ["--set", "Digits", "--conv-type", "LinesConv", "--bn-type", "LinesBN", "--batch-size", "64", "--width-mult", "0.25"]
EPOCHS = 2
GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


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


def test_bars_only_on_a_terminal_and_on_rank_0(monkeypatch):
    """The BatchNorm recompute draws a bar on a terminal; none when stderr is a file or a pipe
    (a sweep's --quiet sends a run's output to sweep.log), nor on a DDP rank other than 0."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    batches = [(torch.randn(4, 1, 5, 5), torch.zeros(4)) for _ in range(3)]
    for stderr, drawn in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stderr)
        bn.update_bn(batches, model)
        assert ("BatchNorm statistics" in stderr.getvalue()) == drawn
    from subspaces.utils.progress import progress_bar

    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.setattr(distributed, "current", lambda: World(rank=1, size=2))
    assert progress_bar(batches, "x").disable
    monkeypatch.setattr(distributed, "current", lambda: World(rank=0, size=2))
    assert not progress_bar(batches, "x").disable


def _table(out: str) -> list:
    """The lines of the grid table printed on stdout (header first)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["alpha0", "alpha1"])
    return lines[start:start + 1 + len(GRID)]


def test_grid_bars_table_and_tensorboard(line_run, tmp_path, monkeypatch, capsys):
    """An evaluation grid shows a bar over its pairs and one per BatchNorm recompute, prints one
    aligned line per pair with the row's metrics, and writes every row's metrics at x = 100 * alpha1."""
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    argv = LINE + ["--trainer", "eval_one_dim_subspaces", "--resume", final_ckpt(line_run), "--pretrained", "--epochs", 0,
                   "--update-bn", "--alphas", ",".join(map(str, GRID)), "--save", "--log-dir", tmp_path, "--name", "grid"]
    assert cli(argv) == 0
    assert "alpha pairs" in err.getvalue() and "BatchNorm statistics" in err.getvalue()

    rows = read_results(tmp_path / "results.csv")
    table = _table(capsys.readouterr().out)
    columns = ["alpha0", "alpha1", "curr_acc1", "m0_acc", "ensemble_acc", "tvdist", "feat_cossim"]
    assert table[0].split() == columns
    assert len({len(line) for line in table}) == 1  # right-aligned columns: one width for every line
    for line, row in zip(table[1:], rows):
        cells = line.split()
        assert [float(c) for c in cells[:2]] == [float(row["alpha0"]), float(row["alpha1"])]
        assert [float(c) for c in cells[2:]] == pytest.approx([float(row[c]) for c in columns[2:]], abs=5e-5)

    tb = scalars(tmp_path / "grid+try=0")
    by_alpha1 = sorted(rows, key=lambda r: float(r["alpha1"]))
    for tag in ("curr_acc1", "m0_acc", "ensemble_acc", "tvdist", "feat_cossim", "ensemble_nll"):
        assert [s for s, _ in tb[f"eval/{tag}"]] == [0, 25, 50, 75, 100], tag
        assert [v for _, v in tb[f"eval/{tag}"]] == pytest.approx([float(r[tag]) for r in by_alpha1], rel=1e-6), tag


def test_progress_overhead_bench_runs():
    """bench/progress_overhead.py still runs (tiny sizes): its three variants and the bare loops."""
    done = subprocess.run([sys.executable, "bench/progress_overhead.py", "--batches", "2", "--batch-size", "2", "--reps", "5",
                           "--items", "1000"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| bar drawn (stderr a terminal)" in done.stdout and "| bar drawn " in done.stdout.split("us per item")[-1]
