"""Never lose a run, part 2 (issues 19, 20, 22): checkpoint names never reused, no checkpoint of
NaN weights, results.csv appended in place, sweeps that cannot read a run folder stop, writes that
fail mid-run, malformed checkpoints, resume checks, a resumed run in its own folder, last.pt.
Each test shows one row of RELIABILITY.md."""
from __future__ import annotations

import errno
import importlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from subspaces import main as main_mod
from subspaces import sweep
from subspaces.args import Settings, replace
from subspaces.sweep import run_cli
from subspaces.trainers import Position, Trainer
from subspaces.trainers.loop import Progress
from subspaces.utils import run_folder
from subspaces.utils.checkpoint import count_non_finite, load_checkpoint, save_checkpoint, tensors_of
from subspaces.utils.errors import Diverged, UserError
from subspaces.utils.results import append_rows, check_log_dir, read_results
from subspaces.utils.run_folder import RunFolder, checkpoint_files, point_last, resume_file
from tests.helpers import cli

TINY = ["--set", "Digits", "--width-mult", "0.25", "--batch-size", "512"]  # 3 steps per epoch
TRAINED = TINY + ["--epochs", "2", "--save", "--save-epochs", "1", "--save-iters", "0,3,4"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def last_error_line(capsys) -> str:
    """The error line that ends a run stopped mid-way (after its progress lines), with no traceback."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and not any("Traceback" in line for line in err), err
    return err[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 2-epoch run with --save-epochs 1 --save-iters 0,3,4: the checkpoint after step 0
    has the initialisation's original name, the one after step 3 the name of epoch 1's start."""
    log = tmp_path_factory.mktemp("trained")
    assert cli(TRAINED + ["--log-dir", log, "--name", "a"]) == 0
    return log


def copy_log(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "log", symlinks=True))


def run_settings(log: Path) -> Settings:
    """The fixture run's settings, as a sweep that finds its folder in ``log`` would have them."""
    saved = json.loads((log / "a+try=0" / "settings.txt").read_text())
    return replace(Settings.from_dict(saved), log_dir=str(log), name="a", resume=None)


def planned(log: Path) -> sweep.Plan:
    return sweep.plan(sweep.Run(run_settings(log)), SimpleNamespace(force=False))


# --- checkpoint names ---------------------------------------------------------------------------


def test_save_iters_never_replace_a_checkpoint(trained, tmp_path):
    run_dir = trained / "a+try=0"
    files = checkpoint_files(run_dir)
    assert [c.path.name for c in files] == ["epoch_0_iter_0.pt", "epoch_0_iter_0_mid.pt", "epoch_1_iter_3.pt",
                                            "epoch_1_iter_3_mid.pt", "epoch_1_iter_4.pt", "epoch_2_iter_6.pt"]
    cks = [load_checkpoint(c.path) for c in files]
    assert [(ck["epoch"], ck["batch"]) for ck in cks] == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 0)]
    first = next(iter(cks[0]["state_dicts"][0]))
    assert not torch.equal(cks[0]["state_dicts"][0][first], cks[1]["state_dicts"][0][first])  # the initialisation kept
    assert os.readlink(run_dir / "last.pt") == "epoch_2_iter_6.pt"
    # A sweep orders them as written: it resumes from the newest and prunes all but the first and last.
    log = copy_log(trained, tmp_path)
    for name in ("epoch_2_iter_6.pt", "epoch_1_iter_4.pt"):
        (log / "a+try=0" / name).unlink()
    (log / "results.csv").unlink()
    p = planned(log)
    assert p.action == "resume" and p.settings.resume == (str(log / "a+try=0" / "epoch_1_iter_3_mid.pt"),)
    pruned = Path(shutil.copytree(trained, tmp_path / "pruned", symlinks=True))
    sweep.prune(run_settings(pruned))
    assert [c.path.name for c in checkpoint_files(pruned / "a+try=0")] == ["epoch_0_iter_0.pt", "epoch_2_iter_6.pt"]
    assert os.readlink(pruned / "a+try=0" / "last.pt") == "epoch_2_iter_6.pt"


# --- no checkpoint of NaN weights ------------------------------------------------------------------


def test_non_finite_tensors_are_counted_exactly():
    huge = torch.full((4,), 1e30)  # finite, but its norm overflows float32
    ts = [torch.ones(3), huge, torch.tensor([0.0, float("nan")]), torch.tensor([float("-inf")]), torch.zeros(2, dtype=torch.long)]
    assert count_non_finite(ts) == 2
    assert count_non_finite(tensors_of({"a": [huge, {"b": torch.ones(2, dtype=torch.float64)}]})) == 0


def test_the_checkpointer_refuses_non_finite_weights_or_optimizer_state(tmp_path):
    s = replace(Settings(), save=True, log_dir=str(tmp_path), name="n", model="Linear")
    net = nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    with RunFolder(s) as folder:
        save = folder.checkpointer([net], [opt], Trainer(s), Progress(), 3, newest="earlier.pt")
        with torch.no_grad():
            net.weight[0, 0] = float("nan")
        with pytest.raises(Diverged, match="1 tensors"):
            save(Position(1))
        with torch.no_grad():
            net.weight.fill_(1.0)
        opt.state[net.weight]["momentum_buffer"] = torch.full((2, 2), float("inf"))
        with pytest.raises(Diverged):
            save(Position(1, 2))
        assert save.good_hint() == "the newest good checkpoint is earlier.pt"
        assert checkpoint_files(folder.path) == []
        opt.state[net.weight]["momentum_buffer"].fill_(0.0)
        assert save(Position(1)) == str(folder.path / "epoch_1_iter_3.pt") and save.newest == str(folder.path / "epoch_1_iter_3.pt")


def test_a_diverging_run_names_its_newest_good_checkpoint(tmp_path, capsys):
    """With --lr 1e8 the update after step 3 makes the weights NaN though that step's loss was finite:
    the save after it is refused (before this check it held 3 non-finite tensors)."""
    argv = ["--set", "Digits", "--width-mult", "0.25", "--batch-size", "128", "--epochs", 1, "--lr", "1e8"]
    assert cli(argv + ["--save", "--log-dir", tmp_path, "--name", "nan", "--save-iters", "0,1,2,3,4,5"]) == 2
    line = last_error_line(capsys)
    assert "of the weights or optimizer state became NaN or infinite" in line
    files = checkpoint_files(tmp_path / "nan+try=0")
    assert f"the newest good checkpoint is {files[-1].path}" in line, line
    for c in files:
        ck = load_checkpoint(c.path)
        assert count_non_finite(tensors_of([ck["state_dicts"], ck["optimizers"]])) == 0, c.path.name
    assert not (tmp_path / "results.csv").exists()


# --- results.csv ------------------------------------------------------------------------------------


def row(name: str, **extra) -> dict:
    return {"Name": name, "curr_acc1": 0.5, "best_acc1": 0.5, "train_loss": 1.0, **extra}


def test_results_rows_are_appended_in_place(tmp_path):
    path = tmp_path / "results.csv"
    # The original's format: spaces after commas, and a trailing comma when a run has no metrics.
    original = "Date Finished,Name,curr_acc1,best_acc1,train_loss,\n01-01-21_00:00:00, old+try=0, 0.5000, 0.5000, 1.0000, \n"
    path.write_text(original)
    append_rows(path, [row("new")])
    assert path.read_text().startswith(original)  # the other rows are not rewritten
    append_rows(path, [row("wide", seed=3)])  # a new column: the header grows, every row kept
    rows = read_results(path)
    assert [r["Name"] for r in rows] == ["old+try=0", "new", "wide"] and [r["seed"] for r in rows] == ["", "", "3"]
    assert rows[0]["curr_acc1"] == "0.5000"


def test_a_results_csv_symlink_is_written_through(tmp_path):
    shared = tmp_path / "shared" / "results.csv"
    append_rows(shared, [row("a")])
    log = tmp_path / "log"
    log.mkdir()
    (log / "results.csv").symlink_to(shared)
    append_rows(log / "results.csv", [row("b")])  # appended in place
    append_rows(log / "results.csv", [row("c", seed=1)])  # the header grows: the target is replaced
    check_log_dir(log)
    assert (log / "results.csv").is_symlink() and [r["Name"] for r in read_results(shared)] == ["a", "b", "c"]
    assert [p.name for p in log.iterdir()] == ["results.csv"]


@pytest.mark.parametrize("text, expect", [
    ("Date Finished,Name,curr_acc1\nx,a,0.5,EXTRA\n", "line 2 has 4 fields but the header names 3"),
    ("Date Finished,Name,acc,acc\nx,a,0.5,0.6\n", "names column 'acc' twice"),
    ("Date Finished,,Name\nx,y,a\n", "empty column name"),
], ids=["extra-fields", "repeated-name", "empty-name"])
def test_results_that_would_lose_values_are_refused(tmp_path, text, expect):
    path = tmp_path / "results.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=expect) as e:
        read_results(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match=expect):
        append_rows(path, [row("b")])
    with pytest.raises(UserError, match=expect):
        check_log_dir(tmp_path)  # a run refuses it before starting
    assert path.read_text() == text


# --- sweeps that cannot read a run folder ------------------------------------------------------------


def test_a_sweep_decides_from_checkpoints_when_settings_txt_is_unreadable(trained, tmp_path):
    log = copy_log(trained, tmp_path)
    run_dir = log / "a+try=0"
    settings = run_settings(log)
    for garbage in (b"\x00\xffgarbage{", b"null", b"[1, 2]"):
        (run_dir / "settings.txt").write_bytes(garbage)
        assert sweep.plan(sweep.Run(settings), SimpleNamespace(force=False)).action == "skip"  # finished, not trained again
    (run_dir / "epoch_2_iter_6.pt").unlink()  # interrupted: resumed from its checkpoints, not restarted
    (log / "results.csv").unlink()
    p = sweep.plan(sweep.Run(settings), SimpleNamespace(force=False))
    assert p.action == "resume" and p.settings.resume == (str(run_dir / "epoch_1_iter_4.pt"),)
    for c in checkpoint_files(run_dir):  # nothing readable: stop, naming the folder
        c.path.write_bytes(b"junk")
    with pytest.raises(UserError, match="run folder .* cannot be read: settings.txt holds list") as e:
        sweep.plan(sweep.Run(settings), SimpleNamespace(force=False))
    assert str(run_dir) in str(e.value) and "\n" not in str(e.value)


# --- writes that fail mid-run ---------------------------------------------------------------------------


@pytest.mark.parametrize("failure, expect", [("full", "the disk is full"), ("read-only", "became read-only")])
def test_a_write_that_fails_mid_run_is_one_line(tmp_path, capsys, monkeypatch, failure, expect):
    """The second checkpoint write meets a full disk (its temp file opened on /dev/full: the real
    ENOSPC from torch.save) or a run folder made read-only (chattr +i as root, chmod otherwise)."""
    from subspaces.utils import checkpoint as checkpoint_mod

    if failure == "full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    real, calls, run_dir = checkpoint_mod.save_checkpoint, [], tmp_path / "d+try=0"

    def second_fails(path, payload):
        calls.append(path)
        if len(calls) == 2 and failure == "full":
            monkeypatch.setattr(checkpoint_mod, "open", lambda tmp, mode: open("/dev/full", mode), raising=False)
        if len(calls) == 2 and failure == "read-only":
            if os.geteuid() == 0:
                if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(run_dir)]).returncode:
                    raise OSError(errno.EROFS, os.strerror(errno.EROFS))
            else:
                run_dir.chmod(0o555)
        real(path, payload)

    monkeypatch.setattr(checkpoint_mod, "save_checkpoint", second_fails)  # run_folder imports it when it saves
    try:
        assert cli(TINY + ["--epochs", 1, "--save", "--log-dir", tmp_path, "--name", "d", "--save-iters", "0"]) == 2
    finally:
        if failure == "read-only" and os.geteuid() == 0 and shutil.which("chattr"):
            subprocess.run(["chattr", "-i", str(run_dir)])
        run_dir.chmod(0o755)
    line = last_error_line(capsys)
    assert expect in line and str(run_dir) in line and f"--resume {run_dir / 'epoch_0_iter_0.pt'}" in line, line
    assert sorted(p.name for p in run_dir.iterdir() if p.name.endswith((".pt", ".tmp"))) == ["epoch_0_iter_0.pt", "last.pt"]
    assert not (tmp_path / "results.csv").exists()


# --- malformed checkpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize("change, expect", [
    (lambda ck: ck["rng"].update(torch=torch.zeros(5, dtype=torch.uint8)), "'rng' 'torch' is not a generator state"),
    (lambda ck: ck.update(rng=[1, 2]), "'rng' is a list"),
    (lambda ck: ck.update(epoch="one"), "'epoch' is 'one', not a whole number"),
    (lambda ck: ck.update(epoch=1.5), "'epoch' is 1.5"),
    (lambda ck: ck.update(best_acc1="high"), "'best_acc1' is 'high', not a finite number"),
], ids=["rng-size", "rng-type", "epoch-text", "epoch-fraction", "accuracy-text"])
def test_a_malformed_checkpoint_is_refused_before_the_run_folder(trained, tmp_path, capsys, change, expect):
    ck = load_checkpoint(trained / "a+try=0" / "epoch_1_iter_4.pt")  # mid-epoch: holds generator states
    change(ck)
    save_checkpoint(tmp_path / "bad.pt", ck)
    assert cli(TINY + ["--epochs", 2, "--save", "--log-dir", tmp_path / "log", "--name", "r", "--resume", tmp_path / "bad.pt"]) == 2
    line = one_error_line(capsys)
    assert expect in line and "malformed" in line, line
    assert not (tmp_path / "log").exists()


def test_resuming_a_checkpoint_of_nan_weights_is_refused(trained, tmp_path, capsys):
    """Checkpoints written before the finite check existed may hold NaN weights: training from them is refused."""
    ck = load_checkpoint(trained / "a+try=0" / "epoch_1_iter_3.pt")
    next(v for v in ck["state_dicts"][0].values() if v.is_floating_point()).fill_(float("nan"))
    save_checkpoint(tmp_path / "nan.pt", ck)
    assert cli(TINY + ["--epochs", 2, "--save", "--log-dir", tmp_path / "log", "--name", "r", "--resume", tmp_path / "nan.pt"]) == 2
    assert "holds 1 tensors with NaN or infinite values" in one_error_line(capsys)
    assert not (tmp_path / "log").exists()


# --- flags accepted and ignored, numbers that are not numbers ---------------------------------------------


@pytest.mark.parametrize("flags, expect", [
    (["--lr", "nan"], "--lr nan is not a finite number"),
    (["--swa-lr", "nan", "--trainswa"], "--swa-lr nan is not a finite number"),
    (["--label-noise", "nan"], "--label-noise nan is not a finite number"),
    (["--alpha0", "nan"], "--alpha0 nan is not a finite number"),
    (["--alphas", "0,nan"], "--alphas nan is not a finite number"),
    (["--swag-scale", "inf"], "--swag-scale inf is not a finite number"),
    (["--checkpoint-every-minutes", "nan"], "--checkpoint-every-minutes nan is not a finite number"),
    (["--point-per-rank"], "--point-per-rank gives each DDP process its own point"),
    (["--swa-save-epochs", "1"], "--swa-save-epochs is read by --trainer swa"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_flags_that_would_be_ignored_or_misread_are_refused(tmp_path, capsys, flags, expect):
    assert cli(TINY + ["--epochs", 1, "--save", "--log-dir", tmp_path / "log"] + flags) == 2
    assert expect in one_error_line(capsys)
    assert not (tmp_path / "log").exists()


def test_a_run_that_writes_nothing_says_so_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(main_mod, "UNSAVED_WARNING_S", 0.01)
    assert cli(TINY + ["--epochs", 1]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "will write nothing" in warnings[0] and "--save" in warnings[0]
    with main_mod.warn_unsaved(replace(Settings(), save_data=True)):
        time.sleep(0.05)
    assert "warning" not in capsys.readouterr().err


def test_smoke_rows_never_mix_with_real_results(tmp_path, capsys):
    mod = importlib.import_module("experiment_configs.digits.one_dimensional_subspaces.train_lines")
    real = tmp_path / "real"
    append_rows(real / "one-dimensional-subspaces" / "results.csv", [row("x")])
    assert run_cli(mod.runs, mod.SETUP, argv=["--smoke", "--dry-run", "--log-dir", str(real)]) == 2
    assert "--smoke would write test rows into" in one_error_line(capsys)
    smoke = tmp_path / "smoke"
    smoke.mkdir()
    (smoke / sweep.SMOKE_MARKER).write_text("smoke\n")
    assert run_cli(mod.runs, mod.SETUP, argv=["--dry-run", "--log-dir", str(smoke)]) == 2
    assert "holds --smoke runs" in one_error_line(capsys)
    assert run_cli(mod.runs, mod.SETUP, argv=["--smoke", "--dry-run", "--log-dir", str(smoke)]) == 0
    assert run_cli(mod.runs, mod.SETUP, argv=["--smoke", "--dry-run", "--log-dir", str(tmp_path / "new")]) == 0
    assert not (tmp_path / "new").exists()  # a dry run writes nothing, not even the marker


# --- resume ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags, expect", [
    (["--width-mult", "0.5"], "--width-mult 0.25, not 0.5"),
    (["--conv-type", "LinesConv", "--bn-type", "LinesBN", "--trainer", "train_one_dim_subspaces"], "--trainer default, not train_one_dim_subspaces"),
    (["--set", "CIFAR10", "--width-mult", "0.25"], "--set Digits, not CIFAR10"),
])
def test_resume_refuses_a_contradicting_architecture_flag(trained, tmp_path, capsys, flags, expect):
    argv = ["--batch-size", "512", "--epochs", 3, "--save", "--log-dir", tmp_path / "log", "--name", "a",
            "--resume", trained / "a+try=0" / "epoch_2_iter_6.pt"]
    assert cli(argv + flags) == 2
    line = one_error_line(capsys)
    assert expect in line and "--pretrained" in line, line
    assert not (tmp_path / "log").exists()


def test_resume_takes_defaulted_architecture_flags_and_reports_changes(trained, tmp_path, capsys):
    final = trained / "a+try=0" / "epoch_2_iter_6.pt"
    # --width-mult left out (taken from the checkpoint), --lr and --epochs changed; --resume of a folder: its last.pt.
    assert cli(["--set", "Digits", "--batch-size", "512", "--epochs", 3, "--lr", "0.05", "--save", "--log-dir", tmp_path,
                "--name", "b", "--resume", trained / "a+try=0"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("resume:")]
    assert err == [f"resume: --width-mult 0.25 taken from {final}", "resume: --epochs 2 -> 3, --lr 0.1 -> 0.05"]
    saved = json.loads((tmp_path / "b+try=0" / "settings.txt").read_text())
    assert saved["width_mult"] == 0.25 and saved["resume"] == [str(final)] and saved["resumed_from"] == str(final)
    assert saved["changed_on_resume"] == {"epochs": [2, 3], "lr": [0.1, 0.05]}
    assert load_checkpoint(tmp_path / "b+try=0" / "epoch_3_iter_9.pt")["settings"]["changed_on_resume"]["lr"] == [0.1, 0.05]


def test_a_resumed_run_continues_in_its_own_folder(trained, tmp_path, capsys):
    log = copy_log(trained, tmp_path)
    run_dir = log / "a+try=0"
    (run_dir / "epoch_2_iter_6.pt").unlink()  # interrupted after the fifth step: no final checkpoint, no row
    (log / "results.csv").unlink()
    point_last(run_dir, run_dir / "epoch_1_iter_4.pt")
    capsys.readouterr()
    assert cli(TRAINED + ["--log-dir", log, "--name", "a", "--resume", run_dir]) == 0
    assert "resume:" not in capsys.readouterr().err  # the same settings: nothing to say
    assert sorted(p.name for p in log.iterdir()) == ["a+try=0", "results.csv", "results.csv.lock"]
    assert [r["Name"] for r in read_results(log / "results.csv")] == ["a+try=0"]
    assert os.readlink(run_dir / "last.pt") == "epoch_2_iter_6.pt"
    a, b = (load_checkpoint(d / "a+try=0" / "epoch_2_iter_6.pt")["state_dicts"][0] for d in (trained, log))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the run it continued, exactly
    assert json.loads((run_dir / "settings.txt").read_text())["resumed_from"] == str(run_dir / "epoch_1_iter_4.pt")
    # From an older checkpoint (here with another --lr: other weights), a new folder: no name is written twice.
    before = (run_dir / "epoch_2_iter_6.pt").read_bytes()
    assert cli(TRAINED + ["--log-dir", log, "--name", "a", "--lr", "0.05", "--resume", run_dir / "epoch_1_iter_3.pt"]) == 0
    assert "epoch_1_iter_3.pt is not the newest checkpoint of a+try=0" in capsys.readouterr().err
    assert (log / "a+try=1" / "epoch_2_iter_6.pt").exists() and (run_dir / "epoch_2_iter_6.pt").read_bytes() == before


def test_last_pt_is_a_link_or_else_a_copy(tmp_path, monkeypatch):
    for name in ("epoch_0_iter_0.pt", "epoch_1_iter_3.pt"):
        (tmp_path / name).write_bytes(name.encode())
    point_last(tmp_path, tmp_path / "epoch_1_iter_3.pt")
    assert os.readlink(tmp_path / "last.pt") == "epoch_1_iter_3.pt" and resume_file(tmp_path) == str(tmp_path / "epoch_1_iter_3.pt")

    def refuse(*a, **k):
        raise OSError(errno.EPERM, "not here")

    monkeypatch.setattr(os, "symlink", refuse)
    point_last(tmp_path, tmp_path / "epoch_0_iter_0.pt")  # a hard link
    assert not (tmp_path / "last.pt").is_symlink() and resume_file(tmp_path) == str(tmp_path / "epoch_0_iter_0.pt")
    monkeypatch.setattr(os, "link", refuse)
    point_last(tmp_path, tmp_path / "epoch_1_iter_3.pt")  # a copy
    assert (tmp_path / "last.pt").read_bytes() == b"epoch_1_iter_3.pt" and resume_file(tmp_path) == str(tmp_path / "last.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_0_iter_0.pt", "epoch_1_iter_3.pt", "last.pt"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="folder without last.pt"):
        resume_file(tmp_path / "empty")
