"""The run loop that trainers plug into, and the ways a run must survive: a kill mid-epoch, SIGTERM
(Slurm preemption), a diverging loss, resuming with other optimizer flags, a trainer added by a user."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from subspaces import main as main_mod
from subspaces.args import parse_args
from subspaces.trainers import TRAINERS, Trainer
from subspaces.trainers import TestResult as Result
from subspaces.trainers.default import test_metrics as metrics_of
from subspaces.utils.checkpoint import load_checkpoint
from subspaces.utils.results import read_results
from subspaces.utils.run_folder import checkpoint_files
from tests.helpers import cli

ROOT = Path(__file__).resolve().parents[1]
LINE = ["--set", "Digits", "--conv-type", "LinesConv", "--bn-type", "LinesBN", "--trainer", "train_one_dim_subspaces",
        "--beta", "1", "--batch-size", "128", "--dropout", "0.0"]  # 12 steps per epoch on Digits


def subprocess_main(argv, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(ROOT / "main.py")]
    return subprocess.Popen(cmd + [str(a) for a in argv], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def checkpoints(run_dir: Path) -> list:
    """(epoch, iter, path) of a run folder's checkpoints, oldest first (a ``_mid`` one after its epoch's start)."""
    return [(c.epoch, c.iter, c.path) for c in checkpoint_files(run_dir)]


def final_state(run_dir: Path) -> dict:
    return torch.load(checkpoints(run_dir)[-1][2], weights_only=True)


def test_kill_at_a_random_step_and_resume_is_bit_identical(tmp_path):
    """SIGKILL a real process mid-epoch (it checkpoints every step); resuming from its newest
    checkpoint ends with exactly the weights and optimizer state of the run never interrupted."""
    epochs, steps = 2, 24
    every = ",".join(map(str, range(steps)))
    base = LINE + ["--epochs", epochs, "--save", "--log-dir", tmp_path, "--save-iters", every]
    ref = subprocess_main(base + ["--name", "ref"])
    kill_after = random.Random(os.getpid()).randint(3, steps - 4)  # a random step, reported below
    victim = subprocess_main(base + ["--name", "victim"])
    victim_dir = tmp_path / "victim+try=0"
    deadline = time.monotonic() + 120
    while len(checkpoints(victim_dir)) < kill_after + 1 and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert ref.wait() == 0, ref.stderr.read()
    assert victim.returncode == -signal.SIGKILL, f"the run ended before the kill at step {kill_after}"
    assert not read_results(tmp_path / "results.csv") or all(r["Name"] != "victim+try=0" for r in read_results(tmp_path / "results.csv"))
    newest = checkpoints(victim_dir)[-1]
    resumed = subprocess_main(LINE + ["--epochs", epochs, "--save", "--log-dir", tmp_path, "--name", "resumed", "--resume", newest[2]])
    assert resumed.wait() == 0, resumed.stderr.read()
    a, b = final_state(tmp_path / "ref+try=0"), final_state(tmp_path / "resumed+try=0")
    assert b["epoch"] == epochs
    for k, v in a["state_dicts"][0].items():
        assert torch.equal(v, b["state_dicts"][0][k]), f"{k} differs after a kill at step {kill_after} ({newest[2].name})"
    for i, st in a["optimizers"][0]["state"].items():
        assert torch.equal(st["momentum_buffer"], b["optimizers"][0]["state"][i]["momentum_buffer"])
    rows = read_results(tmp_path / "results.csv")
    assert [r["Name"] for r in rows].count("resumed+try=0") == 1
    by_name = {r["Name"]: r for r in rows}
    assert by_name["resumed+try=0"]["curr_acc1"] == by_name["ref+try=0"]["curr_acc1"]
    assert by_name["resumed+try=0"]["train_loss"] == by_name["ref+try=0"]["train_loss"]


def test_mid_epoch_checkpoint_holds_the_position_and_generators(tmp_path):
    assert cli(LINE + ["--epochs", 1, "--save", "--log-dir", tmp_path, "--name", "m", "--save-iters", "4"]) == 0
    ck = load_checkpoint(tmp_path / "m+try=0" / "epoch_0_iter_4.pt")
    assert ck["epoch"] == 0 and ck["iter"] == 4 and ck["batch"] == 5  # five steps done, the original's name
    assert set(ck["rng"]) >= {"torch", "epoch"} and ck["loss_sum"] > 0


def test_sigterm_checkpoints_and_exits_then_resumes(tmp_path):
    argv = LINE + ["--epochs", 40, "--save", "--log-dir", tmp_path, "--name", "p"]
    proc = subprocess_main(argv)
    run_dir = tmp_path / "p+try=0"
    deadline = time.monotonic() + 120
    while not (run_dir / "epoch_0_iter_0.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    last = err.strip().splitlines()[-1]
    assert "continue with --resume" in last
    path = Path(last.rsplit("--resume ", 1)[1])
    ck = load_checkpoint(path)
    assert ck["batch"] > 0 and ck["epoch"] < 40
    assert not (tmp_path / "results.csv").exists()  # a stopped run writes no row
    assert cli(LINE + ["--epochs", ck["epoch"] + 1, "--save", "--log-dir", tmp_path, "--name", "p2", "--resume", path]) == 0
    assert [r["Name"] for r in read_results(tmp_path / "results.csv")] == ["p2+try=0"]


def test_a_diverging_loss_stops_with_one_line_and_no_bad_checkpoint(tmp_path, capsys):
    code = cli(["--set", "Digits", "--epochs", "4", "--lr", "1e8", "--save", "--log-dir", tmp_path, "--name", "nan"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: the training loss became") and "epoch 1, step" in err[-1] and "--lr" in err[-1]
    assert not (tmp_path / "results.csv").exists()
    saved = checkpoints(tmp_path / "nan+try=0")
    assert saved, "the initialisation is kept"
    for _, _, p in saved:
        assert all(torch.isfinite(v).all() for v in load_checkpoint(p)["state_dicts"][0].values() if v.is_floating_point())


def test_resuming_with_another_optimizer_is_refused_and_new_flags_apply(tmp_path, capsys):
    assert cli(["--set", "Digits", "--epochs", "1", "--save", "--log-dir", tmp_path, "--name", "adam", "--optimizer", "adam", "--lr", "0.01"]) == 0
    ck = checkpoints(tmp_path / "adam+try=0")[-1][2]
    capsys.readouterr()
    assert cli(["--set", "Digits", "--epochs", "2", "--save", "--log-dir", tmp_path, "--name", "sgd", "--resume", ck]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--optimizer adam" in err[0]
    assert not list(tmp_path.glob("sgd*"))
    # Other --wd and --momentum: the run uses (and records) the new values.
    assert cli(["--set", "Digits", "--epochs", "1", "--save", "--log-dir", tmp_path, "--name", "a"]) == 0
    ck = checkpoints(tmp_path / "a+try=0")[-1][2]
    assert cli(["--set", "Digits", "--epochs", "2", "--save", "--log-dir", tmp_path, "--name", "b", "--resume", ck, "--wd", "0.003", "--momentum", "0.5"]) == 0
    final = final_state(tmp_path / "b+try=0")
    group = final["optimizers"][0]["param_groups"][0]
    assert group["weight_decay"] == 0.003 and group["momentum"] == 0.5
    assert final["settings"]["wd"] == 0.003


def test_a_checkpoint_without_an_epoch_is_a_one_line_error(tmp_path, capsys):
    from subspaces.utils.checkpoint import save_checkpoint

    assert cli(["--set", "Digits", "--epochs", "1", "--save", "--log-dir", tmp_path, "--name", "a"]) == 0
    ck = load_checkpoint(checkpoints(tmp_path / "a+try=0")[-1][2])
    save_checkpoint(tmp_path / "bare.pt", {"state_dicts": ck["state_dicts"]})
    capsys.readouterr()
    assert cli(["--set", "Digits", "--epochs", "2", "--save", "--log-dir", tmp_path, "--name", "b", "--resume", tmp_path / "bare.pt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--pretrained" in err[0] and not list(tmp_path.glob("b+try*"))
    assert cli(["--set", "Digits", "--epochs", "1", "--save-data", "--log-dir", tmp_path, "--name", "c", "--resume", tmp_path / "bare.pt", "--pretrained"]) == 0


def test_a_trainer_is_one_decorated_class(tmp_path):
    """What adding a trainer takes: a class with the decorator; main runs it through its hooks."""
    calls = []

    @TRAINERS.register
    class HalfLR(Trainer):
        name = "toy_half_lr"

        @classmethod
        def adjust_settings(cls, s):
            calls.append("adjust")
            return s

        def learning_rate(self, epoch, schedule):
            calls.append(("lr", epoch))
            return schedule(epoch) / 2

        def test(self, ctx, epoch):
            acc, metrics = metrics_of(self.settings, ctx, ctx.models[0])
            return Result(acc, {"toy": 1.0, **metrics})

    try:
        s = parse_args(["--set", "Digits", "--trainer", "toy_half_lr", "--epochs", "2", "--save-data", "--log-dir", str(tmp_path), "--lr", "0.2"])
        summary = main_mod.main(s)
        assert calls == ["adjust", ("lr", 0), ("lr", 1)]
        assert summary.curr_acc1 > 0.5
        row = read_results(tmp_path / "results.csv")[0]
        assert row["trainer"] == "toy_half_lr" and row["toy"] == "1"
    finally:
        TRAINERS._entries.pop("toy_half_lr", None)


def test_main_names_no_trainer():
    text = (ROOT / "main.py").read_text()
    for name, _ in TRAINERS.items():
        assert f'"{name}"' not in text and f"'{name}'" not in text, name
    assert "swa" not in text.lower().replace("swap", "")


def test_a_mid_epoch_checkpoint_of_two_processes_needs_two(tmp_path, capsys):
    from subspaces.utils.checkpoint import save_checkpoint

    assert cli(LINE + ["--epochs", 1, "--save", "--log-dir", tmp_path, "--name", "m", "--save-iters", "4"]) == 0
    ck = load_checkpoint(tmp_path / "m+try=0" / "epoch_0_iter_4.pt")
    ck["rng"] = {"ranks": [ck["rng"], ck["rng"]]}  # as a 2-process run saves it
    save_checkpoint(tmp_path / "two.pt", ck)
    capsys.readouterr()
    assert cli(LINE + ["--epochs", 1, "--save", "--log-dir", tmp_path, "--name", "r", "--resume", tmp_path / "two.pt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 process(es)" in err[0] and not list(tmp_path.glob("r+try*"))


def test_a_full_disk_at_the_end_says_where_the_run_is(tmp_path, capsys, monkeypatch):
    import errno

    def full(path, rows, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(main_mod, "append_rows", full)
    assert cli(["--set", "Digits", "--epochs", "1", "--save", "--log-dir", tmp_path, "--name", "d"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "No space left" in err[-1] and str(tmp_path / "d+try=0") in err[-1]
    assert checkpoints(tmp_path / "d+try=0")[-1][0] == 1  # the final checkpoint is kept


def test_an_output_size_below_the_classes_is_a_one_line_error(tmp_path, capsys):
    assert cli(["--set", "Digits", "--epochs", "1", "--output-size", "5", "--save", "--log-dir", tmp_path, "--name", "o"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--output-size 10" in err[0] and not list(tmp_path.glob("o+try*"))
