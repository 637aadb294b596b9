"""The rows the figures draw: read from results.csv files, log folders or run folders, classified
by what each measured (its *kind*), filtered by ``--where key=value`` and grouped by the settings
that set one figure apart from another (data set, model, width, label noise, label smoothing).

A row's kind comes from the ``id`` of its run name when a config made it (``id=lines``,
``id=linestats-swa``, ...: :data:`ID_KINDS`), else from its settings columns (``trainer``,
``conv_type``, ``layerwise``, ``init_endpoints``: :func:`kind_by_settings`), as a run made by hand
with ``main.py`` has no ``id``. The configs' ids come first because they say what a config meant
where the settings cannot: an SWA run that also collects SWAG statistics, a curve fitted between
two trained networks, the aligned straight line whichever trainer computes it.
"""
from __future__ import annotations

import math
import re
from dataclasses import fields
from pathlib import Path
from typing import Iterable, Optional, Sequence

from subspaces.args import Settings
from subspaces.utils.errors import UserError
from subspaces.utils.results import parse_name, read_results

# The run name main.py gives when --name is not passed: two such runs are two runs, not one rerun.
DEFAULT_NAME = next(f.default for f in fields(Settings) if f.name == "name")

# Kinds of row the figures draw, by the configs' run ids. The learned subspaces' ids name both
# their training rows and their rows along the line; :func:`kind` tells them apart.
SUBSPACES = ("lines", "lines-layerwise", "curves")
ID_KINDS = {
    **{k: k for k in (*SUBSPACES, "base", "ensemble", "swa", "linestats-swa", "linestats-aligned", "simplex", "simplex-layerwise")},
    # Config ids no figure draws, whose settings alone would read as a kind that one draws.
    "swag": "swag", "connect-curves": "connected", "line-between": "connected",
}
# Columns whose values set one figure apart from another (rows that differ in any other column,
# e.g. seed, alpha or n, are points or repeats of the same figure).
GROUP_COLUMNS = ("set", "model", "model_name", "width_mult", "label_noise", "label_smoothing")


def num(row: dict, col: str) -> Optional[float]:
    """The column ``col`` of ``row`` as a float (None when empty or not a number)."""
    try:
        v = float(row.get(col, ""))
    except ValueError:
        return None
    return None if math.isnan(v) else v


def label_noise_of(row: dict) -> float:
    """The row's label noise: its column, else the ``ln=`` of its name, else 0 (none)."""
    v = num(row, "label_noise")
    if v is None:
        v = num(row["_tags"], "ln") or 0.0
    return v


def _flag(row: dict, col: str) -> bool:
    return row.get(col, "").strip().lower() in ("true", "1", "yes")


def along_a_line(row: dict) -> bool:
    """Whether the row is a point of Figure 4's grid (an evaluation at ``alpha1``), not a training run."""
    return row.get("trainer", "").startswith("eval_") or "alpha1" in row["_tags"]


def kind_by_settings(row: dict) -> Optional[str]:
    """What a row without a config id measured, from its settings columns (None: no figure's)."""
    trainer, conv = row.get("trainer", ""), row.get("conv_type", "")
    layerwise = _flag(row, "layerwise")
    if row.get("init_endpoints"):  # mode connectivity: a line or curve through trained networks
        return "connected"
    if trainer == "default" and conv in ("", "StandardConv"):
        return "base"
    if trainer in ("ensemble", "swa"):
        return trainer
    if trainer in ("train_one_dim_subspaces", "eval_one_dim_subspaces"):
        sub = {("LinesConv", False): "lines", ("LinesConv", True): "lines-layerwise", ("CurvesConv", False): "curves"}.get((conv, layerwise))
        return sub if sub is None or trainer.startswith("eval_") else f"{sub}-train"
    if trainer == "linestats_aligned" or (trainer == "linestats_swa" and row.get("align", "").lower() not in ("", "none", "false")):
        return "linestats-aligned"
    if trainer == "linestats_swa":
        return "linestats-swa"
    if trainer == "train_simplexes" and conv.startswith("SimplexConv"):
        return "simplex-layerwise" if layerwise else "simplex"
    return None


def kind(row: dict) -> Optional[str]:
    """What the row measured: ``lines`` (a point along a learned line), ``lines-train`` (its
    training run: the midpoint), ``base`` (standard training), ``linestats-swa``, ... or None."""
    k = ID_KINDS.get(row["_tags"].get("id", ""))
    if k is None:
        return kind_by_settings(row)
    return f"{k}-train" if k in SUBSPACES and not along_a_line(row) else k


def simplex_n(row: dict) -> Optional[float]:
    """A simplex row's number of vertices: its ``n`` column, else the n of ``SimplexConv<n>``."""
    n = num(row, "n")
    if n is not None and n > 0:
        return n
    m = re.fullmatch(r"SimplexConv(\d+)", row.get("conv_type", ""))
    return float(m.group(1)) if m else num(row["_tags"], "n")


# --- reading ------------------------------------------------------------------------------------


def _run_key(name: str) -> str:
    """Rows with the same key are attempts of one run (``+try=<i>``); a run named ``default`` (no
    ``--name``) is only itself."""
    given = re.split(r"\+try=\d+", name)[0]
    return name if given == DEFAULT_NAME else re.sub(r"\+try=\d+", "", name)


def latest(rows: Iterable[dict]) -> list:
    """Of several attempts of one run only the last row written (file order of the newest rows)."""
    out: dict = {}
    for row in rows:
        key = _run_key(row.get("Name", ""))
        out.pop(key, None)
        out[key] = row
    return list(out.values())


def load(path: Path, run: Optional[str] = None) -> list:
    """The rows of one results.csv (of run folder ``run`` only, when given), each with its parsed
    name under ``"_tags"``; of several attempts of one run only the last row written is kept."""
    rows = read_results(path)
    if run is not None:
        rows = [r for r in rows if r.get("Name", "") == run or r.get("Name", "").startswith(run + "+")]
    for row in rows:
        row["_tags"] = parse_name(row.get("Name", ""))
    return latest(rows)


def results_files(source: Path) -> list:
    """``[(results.csv, run folder name or None)]`` that ``source`` names: a results.csv, a log
    folder holding one, a run folder (``<log dir>/<name>+try=<i>``: the rows of that run), or a
    results root of the configs (``<root>/<family>/results.csv``)."""
    p = Path(source).expanduser()
    if p.is_file():
        return [(p, None)]
    if not p.is_dir():
        raise UserError(f"{source} does not exist; pass a results.csv, a log folder or a run folder")
    if (p / "results.csv").is_file():
        return [(p / "results.csv", None)]
    if (p / "settings.txt").is_file() or (p.parent / "results.csv").is_file():
        if not (p.parent / "results.csv").is_file():
            raise UserError(f"{source} is a run folder, but {p.parent / 'results.csv'} (its log folder's results) does not exist")
        return [(p.parent / "results.csv", p.name)]
    found = sorted(p.glob("*/results.csv"))
    if not found:
        raise UserError(f"{source} holds no results.csv (nor do its subfolders); pass a results.csv, a log folder or a run folder")
    return [(f, None) for f in found]


def read_sources(sources: Sequence[Path]) -> list:
    """The rows of every source (see :func:`results_files`), each file read once."""
    wanted: dict = {}  # file -> None (all rows) or the set of run folders
    for source in sources:
        for path, run in results_files(source):
            key = path.resolve()
            if key in wanted and wanted[key] is None:
                continue
            wanted[key] = None if run is None else {*(wanted.get(key) or ()), run}
    rows = []
    for path, runs in wanted.items():
        if runs is None:
            rows += load(path)
        else:
            rows += [r for run in sorted(runs) for r in load(path, run)]
    return rows


# --- filtering and grouping ---------------------------------------------------------------------


def setting(row: dict, col: str) -> str:
    """The row's ``col`` as text that compares equal for equal settings (``0`` = ``0.0``; an empty
    label noise or label smoothing is none, 0)."""
    if col == "label_noise":
        return format(label_noise_of(row), "g")
    raw = row.get(col, row["_tags"].get(col, ""))
    if col == "label_smoothing" and raw == "":
        raw = "0"
    v = num({col: raw}, col)
    if v is not None:
        return format(v, "g")
    return raw.lower() if raw.lower() in ("true", "false") else raw


def parse_where(items: Sequence[str]) -> dict:
    """``["label_noise=0.2", "model=DigitsConvNet"]`` -> ``{"label_noise": "0.2", ...}``."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"--where {item!r} is not key=value; e.g. --where label_noise=0.2")
        out[key.strip()] = value.strip()
    return out


def where(rows: list, conditions: dict) -> list:
    """The rows whose settings equal ``conditions`` (``setting`` on both sides); a key no row has
    is a UserError naming the columns there are."""
    for key in conditions:
        if rows and key != "label_noise" and not any(key in r or key in r["_tags"] for r in rows):
            cols = sorted({c for r in rows for c in r if not c.startswith("_")})
            raise UserError(f"--where {key}: no row has a column {key!r}; the columns are {', '.join(cols)}")
    want = {k: setting({k: v, "_tags": {}}, k) for k, v in conditions.items()}
    return [r for r in rows if all(setting(r, k) == v for k, v in want.items())]


def groups(rows: list, columns: Sequence[str] = GROUP_COLUMNS) -> list:
    """``[(settings, rows)]``: the rows split by their values of ``columns``, in order of first
    appearance; ``settings`` holds the columns whose values differ between groups."""
    split: dict = {}
    for r in rows:
        split.setdefault(tuple(setting(r, c) for c in columns), []).append(r)
    differ = [i for i, c in enumerate(columns) if len({key[i] for key in split}) > 1]
    return [({columns[i]: key[i] for i in differ}, rs) for key, rs in split.items()]


def describe_group(settings: dict) -> str:
    """``label_noise=0.2+model=X`` (empty for the only group)."""
    return "+".join(f"{k}={v}" for k, v in settings.items())
