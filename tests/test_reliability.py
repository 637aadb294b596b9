"""Never lose a run, outside the training loop: results rows, log folders, file modes, flag values,
interrupted runs. Each test shows one row of RELIABILITY.md."""
from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from subspaces.utils.errors import UserError
from subspaces.utils.io import atomic_write_text
from subspaces.utils.results import BASE_COLUMNS, append_rows, check_log_dir, read_results
from tests.helpers import cli

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "Digits", "--epochs", "1", "--width-mult", "0.25", "--batch-size", "128"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def tree(root: Path) -> list:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.is_dir() else []


def row(name: str, **extra) -> dict:
    return {"Name": name, "curr_acc1": 0.5, "best_acc1": 0.5, "train_loss": 1.0, **extra}


# --- results.csv under concurrent runs ------------------------------------------------------------

APPENDER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from subspaces.utils.results import append_rows
path, me, n, go = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
while not go.exists():
    time.sleep(0.002)
for k in range(n):
    extra = {f"extra{me}": k} if k % 3 == 0 else {}  # new columns too: the header grows under the lock
    append_rows(path, [{"Name": f"p{me}_{k}", "curr_acc1": 0.25, "best_acc1": 0.25, "train_loss": 1.0, **extra}])
"""


def test_concurrent_appends_keep_every_row_once(tmp_path):
    """8 processes appending at once to a 5,000-row results.csv: every row kept, once, whole."""
    path = tmp_path / "results.csv"
    append_rows(path, [row(f"pre{i}", seed=i) for i in range(5000)])
    go, procs, per_proc = tmp_path / "go", 8, 12
    ps = [subprocess.Popen([sys.executable, "-c", APPENDER, str(ROOT), str(path), str(i), str(per_proc), str(go)])
          for i in range(procs)]
    time.sleep(1.0)  # let every process reach its start line
    go.touch()
    assert [p.wait(timeout=300) for p in ps] == [0] * procs
    rows = read_results(path)
    names = [r["Name"] for r in rows]
    expected = [f"pre{i}" for i in range(5000)] + [f"p{i}_{k}" for i in range(procs) for k in range(per_proc)]
    assert len(rows) == 5000 + procs * per_proc
    assert sorted(names) == sorted(expected)  # none lost, none doubled
    assert names[:5000] == expected[:5000]  # the old rows stay first, in order
    header = path.read_text().splitlines()[0].split(",")
    assert header[:5] == BASE_COLUMNS and "seed" in header
    assert {f"extra{i}" for i in range(procs)} <= set(header)
    assert all(r["curr_acc1"] in ("0.5", "0.25") for r in rows)  # no torn row
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_results_lock_timeout_is_one_line_naming_the_lock(tmp_path):
    path = tmp_path / "results.csv"
    append_rows(path, [row("a")])
    before = path.read_bytes()
    with FileLock(str(tmp_path / "results.csv.lock")):  # another run holding the lock
        with pytest.raises(UserError) as e:
            append_rows(path, [row("b")], timeout=0.2)
    msg = str(e.value)
    assert "results.csv.lock" in msg and "\n" not in msg
    assert path.read_bytes() == before
    append_rows(path, [row("b")], timeout=0.2)  # released: the row goes in
    assert [r["Name"] for r in read_results(path)] == ["a", "b"]


def test_results_lock_of_a_killed_run_does_not_block(tmp_path):
    """The lock is the OS's (flock): a run killed while holding it does not leave the folder locked."""
    path = tmp_path / "results.csv"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
                               "print('held', flush=True); time.sleep(120)", str(tmp_path / "results.csv.lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError):
            append_rows(path, [row("a")], timeout=0.1)
    finally:
        holder.kill()  # SIGKILL while holding the lock
        holder.communicate(timeout=60)
    append_rows(path, [row("a")], timeout=5)
    assert [r["Name"] for r in read_results(path)] == ["a"]


# --- log folders that cannot take a run, refused before it starts -------------------------------


@contextmanager
def read_only(folder: Path):
    """``folder`` made read-only: by its mode, or (as root, whom modes do not stop) immutable."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("running as root without chattr +i: no way to make a folder read-only here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def _refused(capsys, log: Path, expect: str) -> None:
    before = tree(log)
    rc = cli(TINY + ["--save", "--log-dir", log, "--name", "r"])
    line = one_error_line(capsys)
    assert rc == 2 and expect in line, line
    assert tree(log) == before  # no run folder, no row, no lock file


def test_log_dir_under_a_file(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("x")
    _refused(capsys, f / "logs", "notes.txt")
    _refused(capsys, f, "is a file")
    assert f.read_text() == "x"


def test_log_dir_results_csv_is_a_folder(tmp_path, capsys):
    log = tmp_path / "logs"
    (log / "results.csv").mkdir(parents=True)
    _refused(capsys, log, "is a folder")


@pytest.mark.parametrize("content, expect", [
    (bytes(range(256)) * 4, "not UTF-8"),
    (b"Date Finished,Name\n\x00\x00\x00", "NUL"),
    (b"just some notes\nnot a table\n", "'Name' column"),
])
def test_log_dir_results_csv_is_not_a_results_file(tmp_path, capsys, content, expect):
    log = tmp_path / "logs"
    log.mkdir()
    (log / "results.csv").write_bytes(content)
    _refused(capsys, log, expect)
    assert (log / "results.csv").read_bytes() == content
    with pytest.raises(UserError, match=expect.replace("'", ".")) as e:
        read_results(log / "results.csv")
    assert "\n" not in str(e.value)


def test_log_dir_read_only(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only(ro):
        _refused(capsys, ro, "read-only")
        _refused(capsys, ro / "logs", "read-only")  # the folder to make it in is read-only
    assert tree(ro) == []


def test_good_log_dirs_pass(tmp_path):
    check_log_dir(tmp_path / "new" / "deeper")  # made later by the run
    append_rows(tmp_path / "results.csv", [row("a")])
    check_log_dir(tmp_path)
    assert not (tmp_path / "new").exists()  # checking makes nothing


# --- file modes of atomic writes ------------------------------------------------------------------


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_new_files_get_the_umask_mode(tmp_path, mask):
    with umask(mask):
        atomic_write_text(tmp_path / "a.txt", "x")
        append_rows(tmp_path / "results.csv", [row("a")])
    assert mode(tmp_path / "a.txt") == 0o666 & ~mask
    assert mode(tmp_path / "results.csv") == 0o666 & ~mask


@pytest.mark.parametrize("keep", [0o664, 0o600, 0o644])
def test_replaced_files_keep_their_mode(tmp_path, keep):
    path = tmp_path / "results.csv"
    append_rows(path, [row("a")])
    path.chmod(keep)
    with umask(0o077):
        append_rows(path, [row("b")])
        atomic_write_text(tmp_path / "results.csv", path.read_text())
    assert mode(path) == keep and len(read_results(path)) == 2


def test_atomic_write_syncs_the_file_before_the_rename(tmp_path, monkeypatch):
    """The data reach the disk before the rename, and the rename too: a power cut leaves old or new."""
    import subspaces.utils.io as uio

    events, real_fsync, real_replace = [], os.fsync, os.replace
    monkeypatch.setattr(uio.os, "fsync", lambda fd: (events.append(("fsync", os.fstat(fd).st_ino)), real_fsync(fd)))
    monkeypatch.setattr(uio.os, "replace", lambda a, b: (events.append(("replace", os.stat(a).st_ino)), real_replace(a, b)))
    atomic_write_text(tmp_path / "a.txt", "hello")
    ino = (tmp_path / "a.txt").stat().st_ino
    assert events.index(("fsync", ino)) < events.index(("replace", ino))
    assert ("fsync", tmp_path.stat().st_ino) in events


# --- flag values no run can use ---------------------------------------------------------------------


@pytest.mark.parametrize("flags, expect", [
    (["--alphas", "0.5,,1"], "--alphas '0.5,,1' has an empty item"),
    (["--alphas", ","], "empty item"),
    (["--alphas", ""], "empty item"),
    (["--alphas", "0.5,x"], "'x', which is not a number"),
    (["--save-epochs", "1,"], "--save-epochs"),
    (["--resume", "a.pt,,b.pt"], "--resume 'a.pt,,b.pt' has an empty item"),
    (["--width-mult", "0"], "--width-mult"),
    (["--width-mult", "-1"], "--width-mult"),
    (["--width-mult", "nan"], "--width-mult"),
    (["--lr", "-0.1"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--momentum", "-1"], "--momentum"),
    (["--wd", "-1"], "--wd"),
    (["--test-batch-size", "0"], "--test-batch-size"),
    (["--warmup-length", "-1"], "--warmup-length"),
    (["--name", "../../x"], "single folder name"),
    (["--name", "a/b"], "single folder name"),
    (["--name", ".."], "single folder name"),
    (["--name", "."], "single folder name"),
    (["--name", "a\0b"], "single folder name"),
    (["--name", "x" * 300], "--name"),
    (["--sev", "0"], "--sev"),
    (["--sev", "6"], "--sev"),
    (["--workers", "-1"], "--workers"),
    (["--test-freq", "0"], "--test-freq"),
    (["--dropout", "1.5"], "--dropout"),
    (["--data-seed", "-1"], "--data-seed"),
    (["--lr-adjust", "0"], "--lr-adjust"),
    (["--lr-gamma", "-0.1"], "--lr-gamma"),
    (["--output-size", "0"], "--output-size"),
    (["--save-epochs", "0"], "--save-epochs"),
    (["--save-iters", "-1"], "--save-iters"),
], ids=lambda v: repr(v) if isinstance(v, list) else None)
def test_flag_values_no_run_can_use(tmp_path, capsys, flags, expect):
    work = tmp_path / "a" / "b"
    log = work / "logs"
    work.mkdir(parents=True)
    argv = TINY + ["--save", "--log-dir", log] + (["--name", "r"] if "--name" not in flags else []) + flags
    assert cli(argv) == 2
    line = one_error_line(capsys)
    assert expect in line, line
    assert tree(tmp_path) == ["a", "a/b"]  # nothing written, inside the log folder or outside it


# --- data files ----------------------------------------------------------------------------------------


def test_bad_input_with_label_noise_leaves_no_noise_file(tmp_path, capsys):
    """The data set is built before the model is checked: its label-noise file waits for training."""
    log = tmp_path / "logs"
    assert cli(TINY + ["--save", "--log-dir", log, "--label-noise", "0.2", "--model", "NoSuchNet"]) == 2
    one_error_line(capsys)
    assert tree(tmp_path) == []
    assert cli(TINY + ["--save", "--log-dir", log, "--label-noise", "0.2", "--name", "ok"]) == 0
    assert (log / "label_noise").is_dir() and len(list((log / "label_noise").iterdir())) == 1


# --- interrupted runs ----------------------------------------------------------------------------------

# Runs main.py with a pause right after the checkpoint named argv[2] is written, announced on stdout.
PAUSING = """
import signal, sys, time
from pathlib import Path
# Ctrl-C as in a terminal: a shell's background job (CI under nohup, `cmd &`) inherits SIGINT
# ignored, and Python then installs no KeyboardInterrupt handler.
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, sys.argv[1])
import subspaces.utils.checkpoint as checkpoint
real, pause_after = checkpoint.atomic_write, sys.argv[2]
def write_then_pause(path, write):
    real(path, write)
    if Path(path).name.startswith(pause_after):
        print("SAVED", flush=True)
        time.sleep(120)
checkpoint.atomic_write = write_then_pause
from subspaces import main
sys.exit(main.cli(sys.argv[3:]))
"""


def _start_pausing(pause_after: str, argv: list) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", PAUSING, str(ROOT), pause_after, *map(str, argv)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    if p.stdout.readline().strip() != "SAVED":
        p.kill()
        pytest.fail(p.communicate()[1][-2000:])
    return p


@pytest.mark.slow
def test_kill_9_at_an_epoch_boundary_then_resume_is_bit_identical(tmp_path):
    base = TINY[:2] + ["--epochs", "2", "--width-mult", "0.25", "--save", "--log-dir", tmp_path, "--dropout", "0"]
    p = _start_pausing("epoch_1_", base + ["--name", "killed", "--save-epochs", "1"])
    p.kill()  # SIGKILL: no handler, no cleanup
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL
    killed = tmp_path / "killed+try=0"
    epoch1 = next(killed.glob("epoch_1_iter_*.pt"))
    assert not list(killed.glob(".*.tmp")) and not (tmp_path / "results.csv").exists()
    # The other two runs in processes like the killed one (same thread count: same float sums).
    for argv in (base + ["--name", "resumed", "--resume", epoch1], base + ["--name", "full"]):
        done = subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, argv)], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
    a = torch.load(next((tmp_path / "full+try=0").glob("epoch_2_*.pt")), weights_only=True)
    b = torch.load(next((tmp_path / "resumed+try=0").glob("epoch_2_*.pt")), weights_only=True)
    for k, v in a["state_dicts"][0].items():
        assert torch.equal(v, b["state_dicts"][0][k]), k


@pytest.mark.slow
def test_ctrl_c_exits_130_in_one_line(tmp_path):
    p = _start_pausing("epoch_0_", TINY + ["--save", "--log-dir", tmp_path, "--name", "c"])
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("interrupted; continue with --resume "), err[-2000:]
    ckpt = Path(last.split("--resume ", 1)[1])  # the checkpoint the run had saved, named whole
    assert ckpt.parent == tmp_path / "c+try=0" and ckpt.name.startswith("epoch_0_") and ckpt.is_file()


@pytest.mark.parametrize("save", [False, True])
def test_ctrl_c_before_any_checkpoint_says_nothing_was_saved(tmp_path, monkeypatch, capsys, save):
    """Ctrl-C in the first step: exit 130 and one line that promises no checkpoint it lacks."""
    from subspaces import main as main_mod

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(main_mod, "fit", interrupted)
    argv = TINY + ["--log-dir", str(tmp_path), "--name", "c"] + (["--save"] if save else [])
    assert main_mod.cli(argv) == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == ("interrupted; no checkpoint was saved" if save else "interrupted; nothing was saved (no --save)")

