"""Plane plots (analyze_results/plane.py): the grid's values are evaluations of plain networks at
those points of the plane, the three marked points are the three networks, the files exist, and
dnn-mode-connectivity's options (per-side margins, train error and test NLL, a curve of any number
of bends projected onto the plane) are there."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from subspaces import main as main_mod
from subspaces.analysis import plane as plane_mod
from subspaces.analysis.plane import barycentric, plane_basis, plane_plot
from subspaces.modes import plain_state_dict, set_point
from subspaces.args import Settings, replace
from subspaces.data import get_dataset
from subspaces.utils.bn import update_bn
from subspaces.utils.checkpoint import save_checkpoint
from subspaces.utils.errors import UserError
from subspaces.utils.evaluation import predict

TINY = dict(model="DigitsConvNet", output_size=10, width_mult=0.25, batch_size=256, test_batch_size=512)


def fresh(path: Path, seed: int, conv: str = "StandardConv", bn: str = "StandardBN") -> Path:
    s = replace(Settings(), conv_type=conv, bn_type=bn, **TINY)
    torch.manual_seed(seed)
    net = main_mod.build_model(s, SimpleNamespace(in_channels=1))
    with torch.no_grad():  # distinct BatchNorm affine parameters too
        for name, p in net.named_parameters():
            if "bns" in name:
                p.add_(0.1 * torch.randn(p.shape))
    save_checkpoint(path, {"epoch": 0, "state_dicts": [net.state_dict()], "settings": s.to_dict()})
    return path


def direct(state: dict, s: Settings, weighting: str = "batch") -> tuple:
    """Train loss and error, test NLL and error of a plain network with ``state``'s parameters,
    BatchNorm recomputed over the evaluation's batches (the training set at epoch 0)."""
    data = get_dataset(s)
    data.set_epoch(0)
    batches = list(data.bn_loader)
    net = main_mod.build_model(s, data)
    net.load_state_dict(state)
    update_bn(batches, net, weighting=weighting)
    out = []
    for p in (predict(net, batches, torch.device("cpu")), predict(net, data.val_loader, torch.device("cpu"))):
        out += [F.cross_entropy(p.logits, p.targets).item(), (p.logits.argmax(1) != p.targets).double().mean().item()]
    return tuple(out)


def test_grid_values_are_the_networks_at_those_points(tmp_path):
    paths = [fresh(tmp_path / f"n{i}.pt", i) for i in range(3)]
    plane = plane_plot([str(p) for p in paths], tmp_path / "fig", grid=3, margins=0.25, bn_weighting="sample")
    s = replace(Settings(), **TINY)
    states = [torch.load(p, weights_only=True)["state_dicts"][0] for p in paths]
    for i in range(3):  # the marked points are the three networks (BatchNorm recomputed per sample)
        assert plane.marked[i] == pytest.approx(direct(states[i], s, "sample"), rel=1e-5, abs=1e-7)
    assert plane.labels == ("A", "B", "C")

    # a corner of the grid (outside the triangle: negative coordinates), built by hand from the
    # Gram-Schmidt basis of the three parameter vectors
    names = [n for n, _ in main_mod.build_model(s, SimpleNamespace(in_channels=1)).named_parameters()]
    w = [torch.cat([sd[n].double().flatten() for n in names]) for sd in states]
    u = (w[1] - w[0]) / (w[1] - w[0]).norm()
    v = (w[2] - w[0]) - (w[2] - w[0]).dot(u) * u
    v = v / v.norm()
    np.testing.assert_allclose(plane.points[2], [(w[2] - w[0]).dot(u).item(), (w[2] - w[0]).dot(v).item()], rtol=1e-9)
    x, y = plane.xs[0], plane.ys[0]
    assert x < 0 and y < 0 and min(barycentric(plane.points, (x, y))) < 0
    flat = w[0] + x * u + y * v
    state, offset = dict(states[0]), 0
    for n in names:
        size = states[0][n].numel()
        state[n] = flat[offset:offset + size].reshape(states[0][n].shape).float()
        offset += size
    train_loss, train_err, test_nll, test_err = direct(state, s, "sample")
    assert plane.train_loss[0, 0] == pytest.approx(train_loss, rel=1e-3) and plane.test_nll[0, 0] == pytest.approx(test_nll, rel=1e-3)
    assert abs(plane.train_err[0, 0] - train_err) <= 2 / 1437 + 1e-9 and abs(plane.test_err[0, 0] - test_err) <= 1 / 360 + 1e-9

    files = {p.name: p for p in plane.paths}
    assert set(files) == {"plane.png", "plane.pdf", "plane.csv"} and all(p.stat().st_size > 0 for p in files.values())
    png = files["plane.png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and files["plane.pdf"].read_bytes()[:4] == b"%PDF"
    assert int.from_bytes(png[16:20], "big") == round(3.3 * 300)  # one paper column wide, at 300 dpi
    rows = files["plane.csv"].read_text().splitlines()
    assert rows[0] == "x,y,point,train_loss,train_err,test_nll,test_err" and len(rows) == 1 + 3 + 9
    again = plane_mod.read_plane(files["plane.csv"])  # to draw again without evaluating
    for k in plane_mod.VALUES:
        np.testing.assert_allclose(getattr(again, k), getattr(plane, k), rtol=1e-9)
    np.testing.assert_allclose(again.points, plane.points, rtol=1e-9, atol=1e-12)
    assert again.labels == plane.labels and again.curve is None
    np.testing.assert_allclose(np.array(again.marked), np.array(plane.marked), rtol=1e-9)


def test_basis_and_barycentric_coordinates():
    gen = torch.Generator().manual_seed(0)
    w = [torch.randn(50, generator=gen, dtype=torch.float64) for _ in range(3)]
    _, _, points = plane_basis(w)
    assert points[0].tolist() == [0.0, 0.0] and points[1][1] == 0.0
    for i, j in ((0, 1), (0, 2), (1, 2)):  # distances are kept
        assert np.linalg.norm(points[i] - points[j]) == pytest.approx((w[i] - w[j]).norm().item())
    xy = (0.3 * points[0] + -0.4 * points[1] + 1.1 * points[2])
    assert barycentric(points, xy) == pytest.approx((0.3, -0.4, 1.1))
    with pytest.raises(UserError, match="one line"):
        plane_basis([w[0], w[1], 2 * w[1] - w[0]])


def test_a_curve_checkpoint_gives_its_ends_and_bend(tmp_path, monkeypatch):
    ck = fresh(tmp_path / "curve.pt", 0, "CurvesConv", "CurvesBN")
    threads, seen = torch.get_num_threads(), []
    evaluate = plane_mod.evaluate_plane
    monkeypatch.setattr(plane_mod, "evaluate_plane", lambda *a, **k: seen.append(torch.get_num_threads()) or evaluate(*a, **k))
    plane = plane_plot([str(ck)], None, name="curve_plane", grid=2, threads=1)
    assert seen == [1] and torch.get_num_threads() == threads  # one thread meanwhile, restored after
    assert plane.labels == ("alpha=0", "alpha=1", "bend")
    assert plane.paths[0] == tmp_path / "curve_plane.png" and plane.paths[0].exists()  # beside the checkpoint
    np.testing.assert_allclose(plane.curve[0], plane.points[0], atol=1e-9)
    np.testing.assert_allclose(plane.curve[-1], plane.points[1], atol=1e-9)
    assert plane_mod.read_plane(plane.paths[2]).curve == pytest.approx(plane.curve)
    mid = plane.curve[len(plane.curve) // 2]  # alpha = 0.5: a quarter of each end, half the bend
    np.testing.assert_allclose(mid, 0.25 * plane.points[0] + 0.25 * plane.points[1] + 0.5 * plane.points[2], atol=1e-9)


def test_bad_input(tmp_path, capsys):
    line = fresh(tmp_path / "line.pt", 0, "LinesConv", "LinesBN")
    with pytest.raises(UserError, match="fewer than three tensors"):
        plane_plot([str(line)], tmp_path / "out")
    std = [fresh(tmp_path / f"s{i}.pt", i) for i in range(2)]
    assert plane_mod.main([str(p) for p in std] + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "three standard networks" in err[0]
    assert plane_mod.main([str(line), "--threads", "0"]) == 2 and "--threads 0 must be at least 1" in capsys.readouterr().err
    with pytest.raises(UserError, match="must be standard networks"):
        plane_plot([str(std[0]), str(std[1]), str(line)], tmp_path / "out")
    curve = fresh(tmp_path / "curve.pt", 0, "CurvesConv", "CurvesBN")
    with pytest.raises(UserError, match="three different tensors"):
        plane_plot([str(curve)], tmp_path / "out", tensors=(0, 1, 3))
    assert not (tmp_path / "out").exists()


def test_per_side_margins_as_dnn_mode_connectivity():
    """Each side widened by its margin times the points' extent along that axis (its plane.py:
    alphas from -margin_left to 1 + margin_right of |end - start|, betas likewise of the bend's height)."""
    points = np.array([[0.0, 0.0], [10.0, 0.0], [4.0, 2.0]])
    xs, ys = plane_mod.grid_axes(points, 21, (0.1, 0.2, 0.3, 0.4))
    assert len(xs) == len(ys) == 21
    assert (xs[0], xs[-1], ys[0], ys[-1]) == pytest.approx((-1.0, 12.0, -0.6, 2.8))
    seen = {}
    real = plane_mod.plane_plot
    try:
        plane_mod.plane_plot = lambda *a, **k: seen.setdefault("args", a) and (_ for _ in ()).throw(UserError("stop"))
        assert plane_mod.main(["c.pt", "--margin", "0.5", "--margin-top", "0.1", "--grid", "21", "--curve-points", "7"]) == 2
    finally:
        plane_mod.plane_plot = real
    a = seen["args"]
    assert a[3] == 21 and list(a[4]) == [0.5, 0.5, 0.5, 0.1] and a[9] == 7


def test_a_curve_of_several_bends_is_projected_onto_the_plane(tmp_path):
    """A Bezier curve of degree 3 (two control points) leaves the plane through its ends and first
    control point: it is drawn as the orthogonal projection of its weights at each alpha."""
    ck = fresh(tmp_path / "bezier.pt", 0, "BezierConv3", "BezierBN3")
    model, s, _, labels, (coefficients, vectors) = plane_mod.load_three([str(ck)])
    assert labels == ("alpha=0", "alpha=1", "bend 1") and len(vectors) == 4
    w = plane_mod.flat_tensors(model)
    u, v, points = plane_basis(w)
    curve = plane_mod.curve_in_plane(plane_mod.project(vectors, w[0], u, v), coefficients, 5)
    net = main_mod.build_model(s, SimpleNamespace(in_channels=1))
    net.load_state_dict(torch.load(ck, weights_only=True)["state_dicts"][0])
    names = [n for n, _ in main_mod.build_model(replace(s, conv_type="StandardConv", bn_type="StandardBN"), SimpleNamespace(in_channels=1)).named_parameters()]
    for k, alpha in enumerate(np.linspace(0, 1, 5)):
        set_point(net, (float(alpha),))
        sd = plain_state_dict(net)
        wa = torch.cat([sd[n].double().flatten() for n in names])  # the network at alpha, by name
        np.testing.assert_allclose(curve[k], [(wa - w[0]).dot(u).item(), (wa - w[0]).dot(v).item()], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(curve[[0, -1]], points[:2], atol=1e-6)
    mid = sum(c * vec for c, vec in zip(coefficients((0.5,)), vectors))
    assert (mid - w[0] - (mid - w[0]).dot(u) * u - (mid - w[0]).dot(v) * v).norm() > 1e-3  # off the plane: a projection


def test_a_plane_csv_without_the_error_columns_still_reads(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("x,y,point,train_loss,test_acc\n0,0,A,0.5,0.9\n1,0,B,0.6,0.8\n0,1,C,0.7,0.7\n"
                   + "".join(f"{x},{y},,0.1,0.75\n" for y in (0, 1) for x in (0, 1)) + "0.5,0.2,curve,,\n")
    plane = plane_mod.read_plane(old)
    assert plane.test_err[0, 0] == pytest.approx(0.25) and np.isnan(plane.test_nll).all() and plane.curve.shape == (1, 2)
