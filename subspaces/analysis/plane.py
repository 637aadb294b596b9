"""Plane plots (Garipov et al. 2018, Figures 1 and 3): training loss and test accuracy over the
plane through three networks -- a curve's two ends and its bend, a simplex's three vertices, or
three trained standard networks.

    python analyze_results/plane.py CURVE.pt [--tensors 0,1,2]        # ends and bend of a curve
    python analyze_results/plane.py SIMPLEX.pt                        # vertices of a simplex
    python analyze_results/plane.py A.pt B.pt C.pt                    # three standard networks
        [--grid 11] [--margin 0.2] [--out DIR] [--name plane] [--data DIR] [--device cpu] [--threads N]

Garipov's construction: an orthonormal basis (u, v) of the plane from the three weight vectors
w0, w1, w2 (all parameters concatenated) by Gram-Schmidt, ``u = (w1 - w0) / |w1 - w0|`` and v the
normalised part of ``w2 - w0`` orthogonal to u; a grid of ``--grid`` x ``--grid`` coordinates that
covers the three points with a margin of ``--margin`` times their extent. A plane point is an
affine combination of the three networks (barycentric coordinates, negative outside their
triangle), so a model with simplex layers of 3 vertices holding them evaluates it through the
evaluation grid's own machinery (:class:`subspaces.trainers.evaluate.Evaluator`): set the point, recompute
the BatchNorm statistics there over the training set, then the training loss (cross-entropy over
those same batches) and the test accuracy; each point once, without autograd. The figure (PNG
and PDF, plain matplotlib) marks the three points (and the curve itself when it lies in the
plane); a CSV beside it holds every evaluated value. Default output: the first checkpoint's folder.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # files only: no display, no TeX
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from subspaces.args import DATA_HELP, ints  # noqa: E402
from subspaces.modes import SimplexCoefficients, load_endpoints, plain_state_dict, subspace_coefficients, subspace_layers  # noqa: E402
from subspaces.utils.errors import UserError  # noqa: E402
from subspaces.utils.io import atomic_write, atomic_write_text  # noqa: E402

plt.rcParams.update({"text.usetex": False, "font.size": 10})


@dataclass
class Plane:
    """The plane through three networks and what was measured on it.

    ``points``: the three networks' plane coordinates (3, 2); ``xs``, ``ys``: the grid axes;
    ``train_loss``/``test_acc``: (len(ys), len(xs)) arrays; ``marked``: ``(train_loss, test_acc)``
    at each of the three points; ``curve``: plane coordinates along a curve that lies in the plane.
    """

    points: np.ndarray
    xs: np.ndarray
    ys: np.ndarray
    train_loss: np.ndarray
    test_acc: np.ndarray
    marked: list
    labels: tuple = ("A", "B", "C")
    curve: Optional[np.ndarray] = None
    paths: list = field(default_factory=list)


def flat_tensors(model: nn.Module) -> list:
    """The three weight vectors w0, w1, w2 of a simplex-of-3 model: every subspace parameter's
    tensor i, concatenated in module order (Garipov's plane uses all parameters)."""
    out = [[], [], []]
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


def grid_axes(points: np.ndarray, size: int, margin: float) -> tuple:
    """``size`` coordinates per axis covering the three points, with ``margin`` times their larger
    extent beyond them on every side (a nearly straight curve still gets a band around it)."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    pad = margin * (hi - lo).max() * np.ones(2)
    return np.linspace(lo[0] - pad[0], hi[0] + pad[0], size), np.linspace(lo[1] - pad[1], hi[1] + pad[1], size)


def barycentric(points: np.ndarray, xy: Sequence[float]) -> tuple:
    """Coordinates ``(c0, c1, c2)`` summing to 1 with ``c0 p0 + c1 p1 + c2 p2 = xy`` (affine, may be negative)."""
    m = np.array([points[1] - points[0], points[2] - points[0]]).T
    c1, c2 = np.linalg.solve(m, np.asarray(xy, dtype=float) - points[0])
    return (1.0 - c1 - c2, float(c1), float(c2))


def evaluate_plane(ev, model: nn.Module, size: int = 11, margin: float = 0.2) -> Plane:
    """Train loss and test accuracy on the grid and at the three points of a simplex-of-3 ``model``
    (whose tensors are the three networks), with ``ev`` a :class:`subspaces.trainers.evaluate.Evaluator` of it."""
    coefficients = subspace_coefficients(model)
    if coefficients != SimplexCoefficients(3):
        raise ValueError("a plane is evaluated on a model of SimplexConv3 layers (its three vertices)")
    _, _, points = plane_basis(flat_tensors(model))
    xs, ys = grid_axes(points, size, margin)

    def at(bary: Sequence[float]) -> tuple:
        point = coefficients.from_barycentric(bary)
        test, train = ev.outputs(point, True), ev.outputs(point, True, split="train")
        ev.release(point, True)
        loss = F.cross_entropy(train.logits, train.targets).item()
        return loss, (test.logits.argmax(1) == test.targets).double().mean().item()

    marked = [at(tuple(1.0 if j == i else 0.0 for j in range(3))) for i in range(3)]
    loss = np.zeros((size, size))
    acc = np.zeros((size, size))
    for iy, y in enumerate(ys):
        for ix, x in enumerate(xs):
            loss[iy, ix], acc[iy, ix] = at(barycentric(points, (x, y)))
    return Plane(points, xs, ys, loss, acc, marked)


def curve_in_plane(points: np.ndarray, coefficients, tensors: Sequence[int], steps: int = 51) -> Optional[np.ndarray]:
    """Plane coordinates along a one-dimensional subspace whose every tensor is one of the three
    (a quadratic Bezier curve or a chain with one bend lies in the plane of its three tensors)."""
    if coefficients is None or coefficients.kind == "simplex" or sorted(tensors) != list(range(coefficients.num_tensors)):
        return None
    out = []
    for a in np.linspace(0.0, 1.0, steps):
        c = coefficients((float(a),))
        out.append(sum(c[t] * points[k] for k, t in enumerate(tensors)))
    return np.array(out)


def draw(plane: Plane, out_dir: Path, name: str = "plane") -> list:
    """Two contour panels (training loss, test accuracy) with the points marked, as PNG and PDF,
    and the values as CSV (:func:`read_plane` reads them back to redraw without evaluating)."""
    X, Y = np.meshgrid(plane.xs, plane.ys)
    ratio = (plane.ys[-1] - plane.ys[0]) / max(plane.xs[-1] - plane.xs[0], 1e-12)
    fig, axes = plt.subplots(1, 2, figsize=(11, min(max(5.0 * ratio, 2.0), 5.5) + 1.0))
    loss = np.log10(np.maximum(plane.train_loss, 1e-8))
    mid = 0.5 * (plane.xs[0] + plane.xs[-1])
    for ax, values, title, cmap in ((axes[0], loss, "training loss (log10)", "viridis_r"), (axes[1], plane.test_acc, "test accuracy", "viridis")):
        filled = ax.contourf(X, Y, values, levels=20, cmap=cmap)
        ax.contour(X, Y, values, levels=10, colors="k", linewidths=0.4, alpha=0.5)
        ax.set_aspect("equal")  # distances in weight space are kept
        fig.colorbar(filled, ax=ax, fraction=0.046 * max(ratio, 0.2), pad=0.03)
        if plane.curve is not None:
            ax.plot(plane.curve[:, 0], plane.curve[:, 1], "w--", lw=1.5)
        ax.scatter(plane.points[:, 0], plane.points[:, 1], c="white", edgecolors="k", s=60, zorder=3)
        for (x, y), label in zip(plane.points, plane.labels):
            right = x > mid
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(-7 if right else 7, 7), ha="right" if right else "left",
                        color="white", fontweight="bold")
        ax.set_title(title)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = out_dir / f"{name}.{ext}"
        atomic_write(path, lambda tmp, ext=ext: fig.savefig(tmp, format=ext, dpi=150))
        paths.append(path)
    plt.close(fig)
    paths.append(write_csv(plane, out_dir / f"{name}.csv"))
    plane.paths = paths
    return paths


CSV_HEADER = "x,y,point,train_loss,test_acc"


def write_csv(plane: Plane, path: Path) -> Path:
    """The three points (``point`` = their label), the grid (``point`` empty) and the curve
    (``point`` = "curve", no values), one row each."""
    g = lambda v: format(float(v), ".10g")  # noqa: E731
    rows = [CSV_HEADER]
    rows += [f"{g(x)},{g(y)},{label},{g(m[0])},{g(m[1])}" for (x, y), label, m in zip(plane.points, plane.labels, plane.marked)]
    rows += [f"{g(x)},{g(y)},,{g(plane.train_loss[iy, ix])},{g(plane.test_acc[iy, ix])}" for iy, y in enumerate(plane.ys) for ix, x in enumerate(plane.xs)]
    rows += [f"{g(x)},{g(y)},curve,," for x, y in (plane.curve if plane.curve is not None else [])]
    atomic_write_text(path, "\n".join(rows) + "\n")
    return path


def read_plane(path: Path) -> Plane:
    """A plane written by :func:`write_csv` (to draw it again without evaluating anything)."""
    lines = Path(path).read_text().splitlines()
    if not lines or lines[0] != CSV_HEADER:
        raise UserError(f"{path} is not a plane CSV written by analyze_results/plane.py")
    points, labels, marked, grid, curve = [], [], [], {}, []
    for line in lines[1:]:
        x, y, label, loss, acc = line.split(",")
        if label == "curve":
            curve.append((float(x), float(y)))
        elif label:
            points.append((float(x), float(y)))
            labels.append(label)
            marked.append((float(loss), float(acc)))
        else:
            grid[(float(x), float(y))] = (float(loss), float(acc))
    xs, ys = np.array(sorted({x for x, _ in grid})), np.array(sorted({y for _, y in grid}))
    loss = np.array([[grid[(x, y)][0] for x in xs] for y in ys])
    acc = np.array([[grid[(x, y)][1] for x in xs] for y in ys])
    return Plane(np.array(points), xs, ys, loss, acc, marked, tuple(labels), np.array(curve) if curve else None)


def _labels(coefficients, tensors: Sequence[int]) -> tuple:
    if coefficients.kind == "simplex":
        return tuple(f"vertex {t}" for t in tensors)
    inner = coefficients.num_tensors - 2
    return tuple({0: "alpha=0", 1: "alpha=1"}.get(t, "bend" if inner == 1 else f"bend {t - 1}") for t in tensors)


def load_three(checkpoints: Sequence[str], tensors: Sequence[int] = (0, 1, 2), data: Optional[str] = None, device: str = "cpu") -> tuple:
    """``(model, settings, data bundle, labels, curve)``: a SimplexConv3 model of the checkpoints'
    architecture whose vertices are three tensors of one subspace checkpoint (``tensors``: a
    curve's ends 0, 1 and its bend 2; a simplex's vertices) or three standard networks."""
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
    s = replace(s, device=device, multigpu=None, label_noise=None, data=data or s.data, resume=None, pretrained=False)
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
        curve = (coefficients, tuple(tensors))
    else:
        state_dicts, labels = [c["state_dicts"][0] for c in ckpts], ("A", "B", "C")
    model = runner.build_model(replace(s, conv_type="SimplexConv3", bn_type="SimplexBN3", n=3), bundle)
    load_endpoints(model, state_dicts, [str(p) for p in (checkpoints if len(checkpoints) == 3 else [f"{checkpoints[0]} tensor {t}" for t in tensors])])
    return model.to(device), s, bundle, labels, curve


def plane_plot(checkpoints: Sequence[str], out_dir: "str | Path | None" = None, name: str = "plane", grid: int = 11, margin: float = 0.2,
               tensors: Sequence[int] = (0, 1, 2), data: Optional[str] = None, device: str = "cpu", threads: Optional[int] = None) -> Plane:
    """Evaluate and draw the plane through three networks (see the module docstring); returns it
    with ``paths`` (PNG, PDF, CSV) set. ``threads``: PyTorch's CPU threads meanwhile (restored after;
    a small model on a busy machine is many times faster on one)."""
    if threads is None:
        return _plane_plot(checkpoints, out_dir, name, grid, margin, tensors, data, device)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _plane_plot(checkpoints, out_dir, name, grid, margin, tensors, data, device)
    finally:
        torch.set_num_threads(before)


def _plane_plot(checkpoints, out_dir, name, grid, margin, tensors, data, device) -> Plane:
    from subspaces.args import replace
    from subspaces.trainers.base import RunContext
    from subspaces.trainers.evaluate import Evaluator
    from subspaces.utils.bn import update_bn

    if grid < 2 or margin < 0:
        raise UserError(f"--grid {grid} must be at least 2 and --margin {margin} at least 0")
    model, s, bundle, labels, curve = load_three(checkpoints, tensors, data, device)
    ctx = RunContext([model], [None], bundle, nn.CrossEntropyLoss(), torch.device(device))
    ev = Evaluator(replace(s, amp="none", channels_last=False), ctx, model, lambda loader, m, d: update_bn(loader, m, d))
    plane = evaluate_plane(ev, model, grid, margin)
    plane.labels = labels
    if curve is not None:
        plane.curve = curve_in_plane(plane.points, *curve)
    draw(plane, Path(out_dir).expanduser() if out_dir else Path(checkpoints[0]).expanduser().resolve().parent, name)
    return plane


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: one line on stderr and exit status 2 on bad input."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="one curve or simplex checkpoint, or three standard networks")
    p.add_argument("--tensors", type=ints, default=(0, 1, 2), metavar="I,J,K", help="with one checkpoint: its three tensors (default 0,1,2: a curve's ends and first bend)")
    p.add_argument("--grid", type=int, default=11, metavar="N", help="N x N grid points (default 11)")
    p.add_argument("--margin", type=float, default=0.2, help="grid margin beyond the three points, as a fraction of their extent (default 0.2)")
    p.add_argument("--out", help="folder for the figure (default: the first checkpoint's folder)")
    p.add_argument("--name", default="plane", help="file name of the figure, without extension (default plane)")
    p.add_argument("--data", metavar="DIR", help=DATA_HELP + " (default: the checkpoint's --data)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<i> (default cpu)")
    p.add_argument("--threads", type=int, metavar="N", help="PyTorch CPU threads (default: PyTorch's; 1 is fastest for Digits on a busy machine)")
    ns = p.parse_args(argv)
    try:
        if ns.threads is not None and ns.threads < 1:
            raise UserError(f"--threads {ns.threads} must be at least 1")
        plane = plane_plot(ns.checkpoints, ns.out, ns.name, ns.grid, ns.margin, ns.tensors, ns.data, ns.device, ns.threads)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for label, (loss, acc) in zip(plane.labels, plane.marked):
        print(f"{label}: train loss {loss:.4f}, test accuracy {acc:.4f}")
    print("figure: " + ", ".join(str(p) for p in plane.paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
