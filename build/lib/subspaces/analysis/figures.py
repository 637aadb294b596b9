"""Figures 4 and 5 and a calibration figure from the configs' results.csv files (no TeX needed).

The per-data-set scripts (``analyze_results/<dataset>/*.py``) only pick the data set; everything
else is here. Rows are read from the results.csv of each family of runs (the folders the configs
write, see :mod:`subspaces.sweep`), grouped by the ``id`` of their run name and by their
columns (``label_noise``, ``alpha1``, ``n``, ``num_models``, ``seed``), and averaged over seeds with
a shaded spread of one standard deviation. A rerun of a run (``+try=1``) replaces the older row.
Each figure is written as PNG and PDF, with a CSV of the plotted numbers beside it.
"""
from __future__ import annotations

import argparse
import inspect
import csv
import math
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display, no TeX
import matplotlib.pyplot as plt  # noqa: E402

from subspaces.sweep import ENSEMBLES, EVAL_ONE_DIM, MEMBERS, ONE_DIM, SIMPLEXES, SWA  # noqa: E402
from subspaces.utils.errors import UserError  # noqa: E402
from subspaces.utils.results import parse_name, read_results  # noqa: E402

plt.rcParams.update({"text.usetex": False, "font.size": 11, "axes.titlesize": 12, "legend.fontsize": 9})

# (id in the run name, legend label, colour, marker) -- the original's figure styles. The last is
# the learned line's baseline: the straight line between two separately trained networks
# (linestats_swa), its points and pair ensembles read from the same columns.
ONE_DIM_VARIANTS = (
    ("lines", "Line", "C0", "x"),
    ("lines-layerwise", "Line (Layerwise)", "C1", "d"),
    ("curves", "Curve", "C4", "^"),
    ("linestats-swa", "Line Between Two Trained Networks", "C3", "o"),
)
SIMPLEX_VARIANTS = (
    ("simplex", "Simplex (Midpoint)", "C0", "x"),
    ("simplex-layerwise", "Simplex (Layerwise, Midpoint)", "C1", "d"),
)
STANDARD = dict(color="#7f7f7f", ls="--", label="Standard Training")
ENSEMBLE = dict(color="#7f7f7f", ls=":", label="Standard Ensemble of Two")


class MissingRuns(UserError):
    """A figure's runs are not in the results files: the message names the configs to run."""


# --- reading rows -------------------------------------------------------------------------------


def num(row: dict, col: str) -> Optional[float]:
    """The column ``col`` of ``row`` as a float (None when empty or not a number)."""
    try:
        v = float(row.get(col, ""))
    except ValueError:
        return None
    return None if math.isnan(v) else v


def load(path: Path) -> list:
    """The rows of one results.csv, each with its parsed name under ``"_tags"``; of several
    attempts of one run (``+try=<i>``) only the last row written is kept."""
    latest: dict = {}
    for row in read_results(path):
        key = re.sub(r"\+try=\d+", "", row.get("Name", ""))
        row["_tags"] = parse_name(row.get("Name", ""))
        latest.pop(key, None)  # keep file order of the newest rows
        latest[key] = row
    return list(latest.values())


def label_noise_of(row: dict) -> float:
    v = num(row, "label_noise")
    if v is None:
        v = float(row["_tags"].get("ln", 0.0) or 0.0)
    return v


def select(rows: list, run_id: str, label_noise: Optional[float] = None, **columns: float) -> list:
    """Rows whose name has ``id=<run_id>``, at ``label_noise`` (any if None), with numeric ``columns``."""
    out = []
    for r in rows:
        if r["_tags"].get("id") != run_id:
            continue
        if label_noise is not None and not math.isclose(label_noise_of(r), label_noise, abs_tol=1e-9):
            continue
        if all(num(r, c) is not None and math.isclose(num(r, c), v, abs_tol=1e-9) for c, v in columns.items()):
            out.append(r)
    return out


def model_title(rows: list) -> str:
    """``cifar_resnet_20 (CIFAR10)`` from the rows' ``model_name``/``model`` and ``set`` columns."""
    for r in rows:
        model = r.get("model_name") or r.get("model")
        if model:
            return f"{model} ({r.get('set', '')})"
    return ""


# --- series -------------------------------------------------------------------------------------


@dataclass
class Series:
    """Values of one curve: ``x -> [value per seed]``."""

    label: str
    points: dict = field(default_factory=dict)

    def add(self, x: float, y: Optional[float]) -> None:
        if y is not None:
            self.points.setdefault(round(x, 6), []).append(y)

    def stats(self) -> list:
        """``[(x, mean, std, count)]`` sorted by x (std over seeds, 0 for one seed)."""
        return [(x, statistics.fmean(v), statistics.pstdev(v) if len(v) > 1 else 0.0, len(v))
                for x, v in sorted(self.points.items())]

    def __bool__(self) -> bool:
        return bool(self.points)


def series(rows: list, x_col: str, y_col: str, label: str) -> Series:
    s = Series(label)
    for r in rows:
        x = num(r, x_col)
        if x is not None:
            s.add(x, num(r, y_col))
    return s


def values(rows: list, col: str) -> list:
    return [v for v in (num(r, col) for r in rows) if v is not None]


def draw(ax, s: Series, color: str, ls: str = "-", marker: Optional[str] = None) -> None:
    """Mean over seeds with a shaded band of +- one standard deviation."""
    st = s.stats()
    xs, ys, sd = [p[0] for p in st], [p[1] for p in st], [p[2] for p in st]
    ax.plot(xs, ys, ls=ls, marker=marker, color=color, label=s.label, lw=2, ms=6, alpha=0.9)
    ax.fill_between(xs, [y - d for y, d in zip(ys, sd)], [y + d for y, d in zip(ys, sd)], color=color, alpha=0.2, lw=0)


def draw_flat(ax, xs: Sequence[float], vals: list, color: str, ls: str, label: str) -> None:
    """A baseline: the mean of ``vals`` as a flat line over ``xs``, its spread shaded."""
    mu = statistics.fmean(vals)
    sd = statistics.pstdev(vals) if len(vals) > 1 else 0.0
    lo, hi = min(xs), max(xs)
    ax.plot([lo, hi], [mu, mu], color=color, ls=ls, lw=2, label=label)
    ax.fill_between([lo, hi], [mu - sd] * 2, [mu + sd] * 2, color=color, alpha=0.15, lw=0)


# --- output -------------------------------------------------------------------------------------


@dataclass
class Figure:
    """What a figure function made: its files and the plotted numbers (``series, x, mean, std, n``)."""

    paths: list
    table: list

    def value(self, label: str, x: Optional[float] = None) -> Optional[tuple]:
        """``(mean, std, n)`` of series ``label`` at ``x`` (the only point when None)."""
        for lab, px, mean, std, n in self.table:
            if lab == label and (x is None or math.isclose(px, x, abs_tol=1e-6)):
                return mean, std, n
        return None


def save(fig, out_dir: Path, stem: str, table: list) -> Figure:
    """Write ``<stem>.png``, ``<stem>.pdf`` and ``<stem>.csv`` (the plotted numbers)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        p = out_dir / f"{stem}.{ext}"
        fig.savefig(p, bbox_inches="tight", dpi=150)
        paths.append(p)
    plt.close(fig)
    with open(out_dir / f"{stem}.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["series", "x", "mean", "std", "n"])
        w.writerows([lab, x, f"{m:.6g}", f"{s:.6g}", n] for lab, x, m, s, n in table)
    return Figure(paths, table)


def table_of(items: list) -> list:
    """Rows ``(label, x, mean, std, n)`` of Series and ``(label, vals)`` baselines (x = None)."""
    out = []
    for it in items:
        if isinstance(it, Series):
            out += [(it.label, x, m, s, n) for x, m, s, n in it.stats()]
        else:
            label, vals = it
            out.append((label, "", statistics.fmean(vals), statistics.pstdev(vals) if len(vals) > 1 else 0.0, len(vals)))
    return out


def ensemble_label(label: str) -> str:
    """``Line`` -> ``Line (Ensemble)``, ``Line (Layerwise)`` -> ``Line (Layerwise, Ensemble)``."""
    return label[:-1] + ", Ensemble)" if label.endswith(")") else label + " (Ensemble)"


def _missing(figure: str, root: Path, missing: list) -> MissingRuns:
    what = ", ".join(m[0] for m in missing)
    scripts = ", ".join(dict.fromkeys(f"python {m[1]}" for m in missing))
    return MissingRuns(f"cannot draw {figure}: no results for {what} under {root}; run {scripts} first")


def _config(key: str, rel: str) -> str:
    return f"experiment_configs/{key}/{rel}"


def _legend_below(fig, ax, ncol: int = 2) -> None:
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=ncol, frameon=False)


# --- the figures --------------------------------------------------------------------------------


def figure4(root: Path, out_dir: Path, key: str, label_noise: float = 0.0, partial: bool = False) -> Figure:
    """Figure 4: accuracy against alpha for lines, layerwise lines and curves -- each point alone
    (``curr_acc1`` at ``alpha1``) and the ensemble of the points alpha and 1 - alpha
    (``ensemble_acc``) -- against the same for the straight line between two separately trained
    networks (``linestats_swa``: ``(1 - alpha) w_a + alpha w_b``), with standard training and a
    standard ensemble of two as flat lines."""
    evals = load(root / EVAL_ONE_DIM / "results.csv")
    standard = values(select(load(root / MEMBERS / "results.csv"), "base", label_noise), "curr_acc1")
    ens2 = values(select(load(root / ENSEMBLES / "results.csv"), "ensemble", label_noise, num_models=2), "curr_acc1")
    missing, drawn = [], []
    for run_id, label, color, marker in ONE_DIM_VARIANTS:
        rows = select(evals, run_id, label_noise)
        if not rows:
            script = "eval_" + run_id.replace("-", "_") + ".py"
            missing.append((f"{EVAL_ONE_DIM}/id={run_id}", _config(key, f"one_dimensional_subspaces/{script}")))
            continue
        drawn.append((rows, label, color, marker))
    if not standard:
        missing.append((f"{MEMBERS}/id=base", _config(key, "ensembles/train_ensemble_members.py")))
    if not ens2:
        missing.append((f"{ENSEMBLES}/id=ensemble+num_models=2", _config(key, "ensembles/eval_ensembles.py")))
    if missing and (not partial or not drawn):
        raise _missing(f"Figure 4 (label noise {label_noise})", root, missing)

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    items = []
    for rows, label, color, marker in drawn:
        point = series(rows, "alpha1", "curr_acc1", label)
        ens = series(rows, "alpha1", "ensemble_acc", ensemble_label(label))
        draw(ax, ens, color, "-", marker)
        draw(ax, point, color, "--", marker)
        items += [point, ens]
    xs = [0.0, 1.0]
    if standard:
        draw_flat(ax, xs, standard, **STANDARD)
        items.append((STANDARD["label"], standard))
    if ens2:
        draw_flat(ax, xs, ens2, **ENSEMBLE)
        items.append((ENSEMBLE["label"], ens2))
    ax.set_xlabel(r"$\alpha$")
    ax.set_ylabel("Accuracy")
    ax.set_xlim(0, 1)
    ax.set_title(model_title([r for rows, *_ in drawn for r in rows]))
    ax.grid(alpha=0.3)
    _legend_below(fig, ax, ncol=2)
    return save(fig, out_dir, "one_dimensional_subspaces", table_of(items))


def figure5(root: Path, out_dir: Path, key: str, label_noise: float = 0.0, partial: bool = False) -> Figure:
    """Figure 5: accuracy of the simplex centre (t_i = 1/n, BatchNorm recomputed: the training
    run's ``curr_acc1``) against the number of endpoints n, layerwise and not, with standard training."""
    sims = load(root / SIMPLEXES / "results.csv")
    standard = values(select(load(root / MEMBERS / "results.csv"), "base", label_noise), "curr_acc1")
    missing, drawn = [], []
    for run_id, label, color, marker in SIMPLEX_VARIANTS:
        rows = select(sims, run_id, label_noise)
        if not rows:
            script = "train_" + run_id.replace("simplex", "simplexes").replace("-", "_") + ".py"
            missing.append((f"{SIMPLEXES}/id={run_id}", _config(key, f"simplexes/{script}")))
            continue
        drawn.append((series(rows, "n", "curr_acc1", label), color, marker, rows))
    if not standard:
        missing.append((f"{MEMBERS}/id=base", _config(key, "ensembles/train_ensemble_members.py")))
    if missing and (not partial or not drawn):
        raise _missing(f"Figure 5 (label noise {label_noise})", root, missing)

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    ns = sorted({x for s, *_ in drawn for x in s.points})
    for s, color, marker, _ in drawn:
        draw(ax, s, color, "--", marker)
    items = [s for s, *_ in drawn]
    if standard:
        draw_flat(ax, ns if len(ns) > 1 else [ns[0] - 0.5, ns[0] + 0.5], standard, **STANDARD)
        items.append((STANDARD["label"], standard))
    ax.set_xticks(ns)
    ax.set_xticklabels([str(int(n)) for n in ns])
    ax.set_xlabel("Number of endpoints n of the simplex")
    ax.set_ylabel("Accuracy (simplex centre)")
    ax.set_title(model_title([r for *_, rows in drawn for r in rows]))
    ax.grid(alpha=0.3)
    _legend_below(fig, ax, ncol=2)
    return save(fig, out_dir, "simplexes", table_of(items))


CALIBRATION = (
    # (family folder, id, extra column filters, label, colour, marker, config that makes the rows)
    (ONE_DIM, "lines", {}, "Line (Midpoint)", "C0", "x", "one_dimensional_subspaces/train_lines.py"),
    (MEMBERS, "base", {}, "Standard Training", "#7f7f7f", "o", "ensembles/train_ensemble_members.py"),
    (ENSEMBLES, "ensemble", {"num_models": 2}, "Standard Ensemble of Two", "k", "s", "ensembles/eval_ensembles.py"),
    (SWA, "swa", {}, "SWA", "C2", "^", "swa/train_swa.py"),
)


def calibration(root: Path, out_dir: Path, key: str, label_noise: float = 0.0, partial: bool = False) -> Figure:
    """Accuracy and expected calibration error (20 bins) of the line midpoint, standard training,
    a standard ensemble of two and SWA, at every label-noise level run (``label_noise`` unused)."""
    missing, drawn = [], []
    for family, run_id, cols, label, color, marker, script in CALIBRATION:
        rows = select(load(root / family / "results.csv"), run_id, None, **cols)
        if not rows:
            missing.append((f"{family}/id={run_id}", _config(key, script)))
            continue
        acc, ece = Series(label), Series(f"{label} ECE")
        for r in rows:
            acc.add(label_noise_of(r), num(r, "curr_acc1"))
            ece.add(label_noise_of(r), num(r, "ece"))
        drawn.append((acc, ece, color, marker, rows))
    if missing and (not partial or not drawn):
        raise _missing("the calibration figure", root, missing)

    fig, (ax_acc, ax_ece) = plt.subplots(1, 2, figsize=(10, 4.2))
    items = []
    for acc, ece, color, marker, _ in drawn:
        for ax, s in ((ax_acc, acc), (ax_ece, ece)):
            st = s.stats()
            ax.errorbar([p[0] for p in st], [p[1] for p in st], yerr=[p[2] for p in st], color=color,
                        marker=marker, ms=7, lw=2, capsize=4, label=acc.label)
        items += [acc, ece]
    levels = sorted({x for acc, *_ in drawn for x in acc.points})
    for ax, ylabel in ((ax_acc, "Accuracy"), (ax_ece, "Expected calibration error (ECE)")):
        ax.set_xlabel("Label noise (fraction of training labels replaced)")
        ax.set_ylabel(ylabel)
        ax.set_xticks(levels)
        if len(levels) == 1:
            ax.set_xlim(levels[0] - 0.1, levels[0] + 0.1)
        ax.grid(alpha=0.3)
    fig.suptitle(model_title([r for *_, rows in drawn for r in rows]))
    handles, labels = ax_acc.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, bbox_to_anchor=(0.5, -0.06))
    fig.tight_layout()
    return save(fig, out_dir, "calibration", table_of(items))


FIGURES = {"one_dimensional_subspaces": figure4, "simplexes": figure5, "calibration": calibration}


# --- command line ------------------------------------------------------------------------------


def default_root(key: str, results_root: Path = Path("learning-subspaces-results")) -> Path:
    """Where the configs of data set ``key`` write by default: ``<results_root>/<key>``."""
    return Path(results_root) / key


# The config scripts of experiment_configs/<data set> whose runs each figure reads.
NEEDS = {
    "figure4": "ensembles/* and one_dimensional_subspaces/* (train, then eval)",
    "figure5": "simplexes/* and ensembles/train_ensemble_members.py",
    "calibration": "ensembles/*, one_dimensional_subspaces/train_lines.py and swa/train_swa.py, each with the "
                   "label-noise levels to compare (e.g. --label-noise 0.0,0.2)",
}


def describe(figure: Callable[..., Figure], key: str, doc: str = "") -> str:
    """The ``--help`` text of ``analyze_results/<key>/<figure>.py``: the script's line, what the
    figure draws (its function's docstring) and the configs it needs."""
    parts = [(doc or "").strip(), inspect.cleandoc(figure.__doc__ or "")]
    if figure.__name__ in NEEDS:
        parts.append(f"Needs the runs of experiment_configs/{key}/: {NEEDS[figure.__name__]}.")
    return "\n\n".join(p for p in parts if p)


def cli(figure: Callable[..., Figure], key: str, doc: str = "", argv: Optional[Sequence[str]] = None,
        results_root: Path = Path("learning-subspaces-results")) -> int:
    """Entry point of ``analyze_results/<key>/<figure>.py``: draw, print the files; exit 1 with one
    line naming the missing runs when the figure cannot be drawn."""
    p = argparse.ArgumentParser(description=describe(figure, key, doc), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log-dir", type=Path, default=None, help=f"results root the configs wrote (default: {default_root(key, results_root)})")
    p.add_argument("--out", type=Path, default=None, help="folder for the figures (default: <log-dir>/figures)")
    p.add_argument("--label-noise", type=float, default=0.0, help="label-noise level of the runs to plot (default: 0.0)")
    p.add_argument("--partial", action="store_true", help="draw what is there when some runs are missing")
    a = p.parse_args(argv)
    root = (a.log_dir or default_root(key, results_root)).expanduser()
    try:
        result = figure(root, a.out or root / "figures", key, a.label_noise, a.partial)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in result.paths:
        print(path)
    return 0
