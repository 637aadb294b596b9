"""Figure 4, Figure 5, the calibration figure or any evaluated path from any results.csv files or run folders.

    python analyze_results/plot.py figure4 runs/eval/results.csv runs/results.csv --out figs/
    subspaces-plot figure5 runs/ --label-noise 0.2
    subspaces-plot calibration learning-subspaces-results/cifar10 --where model_name=cifar_resnet_20
    subspaces-plot paths runs/eval   # every line or curve evaluated along alpha (Bezier, polychain, mode connectivity)

A source is a results.csv, a log folder holding one, a run folder (``<log dir>/<name>+try=<i>``:
that run's rows) or a results root of the configs (every ``<family>/results.csv`` under it). The
rows of all sources are merged and classified by what they measured -- by the ``id`` of their run
name when a config made them, else by their settings columns (``trainer``, ``conv_type``,
``layerwise``), so runs made by hand with main.py are drawn too -- then filtered by ``--where``
and split by the settings that set figures apart (set, model, model_name, width_mult,
label_noise, label_smoothing): one figure per group, its files named after the settings that
differ (``one_dimensional_subspaces_label_noise=0.2.png``). Whatever a figure can draw is drawn;
one line on stderr names what was left out and the main.py command that makes it. Exit status 1
when nothing can be drawn, 2 for a source or ``--where`` that cannot be read.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Optional, Sequence

from subspaces.analysis.figures import (CALIBRATION, FIGURE4, FIGURE5, MissingRuns, Origin, classified, drawable, missing_runs, path_label,
                                        paths_figure, print_result, render)
from subspaces.analysis.rows import describe_group, groups, parse_where, read_sources, where
from subspaces.utils.errors import UserError

SPECS = {spec.command: spec for spec in (FIGURE4, FIGURE5, CALIBRATION)}


def _stem(base: str, settings: dict) -> str:
    """``one_dimensional_subspaces_label_noise=0.2``: the file stem of one group's figure."""
    return base + "_" + re.sub(r"[^A-Za-z0-9=.+_-]", "_", describe_group(settings))


def plot(figure: str, sources: Sequence[Path], out_dir: Path, conditions: Optional[dict] = None) -> list:
    """Draw ``figure`` (``figure4``, ``figure5``, ``calibration``, ``paths``) from the rows of ``sources``
    that meet ``conditions`` (``{column: value}``): one :class:`Figure` per group of settings.
    Raises :class:`MissingRuns` when no group holds what the figure draws."""
    if figure == "paths":
        return plot_paths(sources, out_dir, conditions)
    spec = SPECS[figure]
    read = read_sources(sources)
    rows = classified(where(read, conditions or {}), spec)
    origin = Origin("in " + ", ".join(str(s) for s in sources))
    split = groups(rows, spec.group_columns)
    todo = drawable(spec, split)
    if not todo:
        e = missing_runs(spec, origin, [p for p in spec.main if not p.optional])
        raise MissingRuns(f"{e} ({len(read)} rows read; subspaces-plot --help lists what makes each part)")
    drawn = [render(spec, group_rows, Path(out_dir), origin, _stem(spec.stem, settings) if len(todo) > 1 else spec.stem, partial=True)
             for settings, group_rows in todo]
    skipped = [describe_group(settings) for settings, _ in split if all(settings != s for s, _ in todo)]
    if skipped:
        drawn[0].notes.append(f"rows of {', '.join(skipped)} hold nothing {spec.name} draws: skipped")
    return drawn


def plot_paths(sources: Sequence[Path], out_dir: Path, conditions: Optional[dict] = None) -> list:
    """The path figure (:func:`subspaces.analysis.figures.paths_figure`) of each group of settings
    among the rows of ``sources`` that lie on an evaluated line or curve."""
    read = read_sources(sources)
    rows = [r for r in where(read, conditions or {}) if path_label(r) is not None]
    if not rows:
        raise MissingRuns(f"cannot draw paths: no rows of a line or curve evaluated along alpha in {', '.join(map(str, sources))} "
                          f"({len(read)} rows read); make them with main.py --trainer eval_one_dim_subspaces --resume <run>.pt "
                          "--pretrained --epochs 0 --alphas 0,0.25,0.5,0.75,1 --save-data")
    split = groups(rows)
    return [paths_figure(group_rows, Path(out_dir), _stem("paths", settings) if len(split) > 1 else "paths") for settings, group_rows in split]


def default_out(source: Path) -> Path:
    """``figures/`` in the log folder of ``source`` (beside its results.csv)."""
    p = Path(source).expanduser()
    if p.is_file() or (p.is_dir() and not (p / "results.csv").is_file() and (p.parent / "results.csv").is_file()):
        return p.parent / "figures"
    return p / "figures"


def _makers() -> str:
    lines = ["What makes each figure's rows (by hand; the configs under experiment_configs/ make them all):"]
    for name, spec in SPECS.items():
        lines.append(f"  {name}:")
        lines += [f"    {p.label}: {p.by_hand}" + (" (optional)" if p.optional else "") for p in spec.parts]
    lines += ["  paths: any grid of main.py --trainer eval_one_dim_subspaces (any --conv-type: Lines, Curves, Bezier<k>, PolyChain<k>; "
              "--init-endpoints too), linestats_swa or linestats_aligned with --alphas; test NLL and, with --curve-stats, train loss beside the accuracy"]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: the figures' files on stdout, what was left out on stderr; one ``error:``
    line and exit status 1 when nothing can be drawn, 2 for bad input."""
    p = argparse.ArgumentParser(description=__doc__, epilog=_makers(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("figure", choices=[*SPECS, "paths"], help="figure4 (accuracy along lines and curves), figure5 (simplexes), calibration, "
                   "paths (every line or curve evaluated along alpha, whatever made it)")
    p.add_argument("sources", nargs="+", type=Path, metavar="RESULTS", help="results.csv files, log folders, run folders or results roots")
    p.add_argument("--out", type=Path, help="folder for the figures (default: figures/ in the first source's log folder)")
    p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="only rows whose column KEY equals VALUE (numbers compare as numbers); repeat for several")
    p.add_argument("--label-noise", type=float, help="only rows at this label-noise level (--where label_noise=P)")
    a = p.parse_args(argv)
    try:
        conditions = parse_where(a.where)
        if a.label_noise is not None:
            conditions["label_noise"] = str(a.label_noise)
        figures = plot(a.figure, a.sources, a.out or default_out(a.sources[0]), conditions)
    except UserError as e:  # nothing to draw: 1; a source or --where that cannot be read: 2
        print(f"error: {e}", file=sys.stderr)
        return 1 if isinstance(e, MissingRuns) else 2
    for fig in figures:
        print_result(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
