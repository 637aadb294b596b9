"""The whole pipeline on Digits, end to end: train, evaluate, draw Figures 4 and 5 and calibration.

Runs the Digits configs of this folder in order -- ensemble members, lines, layerwise lines,
curves, simplexes (n = 2..4, layerwise and not), SWA and SWAG; the ensembles of two and the
weight averages of two members, the points along each line and curve and along the straight line
between two members (also after aligning the second one's units to the first's by weight matching),
SWAG's Bayesian model average, and a curve connecting the first two members (mode connectivity)
with the points along it -- then draws the figures with analyze_results (and the plane through the
connecting curve's ends and bend) and prints the numbers and where they are.
The members, lines, ensembles and SWA also run with 20% label noise for the calibration figure.
Finished runs are skipped, so a second call only redraws the figures; an interrupted call
continues where it stopped. Results: learning-subspaces-results/digits/ in the repository.

    python experiment_configs/digits/reproduce.py [--seeds 0,1,2] [--epochs 30] [--label-noise 0.0,0.4]
                                                  [--log-dir DIR] [--force] [--dry-run] [--verbose]
"""
import importlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from experiment_configs import CONFIG_SCRIPTS  # noqa: E402
from experiment_configs.digits.common import SETUP  # noqa: E402
from experiment_configs.digits.mode_connectivity import connect_members  # noqa: E402
from subspaces.analysis.figures import (calibration, ensemble_label, figure4, figure5, load, num, path_label, paths_figure,  # noqa: E402
                                        select, values)
from subspaces.analysis.plane import draw, plane_plot, read_plane  # noqa: E402
from subspaces.launch import RunsFailed  # noqa: E402
from subspaces.sweep import (ENSEMBLES, EVAL_CONNECT, EVAL_ONE_DIM, EVAL_SWAG, build_parser, execute,  # noqa: E402
                             final_checkpoint, make_config)
from subspaces.utils.errors import UserError  # noqa: E402

# The configs of experiment_configs/digits in the order they run; those in EVERY_LEVEL run
# at every label-noise level (for the calibration figure), the others at the first level only.
STEPS = CONFIG_SCRIPTS + ("mode_connectivity/connect_members", "mode_connectivity/eval_connected")
EVERY_LEVEL = ("ensembles/train_ensemble_members", "ensembles/eval_ensembles", "one_dimensional_subspaces/train_lines", "swa/train_swa")
# The baselines reported beside the figures' numbers: (family folder, id, column, label).
BASELINES = (
    (ENSEMBLES, "average-weights", "curr_acc1", "Uniform average of two members' weights"),
    (ENSEMBLES, "random-average-weights-global", "curr_acc1", "Random average (one draw for the network)"),
    (ENSEMBLES, "random-average-weights-layerwise", "curr_acc1", "Random average (one draw per layer)"),
    (ENSEMBLES, "random-average-weights-perweight", "curr_acc1", "Random average (one draw per weight)"),
    (EVAL_SWAG, "swag-bma", "swa_acc", "SWA mean (of the SWAG run)"),
    (EVAL_SWAG, "swag-bma", "curr_acc1", "SWAG: Bayesian model average of 30 draws"),
)
SWAG_ECE = (EVAL_SWAG, "swag-bma", "ece", "SWAG (Bayesian model average)")
# Figure 4's three curves (id, label), reported at these alphas: the point alone, BatchNorm recomputed.
LINES = (
    ("lines", "Learned line"),
    ("linestats-swa", "Straight line between two members"),
    ("linestats-aligned", "Straight line, member B aligned (weight matching)"),
)
LINE_ALPHAS = (0.0, 0.25, 0.5)
PLANE_GRID = 11  # the plane plot's grid: 11 x 11 points (3 x 3 with --smoke)
LABEL_NOISE = (0.0, 0.2)  # the calibration figure's levels; Figures 4 and 5 use the first


def run_steps(cfg, noise_levels) -> None:
    """Run every step's sweep (finished runs are skipped)."""
    for k, step in enumerate(STEPS, 1):
        module = importlib.import_module("experiment_configs.digits." + step.replace("/", "."))
        step_cfg = cfg.with_(label_noise=tuple(noise_levels) if step in EVERY_LEVEL else tuple(noise_levels[:1]))
        runs = list(module.runs(step_cfg))
        print(f"\n== step {k}/{len(STEPS)}: experiment_configs/digits/{step}.py ({len(runs)} runs)", flush=True)
        execute(runs, step_cfg)


def _fmt(v) -> str:
    if v is None:
        return "-"
    mean, std, n = v
    return f"{mean:.4f} +- {std:.4f} ({n} run{'s' if n != 1 else ''})"


def baseline_values(root: Path, label_noise: float, which=BASELINES) -> list:
    """``[(label, (mean, std, n) or None)]`` of the columns ``which`` names, from the results files."""
    out = []
    for family, run_id, col, label in which:
        vals = values(select(load(root / family / "results.csv"), run_id, label_noise), col)
        out.append((label, (statistics.fmean(vals), statistics.pstdev(vals), len(vals)) if vals else None))
    return out


def report(fig4, fig5, cal, noise_levels, simplex_n, baselines=(), swag_ece=None) -> None:
    """The headline numbers (mean +- std over seeds), as in the figures' CSV files."""
    rows = [
        ("Standard training", fig4.value("Standard Training")),
        ("Standard ensemble of two", fig4.value("Standard Ensemble of Two")),
    ]
    for label in ("Line", "Line (Layerwise)", "Curve", "Line Between Two Trained Networks"):
        rows.append((f"{label}: midpoint (alpha 0.5)", fig4.value(label, 0.5)))
        rows.append((f"{label}: endpoint (alpha 0)", fig4.value(label, 0.0)))
        rows.append((f"{label}: ensemble of alpha 0 and 1", fig4.value(ensemble_label(label), 0.0)))
    for label in ("Simplex (Midpoint)", "Simplex (Layerwise, Midpoint)"):
        for n in simplex_n:
            rows.append((f"{label.replace('Midpoint', 'centre')}, n={n}", fig5.value(label, float(n))))
    rows += list(baselines)
    print("\nTest accuracy on Digits (mean +- std over seeds):")
    for name, v in rows:
        print(f"  {name:<62} {_fmt(v)}")
    print("Calibration (accuracy / expected calibration error):")
    for ln in noise_levels:
        for label in ("Line (Midpoint)", "Standard Training", "Standard Ensemble of Two", "SWA"):
            acc, ece = cal.value(label, ln), cal.value(f"{label} ECE", ln)
            ece_text = "-" if ece is None else f"{ece[0]:.4f} +- {ece[1]:.4f}"
            print(f"  label noise {ln}: {label:<30} {_fmt(acc)} / ECE {ece_text}")
    if swag_ece is not None:
        print(f"  label noise {noise_levels[0]}: {SWAG_ECE[3]:<30} ECE {_fmt(swag_ece)}")


def line_values(root: Path, label_noise: float) -> list:
    """``[(label, [(mean, std, n) or None per alpha of LINE_ALPHAS])]``: the accuracy of the point
    at alpha (``curr_acc1`` at ``alpha1``) along each of :data:`LINES`, over the runs there are."""
    rows = load(root / EVAL_ONE_DIM / "results.csv")
    out = []
    for run_id, label in LINES:
        cells = []
        for a in LINE_ALPHAS:
            vals = values(select(rows, run_id, label_noise, alpha1=a), "curr_acc1")
            cells.append((statistics.fmean(vals), statistics.pstdev(vals), len(vals)) if vals else None)
        out.append((label, cells))
    return out


def report_lines(table: list) -> None:
    """Figure 4's three curves at :data:`LINE_ALPHAS` (alpha 0 is network A, or the line's first end)."""
    print("Along the lines (the point alone, BatchNorm recomputed at each point; mean +- std over runs):")
    for label, cells in table:
        text = "  ".join(f"alpha {a:g}: {_fmt(v)}" for a, v in zip(LINE_ALPHAS, cells))
        print(f"  {label:<50} {text}")


def connectivity(cfg, out, label_noise: float, grid: int = PLANE_GRID):
    """The plane through the connecting curve's ends and bend (evaluated again only when the
    curve's checkpoint is newer than its values, or with --force; otherwise redrawn from them), and the accuracy along the curve and
    along the straight line between the same two members: ``(figure paths, {id: [(alpha, acc)]})``."""
    ck = final_checkpoint(connect_members.train_settings(cfg, label_noise))
    values = out / "plane.csv"
    paths = []
    if ck is not None and (cfg.force or not values.exists() or values.stat().st_mtime < ck.stat().st_mtime):
        print(f"\nPlane through the connecting curve's ends and bend ({grid} x {grid} points) ...", flush=True)
        paths = plane_plot([str(ck)], out, name="plane", grid=grid, threads=cfg.threads).paths
    elif values.exists():
        paths = draw(read_plane(values), out, "plane")  # up to date: only drawn again
    along = {}
    rows = [row for row in load(cfg.log_root / EVAL_CONNECT / "results.csv") if num(row, "label_noise") in (None, label_noise)]
    for row in rows:
        if num(row, "alpha1") is not None:
            along.setdefault(row["_tags"].get("id"), []).append((num(row, "alpha1"), num(row, "curr_acc1")))
    if any(path_label(row) for row in rows):  # the curve and the straight line: accuracy, test NLL, train loss along alpha
        paths += paths_figure(rows, out, "mode_connectivity").paths
    return paths, {k: sorted(v) for k, v in along.items()}


def report_connectivity(along: dict) -> None:
    """Accuracy along the curve and along the straight line between the two members."""
    print("Mode connectivity (members 0 and 1, BatchNorm recomputed at each point):")
    for run_id, label in (("connect-curves", "curve between them"), ("line-between", "straight line between them")):
        accs = [a for _, a in along.get(run_id, [])]
        if accs:
            mid = dict(along[run_id]).get(0.5)
            print(f"  {label:<28} min {min(accs):.4f}  at alpha 0.5 {mid if mid is None else format(mid, '.4f')}  max {max(accs):.4f} ({len(accs)} points)")


def main(argv=None) -> int:
    parser = build_parser(__doc__.strip())
    parser.add_argument("--verbose", action="store_true", help="show every run's own output (epochs, progress bars)")
    ns = parser.parse_args(argv)
    noise_levels = ns.label_noise or LABEL_NOISE
    start = time.time()
    try:
        cfg = make_config(SETUP, ns, quiet=not ns.verbose, label_noise=noise_levels)
        if cfg.launch.launcher == "slurm":
            raise UserError("reproduce.py draws the figures once every run has finished, so it runs here; with "
                            "--launcher slurm submit the config scripts of experiment_configs/digits, then run reproduce.py")
        print(f"Digits pipeline: seeds {','.join(map(str, cfg.seeds))}, {cfg.base.epochs} epochs, "
              f"simplexes n = {','.join(map(str, cfg.simplex_n))}, label noise {','.join(map(str, noise_levels))}; "
              f"results in {cfg.log_root}" + ("" if ns.verbose else f" (run output in {cfg.log_root / 'sweep.log'})"), flush=True)
        run_steps(cfg, noise_levels)
        if cfg.dry_run:
            return 0
        out = cfg.log_root / "figures"
        fig4 = figure4(cfg.log_root, out, "digits", noise_levels[0])
        fig5 = figure5(cfg.log_root, out, "digits", noise_levels[0])
        cal = calibration(cfg.log_root, out, "digits")
        plane_paths, along = connectivity(cfg, out, noise_levels[0], 3 if ns.smoke else PLANE_GRID)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunsFailed as e:  # --parallel K: some runs failed, the others finished
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to continue where it stopped", file=sys.stderr)
        return 130
    swag_ece = baseline_values(cfg.log_root, noise_levels[0], (SWAG_ECE,))[0][1]
    report(fig4, fig5, cal, noise_levels, cfg.simplex_n, baseline_values(cfg.log_root, noise_levels[0]), swag_ece)
    report_lines(line_values(cfg.log_root, noise_levels[0]))
    report_connectivity(along)
    print(f"\nFigures (PNG and PDF, with the plotted numbers as CSV) in {out}:")
    for path in [fig.paths[0] for fig in (fig4, fig5, cal)] + [p for p in plane_paths if p.suffix == ".png"]:
        print(f"  {path}")
    print(f"Total time: {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
