"""results.csv: one row per finished run, with a real header that grows with new columns.

Columns start as the original's (``Date Finished, Name, curr_acc1, best_acc1, train_loss``),
then the trainer's metrics, then the run's settings, so analysis can group by columns as well as
by the ``key=value`` pairs of the run name. A row is appended in place; a row with new columns
rewrites the file with the union of the columns (atomically, every row kept), so no header is
fixed by whichever run wrote first. A results.csv that is a symlink (a shared file) is written
through: the row lands in the file it points at.

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
    """The lock file that guards the results file at ``path``: ``<path>.lock`` beside the file the
    path leads to (a ``results.csv`` that is a symlink to a shared file shares that file's lock)."""
    path = Path(os.path.realpath(Path(path).expanduser()))
    return path.with_name(path.name + ".lock")


def _not_results(path: Path, why: str) -> UserError:
    return UserError(f"{path} {why}, not a results.csv; move it away or pass another --log-dir")


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise _not_results(path, "is a folder")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise _not_results(path, "is binary (not UTF-8 text)") from None
    if "\0" in text:
        raise _not_results(path, "is binary (holds NUL bytes)")
    return text


def _check_header(path: Path, header: list) -> list:
    """The header's column names; a trailing empty name (the original's header ends with a comma
    when a run has no metrics) is dropped, a repeated or other empty name refused."""
    while header and header[-1] == "":
        header.pop()
    if "" in header:
        raise UserError(f"{path}: its header (line 1) has an empty column name (column {header.index('') + 1}), so values "
                        "under it would have no name; name that column in line 1, or move the file away")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise UserError(f"{path}: its header (line 1) names column {repeated[0]!r} twice, so one of the two values of every "
                        "row would be lost; rename one of them in line 1, or move the file away")
    return header


def _parse(path: Path, text: str) -> tuple:
    """``(header, rows)`` of a results file's text, rows as lists of strings as long as the header.

    A row with more (non-empty) fields than the header is refused, naming its line: its extra
    values have no column, and reading past them would drop them silently."""
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    header, rows = None, []
    try:
        for fields in reader:
            if not fields:
                continue
            fields = [v.strip() for v in fields]
            if header is None:
                header = _check_header(path, fields)
                continue
            if any(fields[len(header):]):
                raise UserError(f"{path}: line {reader.line_num} has {len(fields)} fields but the header names {len(header)} "
                                "columns; name the extra columns in the header (line 1), or move the file away")
            rows.append(fields[:len(header)] + [""] * (len(header) - len(fields)))
    except csv.Error as e:
        raise _not_results(path, f"is not valid CSV ({e})") from None
    if header is not None and "Name" not in header:
        raise _not_results(path, "has no 'Name' column in its header")
    return header or [], rows


def read_results(path: "str | Path") -> list:
    """The rows of a results.csv as dicts of strings (empty list if the file does not exist).

    A folder, a binary file, a text file without a ``Name`` column, a header with an empty or
    repeated column name, or a row with more fields than the header raises a one-line UserError.
    """
    path = Path(path)
    if not path.exists():
        return []
    header, rows = _parse(path, _read_text(path))
    return [dict(zip(header, r)) for r in rows]


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


def _lines(columns: list, rows: list) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerows([[_fmt(row.get(k)) for k in columns] for row in rows])
    return out.getvalue()


def _append(path: Path, rows: list) -> None:
    """Add ``rows`` to the results file ``path`` (no symlink): appended in place when the header has
    their columns, else the file is rewritten atomically with the header grown (every row kept)."""
    now = time.strftime("%m-%d-%y_%H:%M:%S")
    rows = [{"Date Finished": now, **r} for r in rows]
    text = _read_text(path) if path.exists() else ""
    header, existing = _parse(path, text)
    new = [k for r in rows for k in r if k not in header]
    new = list(dict.fromkeys(new))
    if header and not new:
        with open(path, "a", encoding="utf-8", newline="") as f:
            if text and not text.endswith("\n"):
                f.write("\n")  # a last line cut short stays its own row
            f.write(_lines(header, rows))
            f.flush()
            os.fsync(f.fileno())
        return
    columns = header + new if header else list(dict.fromkeys(BASE_COLUMNS + new))
    old = [dict(zip(header, r)) for r in existing]
    atomic_write_text(path, ",".join(columns) + "\n" + _lines(columns, old + rows))


def append_rows(path: "str | Path", rows: list, timeout: float = LOCK_TIMEOUT_S) -> None:
    """Append ``rows`` (dicts) to the results file at ``path``, under ``<path>.lock`` so that runs
    finishing together keep every row. Other rows are never rewritten, except when a row brings
    columns the header lacks: then the file is replaced atomically with the grown header. A symlink
    is followed: the row goes into the file it points at, which stays shared."""
    path = Path(os.path.realpath(Path(path).expanduser()))
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_file(path)
    try:
        with FileLock(str(lock), timeout=timeout):
            _append(path, rows)
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
