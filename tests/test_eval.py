"""Evaluating lines, curves and simplexes (Figures 4 and 5) through main.py on Digits.

One line is trained once for the module (2 epochs); curve and simplex checkpoints are written
straight from freshly built models (their metrics need no training to be checked).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from subspaces import main as main_mod
import subspaces.trainers.eval_one_dim_subspaces as eval_lines
import subspaces.trainers.eval_simplexes as eval_simplexes
from subspaces.args import Settings, parse_args, replace
from subspaces.data import get_dataset
from subspaces.modes import set_point, subspace_layers
from subspaces.utils.bn import update_bn
from subspaces.utils.checkpoint import save_checkpoint
from subspaces.utils.evaluation import predict
from subspaces.utils.metrics import accuracy
from subspaces.utils.results import read_results
from tests.helpers import CountingBN, Terminal, cli, final_ckpt

LINE = ["--conv-type", "LinesConv", "--bn-type", "LinesBN"]
EVAL = ["--set", "Digits", "--trainer", "eval_one_dim_subspaces", "--pretrained", "--epochs", "0", "--batch-size", "128"]
PAIR_COLUMNS = [
    "curr_acc1", "m0_acc", "ensemble_acc", "tvdist", "feat_cossim",  # the original's
    "nll", "ece", "brier", "m0_nll", "m0_ece", "m0_brier", "ensemble_nll", "ensemble_ece", "ensemble_brier",
]


@pytest.fixture(scope="module")
def line_ckpt(tmp_path_factory) -> Path:
    """A line trained 2 epochs on Digits."""
    log = tmp_path_factory.mktemp("line")
    argv = ["--set", "Digits", *LINE, "--trainer", "train_one_dim_subspaces", "--epochs", "2", "--batch-size", "128", "--save", "--log-dir", log, "--name", "line"]
    assert cli(argv) == 0
    return final_ckpt(log / "line+try=0")


def fresh_ckpt(path: Path, conv: str, bn: str) -> Path:
    """A checkpoint of an untrained Digits model with these layer types (what main.py --save writes)."""
    s = replace(Settings(), conv_type=conv, bn_type=bn, model="DigitsConvNet", output_size=10)
    torch.manual_seed(0)
    net = main_mod.build_model(s, SimpleNamespace(in_channels=1))
    save_checkpoint(path, {"epoch": 0, "iter": 0, "arch": s.model, "state_dicts": [net.state_dict()], "optimizers": [],
                           "best_acc1": 0.0, "curr_acc1": 0.0, "settings": s.to_dict()})
    return path


def test_pair_row_and_grid_rows(line_ckpt, tmp_path, monkeypatch):
    """The single pair (0.25, 0.75) and the grid 0,0.25,...,1: one row vs five, equal at 0.25,
    and the grid recomputes BatchNorm statistics once per distinct point (5, not 10)."""
    log = tmp_path / "logs"
    counter = CountingBN()
    monkeypatch.setattr(eval_lines, "update_bn", counter)
    base = EVAL + LINE + ["--resume", line_ckpt, "--update-bn", "--save", "--log-dir", log]

    assert cli(base + ["--alpha0", "0.25", "--alpha1", "0.75", "--name", "id=lines+pair"]) == 0
    assert counter.calls == 2
    rows = read_results(log / "results.csv")
    assert len(rows) == 1
    pair = rows[0]
    assert pair["Name"] == "id=lines+pair+try=0"
    for col in PAIR_COLUMNS + ["test_loss", "percent_disagree"]:
        assert pair[col] != "", col
    assert (float(pair["alpha0"]), float(pair["alpha1"])) == (0.25, 0.75)
    assert float(pair["curr_acc1"]) > 0.5 and float(pair["ensemble_acc"]) > 0.5
    assert 0.0 < float(pair["tvdist"]) < 1.0 and 0.0 < float(pair["feat_cossim"]) <= 1.0

    counter.calls = 0
    summary = main_mod.main(parse_args([str(a) for a in base + ["--alphas", "0,0.25,0.5,0.75,1", "--name", "id=lines+grid"]]))
    assert counter.calls == 5  # one BatchNorm recompute per distinct point
    rows = read_results(log / "results.csv")
    assert len(rows) == 6
    grid = rows[1:]
    assert [r["Name"] for r in grid] == [f"id=lines+grid+try=0+alpha0={a}+alpha1={b}" for a, b in
                                         [("0", "1"), ("0.25", "0.75"), ("0.5", "0.5"), ("0.75", "0.25"), ("1", "0")]]
    assert [(float(r["alpha0"]), float(r["alpha1"])) for r in grid] == [(0, 1), (0.25, 0.75), (0.5, 0.5), (0.75, 0.25), (1, 0)]
    for col in PAIR_COLUMNS:
        assert float(grid[1][col]) == pytest.approx(float(pair[col]), rel=1e-6, abs=1e-9), col
        assert grid[1]["best_acc1"] == grid[1]["curr_acc1"]
    # The in-memory rows carry the raw floats: equal to float precision.
    single = main_mod.main(parse_args([str(a) for a in base + ["--alpha0", "0.25", "--alpha1", "0.75", "--name", "p2"]]))
    for k, v in single.rows[0].items():
        if isinstance(v, float) and k not in ("best_acc1",):
            assert summary.rows[1][k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    # Mirror pairs share their points: (0, 1) and (1, 0) swap the two points' columns.
    assert grid[0]["curr_acc1"] == grid[4]["m0_acc"] and grid[0]["m0_nll"] == grid[4]["nll"]
    assert grid[0]["tvdist"] == grid[4]["tvdist"] and grid[0]["ensemble_acc"] == grid[4]["ensemble_acc"]
    # The midpoint paired with itself: no distance, identical features.
    assert float(grid[2]["tvdist"]) == 0.0 and float(grid[2]["feat_cossim"]) == pytest.approx(1.0)
    assert grid[2]["ensemble_acc"] == grid[2]["curr_acc1"]


def test_curve_grid_without_bn_update_carries_label_noise(tmp_path, monkeypatch):
    """Curves go through the same evaluation; label noise and smoothing are accepted and the rows
    carry the noise level for the analysis to group by."""
    ck = fresh_ckpt(tmp_path / "curve.pt", "CurvesConv", "CurvesBN")
    counter = CountingBN()
    monkeypatch.setattr(eval_lines, "update_bn", counter)
    log = tmp_path / "logs"
    argv = EVAL + ["--conv-type", "CurvesConv", "--bn-type", "CurvesBN", "--resume", ck, "--alphas", "0,0.5,1",
                   "--label-noise", "0.2", "--label-smoothing", "0.1", "--save-data", "--log-dir", log, "--name", "id=curves"]
    assert cli(argv) == 0
    assert counter.calls == 0
    rows = read_results(log / "results.csv")
    assert len(rows) == 3
    assert {r["label_noise"] for r in rows} == {"0.2"} and {r["label_smoothing"] for r in rows} == {"0.1"}
    assert {r["conv_type"] for r in rows} == {"CurvesConv"}
    assert rows[0]["curr_acc1"] == rows[2]["m0_acc"]


@pytest.mark.parametrize("update", [False, True])
def test_simplex_evaluation(tmp_path, monkeypatch, update):
    """Centre (BatchNorm always recomputed), vertices (recomputed with --update-bn, otherwise with
    the checkpoint's statistics), the vertex ensemble and the diversity among vertices."""
    ck = fresh_ckpt(tmp_path / "simplex.pt", "SimplexConv3", "SimplexBN3")
    counter = CountingBN()
    monkeypatch.setattr(eval_simplexes, "update_bn", counter)
    log = tmp_path / "logs"
    argv = ["--set", "Digits", "--trainer", "eval_simplexes", "--conv-type", "SimplexConv3", "--bn-type", "SimplexBN3",
            "--resume", ck, "--pretrained", "--epochs", "0", "--save-data", "--log-dir", log, "--name", "id=simplex"]
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    assert cli(argv + (["--update-bn"] if update else [])) == 0
    assert counter.calls == (4 if update else 1)
    assert "simplex vertices" in err.getvalue()  # a bar over the vertices, drawn on a terminal
    (row,) = read_results(log / "results.csv")
    cols = ["wa_acc", "nll", "ece", "brier", "avg_model_acc", "avg_model_std", "ensemble_acc", "ensemble_nll",
            "ensemble_ece", "ensemble_brier", "tvdist", "feat_cossim", "percent_disagree", "cossim", "l2"]
    cols += [f"model_{i}_{m}" for i in range(3) for m in ("acc", "nll", "ece", "brier")]
    for col in cols:
        assert row[col] != "", col
    assert row["curr_acc1"] == row["wa_acc"]

    # The vertices and their ensemble, by hand from the checkpoint.
    s = parse_args([str(a) for a in argv])
    data = get_dataset(s)
    net = main_mod.build_model(replace(s, model="DigitsConvNet", output_size=10), data)
    net.load_state_dict(torch.load(ck, weights_only=True)["state_dicts"][0])
    logits = []
    for i in range(3):
        set_point(net, tuple(1.0 if k == i else 0.0 for k in (1, 2)))
        if update:
            data.set_epoch(0)
            update_bn(data.bn_loader, net)
        logits.append(predict(net, data.val_loader, torch.device("cpu")).logits)
    targets = predict(net, data.val_loader, torch.device("cpu")).targets
    for i in range(3):
        assert float(row[f"model_{i}_acc"]) == pytest.approx(accuracy(logits[i], targets), abs=1e-6)
    assert float(row["ensemble_acc"]) == pytest.approx(accuracy(sum(logits), targets), abs=1e-6)


def _bad(tmp_path, argv, capsys, expect):
    log = tmp_path / "bad"
    capsys.readouterr()
    assert cli(argv + ["--save", "--log-dir", log, "--name", "bad"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert expect in err, err
    assert not log.exists() or not any(log.iterdir())  # no results.csv, no run folder


def test_bad_input_writes_nothing(line_ckpt, tmp_path, capsys):
    simplex = fresh_ckpt(tmp_path / "simplex.pt", "SimplexConv3", "SimplexBN3")
    sx = ["--conv-type", "SimplexConv3", "--bn-type", "SimplexBN3"]
    ev_sx = ["--set", "Digits", "--trainer", "eval_simplexes", "--pretrained", "--epochs", "0"]
    # A line checkpoint evaluated as a simplex, and the reverse: the saved layer types are named.
    _bad(tmp_path, ev_sx + sx + ["--resume", line_ckpt], capsys, "--conv-type LinesConv")
    _bad(tmp_path, EVAL + LINE + ["--resume", simplex], capsys, "--conv-type SimplexConv3")
    # Line layers with the simplex evaluator (and the reverse): the trainer names the right one.
    _bad(tmp_path, ev_sx + LINE + ["--resume", line_ckpt], capsys, "eval_one_dim_subspaces")
    _bad(tmp_path, EVAL + sx + ["--resume", simplex], capsys, "eval_simplexes")
    # Layer types that do not match --conv-type (a line checkpoint into a standard model).
    _bad(tmp_path, EVAL + ["--resume", line_ckpt], capsys, "LinesConv")
    # Alphas outside [0, 1].
    _bad(tmp_path, EVAL + LINE + ["--resume", line_ckpt, "--alphas", "0,0.5,1.5"], capsys, "outside [0, 1]")
    _bad(tmp_path, EVAL + LINE + ["--resume", line_ckpt, "--alpha0", "-0.1"], capsys, "outside [0, 1]")
    # An evaluation with nothing to evaluate.
    _bad(tmp_path, ["--set", "Digits", "--trainer", "eval_one_dim_subspaces", "--epochs", "0"] + LINE, capsys, "--resume")
    _bad(tmp_path, EVAL + LINE + ["--resume", tmp_path / "missing.pt"], capsys, "not found")


def test_cpu_evaluation_runs_default_to_channels_last(line_ckpt, tmp_path):
    """An evaluation-only run on a CPU uses channels-last convolutions unless told not to, and
    gives the same accuracies as the NCHW run (other metrics equal up to float rounding)."""
    log = tmp_path / "logs"
    base = EVAL + LINE + ["--resume", line_ckpt, "--update-bn", "--alphas", "0,0.5,1", "--save-data", "--log-dir", log]
    assert cli(base + ["--name", "auto"]) == 0
    assert cli(base + ["--name", "nchw", "--no-channels-last"]) == 0
    saved = {n: json_settings(log / f"{n}+try=0") for n in ("auto", "nchw")}
    assert saved["auto"]["channels_last"] is True and saved["nchw"]["channels_last"] is False
    rows = {n: [r for r in read_results(log / "results.csv") if r["Name"].startswith(n)] for n in ("auto", "nchw")}
    assert len(rows["auto"]) == len(rows["nchw"]) == 3
    for a, b in zip(rows["auto"], rows["nchw"]):
        for col in ("curr_acc1", "m0_acc", "ensemble_acc"):
            assert a[col] == b[col]
        for col in ("tvdist", "feat_cossim", "nll"):
            assert float(a[col]) == pytest.approx(float(b[col]), rel=1e-4, abs=1e-6)


def json_settings(run_dir: Path) -> dict:
    return json.loads((run_dir / "settings.txt").read_text())


def test_curve_stats_as_dnn_mode_connectivity(tmp_path, capsys):
    """--curve-stats on a curve (--alphas 0,0.25,0.5: points 0, 0.25, ..., 1): per point the train
    loss and error and the test NLL and error (checked by hand at alpha 0.75 and 0), the path's length
    (the distances between the weights of consecutive points, by hand) and each quantity's min, max,
    mean and length-weighted mean by the trapezoid rule (eval_curve.py's ``stats``), printed and in
    every row; refused where there is no path or no reader."""
    s = replace(Settings(), conv_type="CurvesConv", bn_type="CurvesBN", model="DigitsConvNet", output_size=10, width_mult=0.25, seed=2)
    torch.manual_seed(0)
    net = main_mod.build_model(s, SimpleNamespace(in_channels=1))
    ckpt = tmp_path / "curve.pt"
    save_checkpoint(ckpt, {"epoch": 1, "state_dicts": [net.state_dict()], "settings": s.to_dict()})
    log = tmp_path / "eval"
    argv = [*EVAL, "--conv-type", "CurvesConv", "--bn-type", "CurvesBN", "--width-mult", "0.25", "--resume", ckpt, "--update-bn",
            "--alphas", "0,0.25,0.5", "--curve-stats", "--no-channels-last", "--save-data", "--log-dir", log]
    capsys.readouterr()
    assert cli(argv) == 0
    printed = capsys.readouterr().out
    assert "length" in printed and "train_nll" in printed and "int" in printed
    rows = read_results(log / "results.csv")
    assert [(float(r["alpha0"]), float(r["alpha1"])) for r in rows] == [(0, 1), (0.25, 0.75), (0.5, 0.5)]

    data = get_dataset(s)  # the checkpoint's seed: its BatchNorm batches
    hand = main_mod.build_model(s, data)
    hand.load_state_dict(torch.load(ckpt, weights_only=True)["state_dicts"][0])
    by_hand = {}
    for a in (0.75, 0.0):
        set_point(hand, (a,))
        data.set_epoch(0)
        update_bn(data.bn_loader, hand)
        values = []
        for p in (predict(hand, data.bn_loader, torch.device("cpu")), predict(hand, data.val_loader, torch.device("cpu"))):
            values += [torch.nn.functional.cross_entropy(p.logits, p.targets).item(), (p.logits.argmax(1) != p.targets).double().mean().item()]
        by_hand[a] = values
    assert [float(rows[1][k]) for k in ("train_nll", "train_err", "nll")] == pytest.approx(by_hand[0.75][:3], rel=1e-5)
    assert 1 - float(rows[1]["curr_acc1"]) == pytest.approx(by_hand[0.75][3], abs=1e-6)
    assert [float(rows[0][k]) for k in ("m0_train_nll", "m0_train_err", "m0_nll")] == pytest.approx(by_hand[0.0][:3], rel=1e-5)

    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    at = {float(r["alpha1"]): r for r in rows} | {float(r["alpha0"]): {k[3:]: v for k, v in r.items() if k.startswith("m0_")} | {"acc": r["m0_acc"]} for r in rows}
    at = {a: at[a] for a in alphas}
    flat = []
    for a in alphas:
        set_point(hand, (a,))
        flat.append(torch.cat([m.combined(n).detach().double().flatten() for m in subspace_layers(hand) for n in m._endpoint_params]))
    dl = [(flat[i + 1] - flat[i]).norm().item() for i in range(4)]
    row = rows[0]
    assert float(row["curve_length"]) == pytest.approx(sum(dl), rel=1e-6) and row["curve_points"] == "5"
    series = {"train_nll": [float(at[a]["train_nll"]) for a in alphas], "test_nll": [float(at[a]["nll"]) for a in alphas]}
    for q, v in series.items():
        trapezoid = sum((v[i] + v[i + 1]) / 2 * dl[i] for i in range(4)) / sum(dl)
        want = {"min": min(v), "max": max(v), "avg": sum(v) / 5, "int": trapezoid}
        assert {k: float(row[f"curve_{q}_{k}"]) for k in want} == pytest.approx(want, rel=1e-6), q
    assert all(r["curve_length"] == row["curve_length"] for r in rows)

    bad = tmp_path / "bad"
    base = [a for a in argv[:-2] if a not in ("--alphas", "0,0.25,0.5")] + ["--log-dir", bad]
    for extra, expect in ((["--alpha0", "0.5", "--alpha1", "0.5"], "at least two points"),
                          (["--trainer", "eval_simplexes"], "--curve-stats is read by --trainer eval_one_dim_subspaces / linestats_swa")):
        assert cli(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expect in err[0], err
    assert not bad.exists()
