"""Plane plots (Garipov et al. 2018, Figures 1 and 3; dnn-mode-connectivity's ``plane.py`` and
``plane_plot.py``): training loss and test error over the plane through three networks -- a
curve's two ends and a bend, a simplex's three vertices, or three trained standard networks.

    python analyze_results/plane.py CURVE.pt [--tensors 0,1,2]        # ends and bend of a curve
    python analyze_results/plane.py SIMPLEX.pt                        # vertices of a simplex
    python analyze_results/plane.py A.pt B.pt C.pt                    # three standard networks
        [--grid 11] [--margin-left 0.2 --margin-right 0.2 --margin-bottom 0.2 --margin-top 0.2]
        [--curve-points 61] [--bn-weighting batch] [--out DIR] [--name plane] [--data DIR] [--device cpu] [--threads N]

Garipov's construction: an orthonormal basis (u, v) of the plane from the three weight vectors
w0, w1, w2 (all subspace parameters concatenated) by Gram-Schmidt, ``u = (w1 - w0) / |w1 - w0|``
and v the normalised part of ``w2 - w0`` orthogonal to u; a grid of ``--grid`` x ``--grid``
coordinates (dnn-mode-connectivity's default is 21) over the box of the three points, widened on
each side by that side's margin times the box's extent along that axis (its ``--margin_left``
... ``--margin_top``, default 0.2 each). A plane point is an affine combination of the three
networks (barycentric coordinates, negative outside their triangle), so a model with simplex layers
of 3 vertices holding them evaluates it through the evaluation grid's own machinery
(:class:`subspaces.trainers.evaluate.Evaluator`): set the point, recompute the BatchNorm statistics
there over the training set (``--bn-weighting``), then the training loss (cross-entropy, without
dnn-mode-connectivity's weight-decay term) and error over those same batches and the test NLL and
error; each point once, without autograd. A curve checkpoint's whole curve (any number of bends) is
drawn projected onto the plane at ``--curve-points`` values of alpha (61, as dnn-mode-connectivity).
The figure (PNG and PDF, plain matplotlib, one paper column wide) has a panel per quantity; a CSV
beside it holds every evaluated value. Default output: the first checkpoint's folder.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display, no TeX
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from subspaces.args import DATA_HELP, ints  # noqa: E402
from subspaces.modes import SimplexCoefficients, load_endpoints, plain_state_dict, subspace_coefficients, subspace_layers  # noqa: E402
from subspaces.utils.errors import UserError  # noqa: E402
from subspaces.utils.io import atomic_write, atomic_write_text  # noqa: E402

plt.rcParams.update({"text.usetex": False})
COLUMN_WIDTH = 3.3  # inches: one column of a two-column paper
MARGINS = (0.2, 0.2, 0.2, 0.2)  # left, right, bottom, top: dnn-mode-connectivity's defaults
CURVE_POINTS = 61  # dnn-mode-connectivity's --curve_points


@dataclass
class Plane:
    """The plane through three networks and what was measured on it.

    ``points``: the three networks' plane coordinates (3, 2); ``xs``, ``ys``: the grid axes;
    ``train_loss``, ``train_err``, ``test_nll``, ``test_err``: (len(ys), len(xs)) arrays (errors as
    fractions); ``marked``: ``(train_loss, train_err, test_nll, test_err)`` at each of the three
    points; ``curve``: plane coordinates along a curve (projected onto the plane).
    """

    points: np.ndarray
    xs: np.ndarray
    ys: np.ndarray
    train_loss: np.ndarray
    train_err: np.ndarray
    test_nll: np.ndarray
    test_err: np.ndarray
    marked: list
    labels: tuple = ("A", "B", "C")
    curve: Optional[np.ndarray] = None
    paths: list = field(default_factory=list)

    @property
    def test_acc(self) -> np.ndarray:
        """Test accuracy on the grid: ``1 - test_err``."""
        return 1.0 - self.test_err


def flat_tensors(model: nn.Module) -> list:
    """The weight vectors of a subspace model, one per tensor (three for a simplex of 3): every
    subspace parameter's tensor i, concatenated in module order (Garipov's plane uses all
    parameters, as dnn-mode-connectivity's ``CurveNet.weights``)."""
    k = subspace_coefficients(model).num_tensors
    out = [[] for _ in range(k)]
    for layer in subspace_layers(model):
        for name in layer._endpoint_params:
            for i, t in enumerate(layer.endpoints(name)):
                out[i].append(t.detach().double().reshape(-1))
    return [torch.cat(v) for v in out]


def plane_basis(w: Sequence[torch.Tensor]) -> tuple:
    """Gram-Schmidt: ``(u, v, points)``, points the (3, 2) plane coordinates of w0, w1, w2."""
    d1, d2 = w[1] - w[0], w[2] - w[0]
    u = d1 / d1.norm()
    v = d2 - d2.dot(u) * u
    if v.norm() <= 1e-12 * d2.norm().clamp_min(1e-30):
        raise UserError("the three networks lie on one line: they span no plane; pass three different networks")
    v = v / v.norm()
    points = np.array([[0.0, 0.0], [d1.norm().item(), 0.0], [d2.dot(u).item(), d2.dot(v).item()]])
    return u, v, points


def project(vectors: Sequence[torch.Tensor], origin: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> np.ndarray:
    """Plane coordinates ``((w - origin) . u, (w - origin) . v)`` of each vector: its orthogonal projection."""
    return np.array([[(w - origin).dot(u).item(), (w - origin).dot(v).item()] for w in vectors])


def grid_axes(points: np.ndarray, size: int, margins: Sequence[float] = MARGINS) -> tuple:
    """``size`` coordinates per axis over the box of the three points, widened on each side by
    ``margins`` = (left, right, bottom, top) times the box's extent along that axis
    (dnn-mode-connectivity's per-side margins: its box runs from the first point to the last along
    x, and from the line between them to the bend along y)."""
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    left, right, bottom, top = margins
    dx, dy = x1 - x0, y1 - y0
    return np.linspace(x0 - left * dx, x1 + right * dx, size), np.linspace(y0 - bottom * dy, y1 + top * dy, size)


def barycentric(points: np.ndarray, xy: Sequence[float]) -> tuple:
    """Coordinates ``(c0, c1, c2)`` summing to 1 with ``c0 p0 + c1 p1 + c2 p2 = xy`` (affine, may be negative)."""
    m = np.array([points[1] - points[0], points[2] - points[0]]).T
    c1, c2 = np.linalg.solve(m, np.asarray(xy, dtype=float) - points[0])
    return (1.0 - c1 - c2, float(c1), float(c2))


def evaluate_plane(ev, model: nn.Module, size: int = 11, margins: Sequence[float] = MARGINS) -> Plane:
    """Train loss and error, test NLL and error on the grid and at the three points of a
    simplex-of-3 ``model`` (whose tensors are the three networks), with ``ev`` a
    :class:`subspaces.trainers.evaluate.Evaluator` of it."""
    coefficients = subspace_coefficients(model)
    if coefficients != SimplexCoefficients(3):
        raise ValueError("a plane is evaluated on a model of SimplexConv3 layers (its three vertices)")
    _, _, points = plane_basis(flat_tensors(model))
    xs, ys = grid_axes(points, size, margins)

    def at(bary: Sequence[float]) -> tuple:
        point = coefficients.from_barycentric(bary)
        values = (*ev.scores(point, True, split="train"), *ev.scores(point, True))
        ev.release(point, True)
        return values

    marked = [at(tuple(1.0 if j == i else 0.0 for j in range(3))) for i in range(3)]
    grid = np.zeros((4, size, size))
    for iy, y in enumerate(ys):
        for ix, x in enumerate(xs):
            grid[:, iy, ix] = at(barycentric(points, (x, y)))
    return Plane(points, xs, ys, *grid, marked)


def curve_in_plane(tensor_points: np.ndarray, coefficients, steps: int = CURVE_POINTS) -> np.ndarray:
    """Plane coordinates of a one-dimensional subspace (a curve of any number of bends) at
    ``steps`` values of alpha in [0, 1]: its weights ``sum_k c_k(alpha) W_k`` projected onto the
    plane, i.e. ``sum_k c_k(alpha) P(W_k)`` with ``tensor_points[k] = P(W_k)`` (the projection is
    affine and the coefficients sum to 1). A curve whose tensors are the plane's three lies in it."""
    alphas = np.linspace(0.0, 1.0, steps)
    return np.array([np.asarray(coefficients((float(a),))) @ tensor_points for a in alphas])


# --- the figure -----------------------------------------------------------------------------------


def _label_points(ax, plane: Plane) -> None:
    """Mark the three points and a curve's path (with the straight line between its ends, as
    dnn-mode-connectivity's figure). Each label sits above or below its point, away from the
    triangle's centre (so labels neither overlap each other nor sit on the curve), aligned so that
    it stays inside the panel."""
    if plane.curve is not None:
        ax.plot(*plane.points[:2].T, color="white", lw=0.8, ls=":", zorder=2)
        ax.plot(plane.curve[:, 0], plane.curve[:, 1], color="white", lw=1.4, zorder=3)
    ax.scatter(plane.points[:, 0], plane.points[:, 1], c="white", edgecolors="k", s=18, linewidths=0.6, zorder=4)
    centre_y = plane.points[:, 1].mean()
    for (x, y), label in zip(plane.points, plane.labels):
        fx = (x - plane.xs[0]) / max(plane.xs[-1] - plane.xs[0], 1e-12)
        up = y > centre_y
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(0, 5 if up else -5), fontsize=6.5, zorder=5,
                    ha="right" if fx > 0.75 else "left" if fx < 0.25 else "center", va="bottom" if up else "top",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.75))


def draw(plane: Plane, out_dir: Path, name: str = "plane") -> list:
    """Two contour panels, one paper column wide (training loss on a log scale, test error), with
    the points and a curve marked and the axes labelled, as PNG and PDF, and the values as CSV
    (:func:`read_plane` reads them back to redraw without evaluating)."""
    X, Y = np.meshgrid(plane.xs, plane.ys)
    fig, axes = plt.subplots(2, 1, figsize=(COLUMN_WIDTH, 4.4), sharex=True, layout="constrained")
    panels = ((axes[0], np.log10(np.maximum(plane.train_loss, 1e-8)), "training loss (log$_{10}$)", "viridis_r"),
              (axes[1], plane.test_err, "test error", "viridis_r"))
    for ax, values, title, cmap in panels:
        filled = ax.contourf(X, Y, values, levels=20, cmap=cmap)
        ax.contour(X, Y, values, levels=10, colors="k", linewidths=0.3, alpha=0.5)
        bar = fig.colorbar(filled, ax=ax, pad=0.02, aspect=15)
        bar.locator = MaxNLocator(5)
        bar.update_ticks()
        bar.ax.tick_params(labelsize=6.5)
        _label_points(ax, plane)
        ax.set_title(title, fontsize=8, pad=3)
        ax.set_ylabel(f"toward {plane.labels[2]}", fontsize=7)
        ax.tick_params(labelsize=6.5)
        ax.xaxis.set_major_locator(MaxNLocator(6))
        ax.yaxis.set_major_locator(MaxNLocator(4))
    axes[1].set_xlabel(f"{plane.labels[0]} to {plane.labels[1]} (distance in weight space)", fontsize=7)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = out_dir / f"{name}.{ext}"
        atomic_write(path, lambda tmp, ext=ext: fig.savefig(tmp, format=ext, dpi=300))
        paths.append(path)
    plt.close(fig)
    paths.append(write_csv(plane, out_dir / f"{name}.csv"))
    plane.paths = paths
    return paths


VALUES = ("train_loss", "train_err", "test_nll", "test_err")
CSV_HEADER = "x,y,point," + ",".join(VALUES)


def write_csv(plane: Plane, path: Path) -> Path:
    """The three points (``point`` = their label), the grid (``point`` empty) and the curve
    (``point`` = "curve", no values), one row each; errors as fractions."""
    g = lambda v: format(float(v), ".10g")  # noqa: E731
    grids = [getattr(plane, k) for k in VALUES]
    rows = [CSV_HEADER]
    rows += [",".join([g(x), g(y), label, *map(g, m)]) for (x, y), label, m in zip(plane.points, plane.labels, plane.marked)]
    rows += [",".join([g(x), g(y), "", *(g(v[iy, ix]) for v in grids)]) for iy, y in enumerate(plane.ys) for ix, x in enumerate(plane.xs)]
    rows += [f"{g(x)},{g(y)},curve" + "," * len(VALUES) for x, y in (plane.curve if plane.curve is not None else [])]
    atomic_write_text(path, "\n".join(rows) + "\n")
    return path


def read_plane(path: Path) -> Plane:
    """A plane written by :func:`write_csv` (to draw it again without evaluating anything); one
    written before the error columns existed (``train_loss,test_acc``) reads too, its missing
    values NaN."""
    text = Path(path).read_text()
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"x", "y", "point", "train_loss"} <= set(reader.fieldnames):
        raise UserError(f"{path} is not a plane CSV written by analyze_results/plane.py")
    points, labels, marked, grid, curve = [], [], [], {}, []
    for row in reader:
        xy = (float(row["x"]), float(row["y"]))
        if "test_err" not in row and row.get("test_acc"):
            row["test_err"] = str(1.0 - float(row["test_acc"]))
        values = tuple(float(row.get(k) or "nan") for k in VALUES)
        if row["point"] == "curve":
            curve.append(xy)
        elif row["point"]:
            points.append(xy)
            labels.append(row["point"])
            marked.append(values)
        else:
            grid[xy] = values
    xs, ys = np.array(sorted({x for x, _ in grid})), np.array(sorted({y for _, y in grid}))
    arrays = [np.array([[grid[(x, y)][k] for x in xs] for y in ys]) for k in range(len(VALUES))]
    return Plane(np.array(points), xs, ys, *arrays, marked, tuple(labels), np.array(curve) if curve else None)


def _labels(coefficients, tensors: Sequence[int]) -> tuple:
    if coefficients.kind == "simplex":
        return tuple(f"vertex {t}" for t in tensors)
    inner = coefficients.num_tensors - 2
    return tuple({0: "alpha=0", 1: "alpha=1"}.get(t, "bend" if inner == 1 else f"bend {t - 1}") for t in tensors)


def load_three(checkpoints: Sequence[str], tensors: Sequence[int] = (0, 1, 2), data: Optional[str] = None, device: str = "cpu",
               bn_weighting: str = "batch") -> tuple:
    """``(model, settings, data bundle, labels, curve)``: a SimplexConv3 model of the checkpoints'
    architecture whose vertices are three tensors of one subspace checkpoint (``tensors``: a
    curve's ends 0, 1 and its bend 2; a simplex's vertices) or three standard networks; ``curve``
    is ``(coefficients, weight vectors of all its tensors)`` for a one-dimensional checkpoint."""
    from subspaces import data as datasets
    from subspaces import main as runner
    from subspaces.args import Settings, replace
    from subspaces.modes.modules import coefficients_of, get_layer_type
    from subspaces.utils.checkpoint import load_checkpoint, load_model_state

    if len(checkpoints) not in (1, 3):
        raise UserError(f"{len(checkpoints)} checkpoints given; pass one curve or simplex checkpoint, or three standard networks")
    ckpts = [load_checkpoint(p, "plane.py CKPT") for p in checkpoints]
    for p, c in zip(checkpoints, ckpts):
        if not c.get("settings"):
            raise UserError(f"{p} records no settings (not written by main.py --save?); the plane needs its model and data set")
    s = Settings.from_dict(ckpts[0]["settings"])
    s = replace(s, device=device, multigpu=None, label_noise=None, data=data or s.data, resume=None, pretrained=False, bn_weighting=bn_weighting)
    runner._check_device(s)
    coefficients = coefficients_of(get_layer_type(s.conv_type, "Conv"))
    curve = None
    if len(checkpoints) == 1:
        if coefficients is None or coefficients.num_tensors < 3:
            raise UserError(f"{checkpoints[0]} holds a {s.conv_type} network: fewer than three tensors span no plane; pass a curve "
                            f"(CurvesConv, BezierConv<k>, PolyChainConv<k>), a simplex of 3 or more vertices, or three standard networks")
        if len(set(tensors)) != 3 or not all(0 <= t < coefficients.num_tensors for t in tensors):
            raise UserError(f"--tensors {','.join(map(str, tensors))} must be three different tensors of 0..{coefficients.num_tensors - 1}")
    else:
        for p, c in zip(checkpoints, ckpts):
            if c["settings"].get("conv_type", "StandardConv") != "StandardConv":
                raise UserError(f"{p} holds a {c['settings']['conv_type']} network; three checkpoints must be standard networks "
                                f"(or pass one curve or simplex checkpoint alone)")
    bundle = datasets.get_dataset(s)
    if len(checkpoints) == 1:
        net = runner.build_model(s, bundle)
        load_model_state(net, ckpts[0]["state_dicts"][0], checkpoints[0])
        state_dicts, labels = [plain_state_dict(net, tensor=t) for t in tensors], _labels(coefficients, tensors)
        if coefficients.kind != "simplex":
            curve = (coefficients, flat_tensors(net))
    else:
        state_dicts, labels = [c["state_dicts"][0] for c in ckpts], ("A", "B", "C")
    model = runner.build_model(replace(s, conv_type="SimplexConv3", bn_type="SimplexBN3", n=3), bundle)
    load_endpoints(model, state_dicts, [str(p) for p in (checkpoints if len(checkpoints) == 3 else [f"{checkpoints[0]} tensor {t}" for t in tensors])])
    return model.to(device), s, bundle, labels, curve


def plane_plot(checkpoints: Sequence[str], out_dir: "str | Path | None" = None, name: str = "plane", grid: int = 11,
               margins: Sequence[float] = MARGINS, tensors: Sequence[int] = (0, 1, 2), data: Optional[str] = None, device: str = "cpu",
               threads: Optional[int] = None, curve_points: int = CURVE_POINTS, bn_weighting: str = "batch") -> Plane:
    """Evaluate and draw the plane through three networks (see the module docstring); returns it
    with ``paths`` (PNG, PDF, CSV) set. ``margins``: (left, right, bottom, top), or one number for
    all four. ``threads``: PyTorch's CPU threads meanwhile (restored after; a small model on a busy
    machine is many times faster on one)."""
    margins = tuple(float(m) for m in (margins if isinstance(margins, Sequence) else [margins] * 4))
    if grid < 2 or len(margins) != 4 or min(margins) < 0 or curve_points < 2:
        raise UserError(f"--grid {grid} must be at least 2, --curve-points {curve_points} at least 2, and the four margins "
                        f"{','.join(map(str, margins))} at least 0")
    args = (checkpoints, out_dir, name, grid, margins, tensors, data, device, curve_points, bn_weighting)
    if threads is None:
        return _plane_plot(*args)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _plane_plot(*args)
    finally:
        torch.set_num_threads(before)


def _plane_plot(checkpoints, out_dir, name, grid, margins, tensors, data, device, curve_points, bn_weighting) -> Plane:
    from subspaces.args import replace
    from subspaces.trainers.base import RunContext
    from subspaces.trainers.evaluate import Evaluator
    from subspaces.utils.bn import update_bn

    model, s, bundle, labels, curve = load_three(checkpoints, tensors, data, device, bn_weighting)
    ctx = RunContext([model], [None], bundle, nn.CrossEntropyLoss(), torch.device(device))
    ev = Evaluator(replace(s, amp="none", channels_last=False), ctx, model, lambda loader, m, d: update_bn(loader, m, d, bn_weighting))
    plane = evaluate_plane(ev, model, grid, margins)
    plane.labels = labels
    if curve is not None:
        coefficients, vectors = curve
        w = flat_tensors(model)
        u, v, _ = plane_basis(w)
        plane.curve = curve_in_plane(project(vectors, w[0], u, v), coefficients, curve_points)
    draw(plane, Path(out_dir).expanduser() if out_dir else Path(checkpoints[0]).expanduser().resolve().parent, name)
    return plane


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: one line on stderr and exit status 2 on bad input."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="one curve or simplex checkpoint, or three standard networks")
    p.add_argument("--tensors", type=ints, default=(0, 1, 2), metavar="I,J,K", help="with one checkpoint: its three tensors (default 0,1,2: a curve's ends and first bend)")
    p.add_argument("--grid", type=int, default=11, metavar="N", help="N x N grid points (default 11; dnn-mode-connectivity's is 21)")
    for side, default in zip(("left", "right", "bottom", "top"), MARGINS):
        p.add_argument(f"--margin-{side}", type=float, default=None, metavar="M",
                       help=f"grid margin on the {side}, as a fraction of the three points' extent along that axis (default {default})")
    p.add_argument("--margin", type=float, metavar="M", help="all four margins at once (each --margin-<side> overrides it)")
    p.add_argument("--curve-points", type=int, default=CURVE_POINTS, metavar="N", help=f"points along a curve drawn in the plane (default {CURVE_POINTS})")
    p.add_argument("--bn-weighting", choices=("batch", "sample"), default="batch", help="BatchNorm recompute: every batch (default) or every sample weighs the same")
    p.add_argument("--out", help="folder for the figure (default: the first checkpoint's folder)")
    p.add_argument("--name", default="plane", help="file name of the figure, without extension (default plane)")
    p.add_argument("--data", metavar="DIR", help=DATA_HELP + " (default: the checkpoint's --data)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<i> (default cpu)")
    p.add_argument("--threads", type=int, metavar="N", help="PyTorch CPU threads (default: PyTorch's; 1 is fastest for Digits on a busy machine)")
    ns = p.parse_args(argv)
    margins = [next(m for m in (getattr(ns, f"margin_{side}"), ns.margin, default) if m is not None)
               for side, default in zip(("left", "right", "bottom", "top"), MARGINS)]
    try:
        if ns.threads is not None and ns.threads < 1:
            raise UserError(f"--threads {ns.threads} must be at least 1")
        plane = plane_plot(ns.checkpoints, ns.out, ns.name, ns.grid, margins, ns.tensors, ns.data, ns.device, ns.threads,
                           ns.curve_points, ns.bn_weighting)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for label, (loss, err, nll, test_err) in zip(plane.labels, plane.marked):
        print(f"{label}: train loss {loss:.4f}, train error {err:.4f}, test NLL {nll:.4f}, test error {test_err:.4f}")
    print("figure: " + ", ".join(str(p) for p in plane.paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
