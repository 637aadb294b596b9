"""results.csv: one row per finished run, with a real header that grows with new columns.

Columns start as the original's (``Date Finished, Name, curr_acc1, best_acc1, train_loss``),
then the trainer's metrics, then the run's settings, so analysis can group by columns as well as
by the ``key=value`` pairs of the run name. A row with new columns rewrites the file with the
union of the columns (atomically), so no header is fixed by whichever run wrote first.

Runs that share a log folder append under a lock (``results.csv.lock``, an OS file lock that
dies with its process), so no row is lost, doubled or torn when they finish at the same time.
A results file that is a folder, binary or not a results CSV is a one-line error, found by
:func:`check_log_dir` before a run starts.
"""
from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path

from filelock import FileLock, Timeout

from subspaces.utils.errors import UserError
from subspaces.utils.io import atomic_write_text

BASE_COLUMNS = ["Date Finished", "Name", "curr_acc1", "best_acc1", "train_loss"]
# How long a finishing run waits for others to append (an append of a 5,000-row file takes ~50 ms).
LOCK_TIMEOUT_S = 300.0


def _fmt(v: object) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return format(v, ".10g")
    if isinstance(v, (list, tuple)):
        return ";".join(_fmt(x) for x in v)
    return "" if v is None else str(v)


def lock_file(path: "str | Path") -> Path:
    """The lock file that guards the results file at ``path``: ``<path>.lock``."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def _not_results(path: Path, why: str) -> UserError:
    return UserError(f"{path} {why}, not a results.csv; move it away or pass another --log-dir")


def read_results(path: "str | Path") -> list:
    """The rows of a results.csv as dicts of strings (empty list if the file does not exist).

    A folder, a binary file or a text file without a ``Name`` column raises a one-line UserError.
    """
    path = Path(path)
    if not path.exists():
        return []
    if not path.is_file():
        raise _not_results(path, "is a folder")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise _not_results(path, "is binary (not UTF-8 text)") from None
    if "\0" in text:
        raise _not_results(path, "is binary (holds NUL bytes)")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except csv.Error as e:
        raise _not_results(path, f"is not valid CSV ({e})") from None
    if text.strip() and "Name" not in [c.strip() for c in reader.fieldnames or ()]:
        raise _not_results(path, "has no 'Name' column in its header")
    return rows


def check_log_dir(log_dir: "str | Path") -> None:
    """Raise a one-line UserError if runs cannot write their folders and rows into ``log_dir``.

    Called before a run makes anything: ``log_dir`` must be (or be creatable as) a writable folder,
    and its ``results.csv``, if present, a readable results file.
    """
    if "\0" in str(log_dir):
        raise UserError(f"--log-dir {str(log_dir)!r} holds a NUL byte; pass a folder name without it")
    root = Path(log_dir).expanduser()
    existing = root
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent  # the folder that the run's mkdir will create things in
    if not existing.is_dir():
        where = "is" if existing == root else f"is under {existing}, which is"
        raise UserError(f"--log-dir {log_dir} {where} a file, not a folder; pass a folder to --log-dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--log-dir {log_dir}: cannot write in {existing} (read-only); pass a writable --log-dir")
    if existing == root:
        if lock_file(root / "results.csv").is_dir():
            raise UserError(f"{lock_file(root / 'results.csv')} is a folder; remove it or pass another --log-dir")
        read_results(root / "results.csv")


def _rewrite_with(path: Path, rows: list) -> None:
    existing = read_results(path)
    columns = list(BASE_COLUMNS)
    for row in existing + rows:
        for k in row:
            if k not in columns:
                columns.append(k)
    now = time.strftime("%m-%d-%y_%H:%M:%S")
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for row in existing:
        w.writerow({k: row.get(k, "") for k in columns})
    for row in rows:
        full = {"Date Finished": now, **row}
        w.writerow({k: _fmt(full.get(k)) for k in columns})
    atomic_write_text(path, out.getvalue())


def append_rows(path: "str | Path", rows: list, timeout: float = LOCK_TIMEOUT_S) -> None:
    """Append ``rows`` (dicts) to the results file at ``path``: read, extend, replace atomically,
    all under ``<path>.lock`` so that runs finishing together keep every row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_file(path)
    try:
        with FileLock(str(lock), timeout=timeout):
            _rewrite_with(path, rows)
    except Timeout:
        raise UserError(f"waited {timeout:g} s for {lock}, held by another process writing {path.name}; "
                        "let that process finish (or stop it), then run again") from None


def parse_name(name: str) -> dict:
    """``id=lines+seed=0+try=1`` -> ``{"id": "lines", "seed": "0", "try": "1"}``."""
    out = {}
    for part in name.split("+"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out
