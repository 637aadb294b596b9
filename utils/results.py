"""results.csv: one row per finished run, with a real header that grows with new columns.

Columns start as the original's (``Date Finished, Name, curr_acc1, best_acc1, train_loss``),
then the trainer's metrics, then the run's settings, so analysis can group by columns as well as
by the ``key=value`` pairs of the run name. A row with new columns rewrites the file with the
union of the columns (atomically), so no header is fixed by whichever run wrote first.
"""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path

from utils.io import atomic_write_text

BASE_COLUMNS = ["Date Finished", "Name", "curr_acc1", "best_acc1", "train_loss"]


def _fmt(v: object) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return format(v, ".10g")
    if isinstance(v, (list, tuple)):
        return ";".join(_fmt(x) for x in v)
    return "" if v is None else str(v)


def read_results(path: "str | Path") -> list:
    """The rows of a results.csv as dicts of strings (empty list if the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in csv.DictReader(f, skipinitialspace=True)]


def append_rows(path: "str | Path", rows: list) -> None:
    """Append ``rows`` (dicts) to the results file at ``path`` in one atomic write."""
    path = Path(path)
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


def parse_name(name: str) -> dict:
    """``id=lines+seed=0+try=1`` -> ``{"id": "lines", "seed": "0", "try": "1"}``."""
    out = {}
    for part in name.split("+"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out
