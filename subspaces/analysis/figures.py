"""Figures 4 and 5 and a calibration figure from results.csv rows (no TeX needed).

Rows come either from the folders the configs write (``analyze_results/<dataset>/*.py``: the
results root of one data set, see :mod:`subspaces.sweep`) or from any results.csv files and run
folders (``analyze_results/plot.py``, :mod:`subspaces.analysis.plot`). Each row is classified by
what it measured and grouped by the settings that set figures apart (:mod:`.rows`); the rows of
one group are averaged over seeds (and runs) with a shaded spread of one standard deviation. A
rerun of a run (``+try=1``) replaces the older row. Each figure is written as PNG and PDF, with a
CSV of the plotted numbers beside it.

A kind of row a figure needs that is missing is named with the config (or ``main.py`` command)
that makes it: the configs' scripts stop (``--partial`` draws what is there), except for the
optional straight lines of Figure 4, which are left out with a one-line note.
"""
from __future__ import annotations

import argparse
import csv
import inspect
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
from matplotlib.lines import Line2D  # noqa: E402

from subspaces.analysis.rows import GROUP_COLUMNS, along_a_line, describe_group, groups, kind, label_noise_of, load, num, simplex_n, where  # noqa: E402,F401
from subspaces.sweep import ENSEMBLES, EVAL_ONE_DIM, MEMBERS, ONE_DIM, SIMPLEXES, SWA  # noqa: E402
from subspaces.utils.errors import UserError  # noqa: E402

plt.rcParams.update({"text.usetex": False, "font.size": 10, "axes.titlesize": 11, "legend.fontsize": 8.5})


class MissingRuns(UserError):
    """A figure's runs are not in the results files: the message names the configs to run."""


# --- what each figure draws ---------------------------------------------------------------------

GRID = "--pretrained --epochs 0 --update-bn --alphas 0,0.25,0.5,0.75,1 --save-data"  # a grid of Figure 4 (the configs': 21 points)
ALONG = "main.py --trainer eval_one_dim_subspaces --conv-type {conv} --bn-type {bn} --resume <{what}>.pt " + GRID


@dataclass(frozen=True)
class Part:
    """One kind of row a figure draws (see :func:`subspaces.analysis.rows.kind`), how it looks and
    what makes its rows: a config under ``experiment_configs/<data set>/`` or a ``main.py`` command."""

    kind: str
    label: str
    color: str
    marker: str
    family: str  # the results folder its config writes to
    config: str
    by_hand: str
    optional: bool = False  # drawn when there, else left out with a note (never needs --partial)
    columns: tuple = ()  # ((column, value), ...) the rows must hold, e.g. num_models=2
    ls: str = "--"

    @property
    def ident(self) -> str:
        """``id=...`` of the config's runs, as the messages name them."""
        return self.kind.replace("-train", "") + "".join(f"+{c}={v:g}" for c, v in self.columns)


STANDARD = Part("base", "Standard Training", "#7f7f7f", "o", MEMBERS, "ensembles/train_ensemble_members.py",
                "main.py --trainer default --save")
ENSEMBLE2 = Part("ensemble", "Standard Ensemble of Two", "#7f7f7f", "s", ENSEMBLES, "ensembles/eval_ensembles.py",
                 "main.py --trainer ensemble --resume a.pt,b.pt --pretrained --epochs 0 --save-data", columns=(("num_models", 2),), ls=":")
# Figure 4: the learned subspaces, then the straight lines between two separately trained networks
# (naive; aligned by permutation, Ainsworth et al. 2023), which are optional.
LEARNED = (
    Part("lines", "Line", "C0", "x", EVAL_ONE_DIM, "one_dimensional_subspaces/eval_lines.py", ALONG.format(conv="LinesConv", bn="LinesBN", what="line")),
    Part("lines-layerwise", "Line (Layerwise)", "C1", "d", EVAL_ONE_DIM, "one_dimensional_subspaces/eval_lines_layerwise.py",
         ALONG.format(conv="LinesConv", bn="LinesBN", what="layerwise line") + " --layerwise"),
    Part("curves", "Curve", "C4", "^", EVAL_ONE_DIM, "one_dimensional_subspaces/eval_curves.py", ALONG.format(conv="CurvesConv", bn="CurvesBN", what="curve")),
)
STRAIGHT = (
    Part("linestats-swa", "Line Between Two Trained Networks", "C3", "o", EVAL_ONE_DIM, "one_dimensional_subspaces/eval_linestats_swa.py",
         "main.py --trainer linestats_swa --resume a.pt,b.pt " + GRID, optional=True),
    Part("linestats-aligned", "Aligned Line Between Two Trained Networks", "C2", "s", EVAL_ONE_DIM, "one_dimensional_subspaces/eval_aligned_line.py",
         "experiment_configs/<data set>/one_dimensional_subspaces/eval_aligned_line.py", optional=True),
)
SIMPLEX = (
    Part("simplex", "Simplex (Midpoint)", "C0", "x", SIMPLEXES, "simplexes/train_simplexes.py",
         "main.py --trainer train_simplexes --conv-type SimplexConv<n> --bn-type SimplexBN<n> --save"),
    Part("simplex-layerwise", "Simplex (Layerwise, Midpoint)", "C1", "d", SIMPLEXES, "simplexes/train_simplexes_layerwise.py",
         "main.py --trainer train_simplexes --conv-type SimplexConv<n> --bn-type SimplexBN<n> --layerwise --save"),
)
CALIBRATED = (
    Part("lines-train", "Line (Midpoint)", "C0", "x", ONE_DIM, "one_dimensional_subspaces/train_lines.py",
         "main.py --trainer train_one_dim_subspaces --conv-type LinesConv --bn-type LinesBN --label-noise <p> --save"),
    Part("base", "Standard Training", "#7f7f7f", "o", MEMBERS, STANDARD.config, "main.py --trainer default --label-noise <p> --save"),
    Part("ensemble", "Standard Ensemble of Two", "k", "s", ENSEMBLES, ENSEMBLE2.config, ENSEMBLE2.by_hand, columns=ENSEMBLE2.columns),
    Part("swa", "SWA", "C2", "^", SWA, "swa/train_swa.py", "main.py --trainswa --label-noise <p> --save"),
)


# --- reading rows -------------------------------------------------------------------------------


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

    def span(self) -> tuple:
        """``(lowest mean - std, highest mean + std)``."""
        st = self.stats()
        return min(m - s for _, m, s, _ in st), max(m + s for _, m, s, _ in st)

    def __bool__(self) -> bool:
        return bool(self.points)


def _run_of(row: dict) -> tuple:
    """The run a grid row belongs to: its folder (``run_dir``; two runs by hand in two log folders
    may share a name) and its name without the ``+alpha0=..+alpha1=..`` of the point."""
    return row.get("run_dir", ""), re.sub(r"\+alpha[01]=[^+]*", "", row.get("Name", ""))


def along_series(rows: list, col1: str, col0: str, label: str) -> Series:
    """A grid's values against alpha: ``col1`` at ``alpha1`` of every row, and where a run has no row
    at that alpha, ``col0`` at ``alpha0``. A row evaluates the pair (alpha0, alpha1) and holds both
    points (``curr_acc1`` at alpha1, ``m0_acc`` at alpha0), so a grid over half the range (alpha0
    in [0, 0.5]) still gives every point from 0 to 1; one value per run and alpha."""
    seen: dict = {}
    for x_col, y_col in (("alpha1", col1), ("alpha0", col0)):
        for r in rows:
            x, y = num(r, x_col), num(r, y_col)
            if x is not None and y is not None:
                seen.setdefault((_run_of(r), round(x, 6)), y)
    s = Series(label)
    for (_, x), y in seen.items():
        s.add(x, y)
    return s


def values(rows: list, col: str) -> list:
    """The numbers of column ``col`` (empty cells skipped)."""
    return [v for v in (num(r, col) for r in rows) if v is not None]


def draw(ax, s: Series, color: str, ls: str = "-", marker: Optional[str] = None, band: float = 0.2, lw: float = 2, ms: float = 5) -> None:
    """Mean over seeds with a shaded band of +- one standard deviation (opacity ``band``; 0: none)."""
    st = s.stats()
    xs, ys, sd = [p[0] for p in st], [p[1] for p in st], [p[2] for p in st]
    ax.plot(xs, ys, ls=ls, marker=marker, color=color, label=s.label, lw=lw, ms=ms, alpha=0.9)
    if band:
        ax.fill_between(xs, [y - d for y, d in zip(ys, sd)], [y + d for y, d in zip(ys, sd)], color=color, alpha=band, lw=0)


def draw_flat(ax, xs: Sequence[float], vals: list, color: str, ls: str, label: str, lw: float = 2) -> None:
    """A baseline: the mean of ``vals`` as a flat line over ``xs``, its spread shaded."""
    mu = statistics.fmean(vals)
    sd = statistics.pstdev(vals) if len(vals) > 1 else 0.0
    lo, hi = min(xs), max(xs)
    ax.plot([lo, hi], [mu, mu], color=color, ls=ls, lw=lw, label=label)
    ax.fill_between([lo, hi], [mu - sd] * 2, [mu + sd] * 2, color=color, alpha=0.15, lw=0)


def flat_span(vals: list) -> tuple:
    mu, sd = statistics.fmean(vals), statistics.pstdev(vals) if len(vals) > 1 else 0.0
    return mu - sd, mu + sd


# --- output -------------------------------------------------------------------------------------


@dataclass
class Figure:
    """What a figure function made: its files, the plotted numbers (``series, x, mean, std, n``),
    one-line notes on what was left out, and the y-range of each panel (top first)."""

    paths: list
    table: list
    notes: list = field(default_factory=list)
    ylims: list = field(default_factory=list)

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
    ylims = [tuple(ax.get_ylim()) for ax in fig.axes]
    plt.close(fig)
    with open(out_dir / f"{stem}.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["series", "x", "mean", "std", "n"])
        w.writerows([lab, x, f"{m:.6g}", f"{s:.6g}", n] for lab, x, m, s, n in table)
    return Figure(paths, table, ylims=ylims)


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


def _legend_below(fig, handles: list, ncol: int = 2) -> None:
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, frameon=False)


def _handle(part: Part, ls: str = "-") -> Line2D:
    return Line2D([], [], color=part.color, marker=part.marker, ls=ls, lw=2, ms=5, label=part.label)


# --- the figures --------------------------------------------------------------------------------


def learned_range(curves: dict, flats: list) -> Optional[tuple]:
    """``(lo, hi)`` of the learned lines and the baselines when the straight lines between trained
    networks would squash them into under a third of a shared axis (then they get a panel of their
    own); None when one axis shows them all."""
    learned = [s for p, pair in curves.items() if p in LEARNED for s in pair if s]
    straight = [s for p, pair in curves.items() if p in STRAIGHT for s in pair if s]
    if not (learned and straight):
        return None
    spans = [s.span() for s in learned] + [flat_span(v) for _, v in flats]
    lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    full_lo = min(s.span()[0] for s in straight)
    return (lo, hi) if hi - full_lo > 3 * max(hi - lo, 1e-3) else None


def draw_figure4_panel(ax, curves: dict, flats: list, learned_only: bool = False, thin_learned: bool = False) -> None:
    """One panel of Figure 4: each part's pair ensemble (solid) and point (dashed), the baselines flat."""
    for p, (point, ens) in curves.items():
        if learned_only and p in STRAIGHT:
            continue
        thin = thin_learned and p in LEARNED  # the learned lines, for reference, beside the straight ones
        for s, ls in ((ens, "-"), (point, "--")):
            if s:
                draw(ax, s, p.color, ls, p.marker, band=0 if thin else 0.1, lw=1.2 if thin else 1.8, ms=3 if thin else 5)
    for p, vals in flats:
        draw_flat(ax, [0.0, 1.0], vals, p.color, p.ls, p.label, lw=1.5)
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)


def figure4_axes(by_part: dict, title: str):
    """Figure 4 from rows by part: ``(figure, plotted items)``.

    Each line or curve is drawn as its point alone (``curr_acc1`` at ``alpha1``, ``m0_acc`` at
    ``alpha0``: :func:`along_series`, dashed) and as the ensemble of the points alpha and 1 - alpha
    (``ensemble_acc``, solid). When the straight
    lines between trained networks fall far below the learned ones (the naive line's midpoint is
    the average of two unaligned networks), the learned lines keep the top panel, scaled to them
    and the baselines, and a second panel shows everything at full range."""
    # The pair ensemble of (alpha, 1 - alpha) is the same at either alpha: a half grid is mirrored.
    curves = {p: (along_series(rows, "curr_acc1", "m0_acc", p.label), along_series(rows, "ensemble_acc", "ensemble_acc", ensemble_label(p.label)))
              for p, rows in by_part.items() if p in LEARNED + STRAIGHT}
    flats = [(p, v) for p in (STANDARD, ENSEMBLE2) if p in by_part and (v := values(by_part[p], "curr_acc1"))]
    zoom = learned_range(curves, flats)
    if zoom:
        fig, (top, full) = plt.subplots(2, 1, sharex=True, figsize=(5.0, 6.0), gridspec_kw={"height_ratios": [3, 2]})
        draw_figure4_panel(top, curves, flats, learned_only=True)
        draw_figure4_panel(full, curves, flats, thin_learned=True)
        pad = max(0.1 * (zoom[1] - zoom[0]), 0.002)
        top.set_ylim(zoom[0] - pad, zoom[1] + pad)
        full.set_ylabel("Accuracy\n(full range)")
    else:
        fig, top = plt.subplots(figsize=(5.0, 4.0))
        draw_figure4_panel(top, curves, flats)
    top.set_ylabel("Accuracy")
    fig.axes[-1].set_xlabel(r"$\alpha$")
    top.set_title(title)
    handles = [_handle(p) for p in curves]
    if curves:
        handles += [Line2D([], [], color="k", ls="-", lw=1.8, label=r"ensemble of $\alpha$ and $1-\alpha$"),
                    Line2D([], [], color="k", ls="--", lw=1.8, label=r"the point $\alpha$ alone")]
    handles += [Line2D([], [], color=p.color, ls=p.ls, lw=1.5, label=p.label) for p, _ in flats]
    fig.tight_layout(h_pad=0.4)
    _legend_below(fig, handles)
    return fig, [s for pair in curves.values() for s in pair if s] + [(p.label, v) for p, v in flats]


def figure5_axes(by_part: dict, title: str):
    """Figure 5: accuracy of the simplex centre (t_i = 1/n, BatchNorm recomputed: the training
    run's ``curr_acc1``) against the number of endpoints n, layerwise and not, with standard training."""
    fig, ax = plt.subplots(figsize=(5.0, 3.8))
    items, handles = [], []
    for p in SIMPLEX:
        if p in by_part:
            s = Series(p.label)
            for r in by_part[p]:
                n = simplex_n(r)
                if n is not None:
                    s.add(n, num(r, "curr_acc1"))
            if s:
                draw(ax, s, p.color, "--", p.marker)
                items.append(s)
                handles.append(_handle(p, "--"))
    ns = sorted({x for s in items for x in s.points})
    std = values(by_part.get(STANDARD, []), "curr_acc1")
    if std:
        draw_flat(ax, ns if len(ns) > 1 else [ns[0] - 0.5, ns[0] + 0.5], std, STANDARD.color, STANDARD.ls, STANDARD.label, lw=1.5)
        items.append((STANDARD.label, std))
        handles.append(Line2D([], [], color=STANDARD.color, ls=STANDARD.ls, lw=1.5, label=STANDARD.label))
    ax.set_xticks(ns)
    ax.set_xticklabels([str(int(n)) for n in ns])
    ax.set_xlabel("Number of endpoints n of the simplex")
    ax.set_ylabel("Accuracy (simplex centre)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _legend_below(fig, handles)
    return fig, items


def calibration_axes(by_part: dict, title: str):
    """Accuracy and expected calibration error (20 bins) of the line midpoint, standard training,
    a standard ensemble of two and SWA, at every label-noise level run."""
    fig, (ax_acc, ax_ece) = plt.subplots(1, 2, figsize=(8.0, 3.6))
    items, handles = [], []
    for p in CALIBRATED:
        if p not in by_part:
            continue
        acc, ece = Series(p.label), Series(f"{p.label} ECE")
        for r in by_part[p]:
            acc.add(label_noise_of(r), num(r, "curr_acc1"))
            ece.add(label_noise_of(r), num(r, "ece"))
        for ax, s in ((ax_acc, acc), (ax_ece, ece)):
            st = s.stats()
            ax.errorbar([q[0] for q in st], [q[1] for q in st], yerr=[q[2] for q in st], color=p.color,
                        marker=p.marker, ms=6, lw=1.8, capsize=4)
        items += [acc, ece]
        handles.append(_handle(p))
    levels = sorted({x for s in items for x in s.points})
    for ax, ylabel in ((ax_acc, "Accuracy"), (ax_ece, "Expected calibration error (ECE)")):
        ax.set_xlabel("Label noise (fraction of labels replaced)")
        ax.set_ylabel(ylabel)
        ax.set_xticks(levels)
        if len(levels) == 1:
            ax.set_xlim(levels[0] - 0.1, levels[0] + 0.1)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    _legend_below(fig, handles, ncol=len(handles))
    return fig, items


# --- any evaluated path: plot.py paths ------------------------------------------------------------

# The panels of the path figure: (y label, the point's column at alpha1, at alpha0). A panel is
# drawn when some row holds its columns (train loss and error: --curve-stats).
PATH_PANELS = (
    ("Test accuracy", "curr_acc1", "m0_acc"),
    ("Test NLL", "nll", "m0_nll"),
    ("Train loss", "train_nll", "m0_train_nll"),
)
_SHAPES = ((r"LinesConv", lambda: "Line"), (r"CurvesConv", lambda: "Curve"), (r"BezierConv(\d+)", lambda k: f"Bezier Curve (degree {k})"),
           (r"PolyChainConv(\d+)", lambda k: f"Polygonal Chain ({k} bend{'' if k == '1' else 's'})"))


def path_label(row: dict) -> Optional[str]:
    """The name of the path a grid row lies on: Figure 4's names for its kinds (``Line``, ``Line
    Between Two Trained Networks``, ...), else the shape its ``conv_type`` makes (``Bezier Curve
    (degree 3)``, ``Polygonal Chain (2 bends)``), ``... Connecting Trained Networks`` when its ends were
    trained networks (``--init-endpoints``); None for a row that is no point of a path."""
    if not along_a_line(row) or num(row, "alpha1") is None:
        return None
    k = kind(row)
    known = {p.kind: p.label for p in LEARNED + STRAIGHT}
    if k in known:
        return known[k]
    for pattern, name in _SHAPES:
        m = re.fullmatch(pattern, row.get("conv_type", ""))
        if m:
            shape = name(*m.groups()) + (" (Layerwise)" if row.get("layerwise", "").lower() == "true" else "")
            return f"{shape} Connecting Trained Networks" if k == "connected" else shape
    return None


def paths_axes(by_label: dict, title: str):
    """Each path's point alone against alpha (:func:`along_series`), one panel per measure that
    the rows hold (:data:`PATH_PANELS`): ``(figure, plotted items)``."""
    panels = [(ylabel, {lab: along_series(rows, c1, c0, lab if i == 0 else f"{lab}: {ylabel}") for lab, rows in by_label.items()})
              for i, (ylabel, c1, c0) in enumerate(PATH_PANELS)]
    panels = [(ylabel, series) for ylabel, series in panels if any(series.values())]
    fig, axes = plt.subplots(len(panels), 1, sharex=True, figsize=(5.0, 2.2 + 1.8 * len(panels)), squeeze=False)
    styles = {p.label: (p.color, p.marker) for p in LEARNED + STRAIGHT}
    others = iter(f"C{i}" for i in (5, 6, 7, 8, 9, 0, 1, 2, 3, 4))
    look = {lab: styles.get(lab) or (next(others), "o") for lab in by_label}
    items = []
    for ax, (ylabel, series) in zip(axes[:, 0], panels):
        for lab, s in series.items():
            if s:
                draw(ax, s, look[lab][0], "-", look[lab][1], band=0.1, lw=1.8)
                items.append(s)
        ax.set_ylabel(ylabel)
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel(r"$\alpha$")
    fig.tight_layout(h_pad=0.4)
    _legend_below(fig, [Line2D([], [], color=c, marker=m, lw=1.8, ms=5, label=lab) for lab, (c, m) in look.items()])
    return fig, items


def paths_figure(rows: list, out_dir: Path, stem: str = "paths") -> Figure:
    """The path figure of one group of rows: every line or curve evaluated on a grid, whatever made
    it (the configs, ``main.py`` by hand, mode connectivity, Bezier or polygonal-chain curves)."""
    by_label: dict = {}
    for r in rows:
        lab = path_label(r)
        if lab is not None:
            by_label.setdefault(lab, []).append(r)
    if not by_label:
        raise MissingRuns("no rows of a line or curve evaluated along alpha; make them with main.py --trainer "
                          "eval_one_dim_subspaces --conv-type <its conv type> --resume <run>.pt " + GRID)
    noise = sorted({label_noise_of(r) for r in rows})
    title = model_title(rows) + (f", label noise {noise[0]:g}" if len(noise) == 1 and noise[0] else "")
    fig, items = paths_axes(by_label, title)
    return save(fig, out_dir, stem, table_of(items))


@dataclass(frozen=True)
class Spec:
    """A figure: its name, file stem, the parts it draws (those of ``main`` make it drawable at
    all), how it draws them, and the settings that set one such figure apart from another."""

    name: str
    command: str  # its name for analyze_results/plot.py
    stem: str
    parts: tuple
    main: tuple
    axes: Callable
    group_columns: tuple = GROUP_COLUMNS
    noise_in_title: bool = True


FIGURE4 = Spec("Figure 4", "figure4", "one_dimensional_subspaces", LEARNED + STRAIGHT + (STANDARD, ENSEMBLE2), LEARNED + STRAIGHT, figure4_axes)
FIGURE5 = Spec("Figure 5", "figure5", "simplexes", SIMPLEX + (STANDARD,), SIMPLEX, figure5_axes)
CALIBRATION = Spec("the calibration figure", "calibration", "calibration", CALIBRATED, CALIBRATED, calibration_axes,
                   tuple(c for c in GROUP_COLUMNS if c != "label_noise"), noise_in_title=False)


@dataclass(frozen=True)
class Origin:
    """Where rows came from, for messages: a data set's results root (``key``: the configs are
    named) or files given by hand (``key`` None: ``main.py`` commands are named)."""

    where: str
    key: Optional[str] = None

    def how(self, part: Part) -> str:
        return f"python experiment_configs/{self.key}/{part.config}" if self.key else part.by_hand

    def what(self, part: Part) -> str:
        return f"{part.family}/id={part.ident}" if self.key else part.label


def of_part(rows: list, part: Part) -> list:
    return [r for r in rows if r["_kind"] == part.kind and all(num(r, c) == v for c, v in part.columns)]


def classified(rows: list, spec: Spec) -> list:
    """The rows of the kinds ``spec`` draws, each with its kind under ``"_kind"``."""
    kinds = {p.kind for p in spec.parts}
    out = []
    for r in rows:
        r["_kind"] = kind(r)
        if r["_kind"] in kinds:
            out.append(r)
    return out


def missing_runs(spec: Spec, origin: Origin, parts: list, extra: str = "") -> MissingRuns:
    """The error that names the missing ``parts`` and what makes them."""
    what = ", ".join(origin.what(p) for p in parts)
    how = ", ".join(dict.fromkeys(origin.how(p) for p in parts))
    if origin.key:
        return MissingRuns(f"cannot draw {spec.name}{extra}: no results for {what} {origin.where}; run {how} first")
    return MissingRuns(f"cannot draw {spec.name}{extra}: no rows of {what} {origin.where}; make them with {how}")


def render(spec: Spec, rows: list, out_dir: Path, origin: Origin, stem: Optional[str] = None, partial: bool = False) -> Figure:
    """Draw ``spec`` from classified ``rows`` of one group. Missing parts: a :class:`MissingRuns`
    when none of ``spec.main`` is there, or a required one is missing without ``partial``;
    otherwise left out and named in the figure's note."""
    by_part = {p: rs for p in spec.parts if (rs := of_part(rows, p))}
    missing = [p for p in spec.parts if p not in by_part]
    noise = sorted({label_noise_of(r) for r in rows}) if spec.noise_in_title else []
    extra = f" (label noise {noise[0]:g})" if len(noise) == 1 else ""
    if not any(p in by_part for p in spec.main):
        raise missing_runs(spec, origin, [p for p in spec.main if not p.optional] or list(spec.main), extra)
    if not partial and (required := [p for p in missing if not p.optional]):
        raise missing_runs(spec, origin, required, extra)
    title = model_title(rows) + (f", label noise {noise[0]:g}" if len(noise) == 1 and noise[0] else "")
    fig, items = spec.axes(by_part, title)
    result = save(fig, out_dir, stem or spec.stem, table_of(items))
    if missing:
        left = "; ".join(f"{p.label} ({origin.how(p)})" for p in missing)
        result.notes.append(f"{spec.name} drawn without: {left}")
    return result


def drawable(spec: Spec, split: list) -> list:
    """The groups ``[(settings, rows)]`` that hold rows of a part that makes ``spec`` drawable."""
    return [(settings, rows) for settings, rows in split if any(of_part(rows, p) for p in spec.main)]


# --- one data set's results root (the configs' folders) ------------------------------------------


def from_root(spec: Spec, root: Path, out_dir: Path, key: str, label_noise: Optional[float], partial: bool) -> Figure:
    """``spec`` from the results files of the configs of data set ``key`` under ``root``, at
    ``label_noise`` (any when None). Rows of several models (configs edited to change it): the
    group with the most rows is drawn and a note names the others."""
    rows = []
    for family in dict.fromkeys(p.family for p in spec.parts):
        rows += load(root / family / "results.csv")
    rows = classified(rows, spec)
    if label_noise is not None:
        rows = where(rows, {"label_noise": str(label_noise)})
    split = groups(rows, spec.group_columns)
    origin = Origin(f"under {root}", key)
    chosen, drawn = max(drawable(spec, split) or [({}, rows)], key=lambda g: len(g[1]))
    result = render(spec, drawn, out_dir, origin, partial=partial)
    others = [describe_group(s) for s, _ in split if s != chosen]
    if others:
        result.notes.append(f"{spec.name} drawn for {describe_group(chosen)}; rows of {', '.join(others)} skipped: draw them with "
                            f"python analyze_results/plot.py {spec.command} {root}")
    return result


def figure4(root: Path, out_dir: Path, key: str, label_noise: float = 0.0, partial: bool = False) -> Figure:
    """Figure 4: accuracy against alpha for lines, layerwise lines and curves -- each point alone
    (``curr_acc1`` at ``alpha1``) and the ensemble of the points alpha and 1 - alpha
    (``ensemble_acc``) -- with standard training and a standard ensemble of two as flat lines, and,
    when evaluated, the straight line between two separately trained networks
    (``eval_linestats_swa.py``: ``(1 - alpha) w_a + alpha w_b``) and the same line after aligning
    the second network's units to the first's (``eval_aligned_line.py``). A straight line that
    dips far below the learned lines gets a second, full-range panel."""
    return from_root(FIGURE4, root, out_dir, key, label_noise, partial)


def figure5(root: Path, out_dir: Path, key: str, label_noise: float = 0.0, partial: bool = False) -> Figure:
    """Figure 5: accuracy of the simplex centre (t_i = 1/n, BatchNorm recomputed: the training
    run's ``curr_acc1``) against the number of endpoints n, layerwise and not, with standard training."""
    return from_root(FIGURE5, root, out_dir, key, label_noise, partial)


def calibration(root: Path, out_dir: Path, key: str, label_noise: float = 0.0, partial: bool = False) -> Figure:
    """Accuracy and expected calibration error (20 bins) of the line midpoint, standard training,
    a standard ensemble of two and SWA, at every label-noise level run (``label_noise`` unused)."""
    return from_root(CALIBRATION, root, out_dir, key, None, partial)



# --- command line ------------------------------------------------------------------------------


def default_root(key: str, results_root: Path = Path("learning-subspaces-results")) -> Path:
    """Where the configs of data set ``key`` write by default: ``<results_root>/<key>``."""
    return Path(results_root) / key


# The config scripts of experiment_configs/<data set> whose runs each figure reads.
NEEDS = {
    "figure4": "ensembles/train_ensemble_members.py and eval_ensembles.py, one_dimensional_subspaces/* (train, then eval); "
               "eval_linestats_swa.py and eval_aligned_line.py add the straight lines between two members (optional)",
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


def print_result(result: Figure) -> None:
    """The figure's files on stdout, its notes (what was left out) on stderr."""
    for path in result.paths:
        print(path)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)


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
    print_result(result)
    return 0
