"""Analysis scripts: Figures 4 and 5 and the calibration figure from a small results tree made here."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

from subspaces.analysis import figures as common
from subspaces.analysis.figures import MissingRuns, calibration, cli, figure4, figure5, load
from subspaces.sweep import ENSEMBLES, EVAL_ONE_DIM, MEMBERS, ONE_DIM, SIMPLEXES, SWA
from subspaces.utils.results import append_rows

ROOT = Path(__file__).resolve().parents[1]
ALPHAS = (0.0, 0.5, 1.0)


def acc_along(run_id: str, seed: int, a: float) -> float:
    """A made-up accuracy: a bump at the midpoint, offset per variant and seed."""
    if run_id == "linestats-swa":  # between two trained networks: a valley in the middle
        return 0.90 - 0.6 * (1 - abs(2 * a - 1)) + 0.002 * seed
    return 0.90 + {"lines": 0.01, "lines-layerwise": 0.0, "curves": 0.02}[run_id] + 0.02 * (1 - abs(2 * a - 1)) + 0.002 * seed


def common_cols(ln: float, seed: int) -> dict:
    return {"set": "CIFAR10", "model": "CIFARResNet", "model_name": "cifar_resnet_20", "label_noise": ln, "seed": seed}


def make_results(root: Path, skip: tuple = ()) -> None:
    """Rows like the configs write, for 2 seeds (members and SWA also at label noise 0.2)."""
    def add(family, rows):
        if family not in skip:
            append_rows(root / family / "results.csv", rows)

    for ln in (0.0, 0.2):
        add(MEMBERS, [{"Name": f"id=base+ln={ln}+seed={s}+try=0", "curr_acc1": 0.90 - ln / 2 + 0.01 * s, "ece": 0.02 + ln, **common_cols(ln, s)} for s in (0, 1)])
        add(ENSEMBLES, [{"Name": f"id=ensemble+ln={ln}+epochs=160+num_models=2+members=0-1+try=0", "curr_acc1": 0.93 - ln / 2, "ensemble_acc": 0.93 - ln / 2,
                         "ece": 0.01 + ln, "num_models": 2, **common_cols(ln, 0)}])
        add(ONE_DIM, [{"Name": f"id=lines+ln={ln}+beta=1.0+num_samples=1+seed={s}+try=0", "curr_acc1": 0.92 - ln / 4, "ece": 0.015 + ln / 2, **common_cols(ln, s)} for s in (0, 1)])
        add(SWA, [{"Name": f"id=swa+ln={ln}+lr_policy=swa_constant_lr+seed={s}+try=0", "curr_acc1": 0.91 - ln / 3, "ece": 0.03, **common_cols(ln, s)} for s in (0, 1)])
    for run_id in ("lines", "lines-layerwise", "curves", "linestats-swa"):
        if f"eval:{run_id}" in skip:
            continue
        for s in (0, 1):
            name = (f"id={run_id}+ln=0.0+epochs=160+members={s}-{s + 1}" if run_id == "linestats-swa"
                    else f"id={run_id}+ln=0.0+beta=1.0+num_samples=1+seed={s}")
            add(EVAL_ONE_DIM, [{
                "Name": f"{name}+try=0+alpha0={1 - a:g}+alpha1={a:g}",
                "curr_acc1": acc_along(run_id, s, a), "m0_acc": acc_along(run_id, s, 1 - a),
                "ensemble_acc": acc_along(run_id, s, a) + 0.01, "alpha0": 1 - a, "alpha1": a, **common_cols(0.0, s),
            } for a in ALPHAS])
    for run_id in ("simplex", "simplex-layerwise"):
        add(SIMPLEXES, [{"Name": f"id={run_id}+n={n}+ln=0.0+beta=1.0+num_samples=1+seed={s}+try=0", "curr_acc1": 0.90 + 0.01 * n + 0.002 * s,
                         "n": n, **common_cols(0.0, s)} for n in (2, 3, 4) for s in (0, 1)])


def test_plots_need_no_tex():
    assert matplotlib.get_backend().lower() == "agg" and matplotlib.rcParams["text.usetex"] is False


def test_figure4_draws_each_variant_and_the_baselines(tmp_path):
    make_results(tmp_path)
    fig = figure4(tmp_path, tmp_path / "out", "cifar10")
    assert [p.name for p in fig.paths] == ["one_dimensional_subspaces.png", "one_dimensional_subspaces.pdf"]
    assert all(p.stat().st_size > 1000 for p in fig.paths) and (tmp_path / "out" / "one_dimensional_subspaces.csv").is_file()
    mean, std, n = fig.value("Line", 0.5)
    assert n == 2 and mean == pytest.approx(0.931) and std == pytest.approx(0.001)
    assert fig.value("Curve (Ensemble)", 0.0)[0] == pytest.approx(0.931)
    assert fig.value("Line (Layerwise, Ensemble)", 1.0)[0] == pytest.approx(0.911)
    # The straight line between two trained networks, on the same axes: its points and pair ensembles.
    assert fig.value("Line Between Two Trained Networks", 0.5)[:3] == (pytest.approx(0.301), pytest.approx(0.001), 2)
    assert fig.value("Line Between Two Trained Networks", 1.0)[0] == pytest.approx(0.901)
    assert fig.value("Line Between Two Trained Networks (Ensemble)", 0.0)[0] == pytest.approx(0.911)
    # Baselines at label noise 0 only (the 0.2 rows are other runs).
    assert fig.value("Standard Training")[:2] == (pytest.approx(0.905), pytest.approx(0.005))
    assert fig.value("Standard Ensemble of Two")[0] == pytest.approx(0.93)


def test_a_rerun_replaces_the_older_row(tmp_path):
    make_results(tmp_path)
    append_rows(tmp_path / MEMBERS / "results.csv", [{"Name": "id=base+ln=0.0+seed=0+try=1", "curr_acc1": 0.5, **common_cols(0.0, 0)}])
    assert len(load(tmp_path / MEMBERS / "results.csv")) == 4
    fig = figure4(tmp_path, tmp_path / "out", "cifar10")
    assert fig.value("Standard Training")[0] == pytest.approx((0.5 + 0.91) / 2)


def test_figure5_and_calibration(tmp_path):
    make_results(tmp_path)
    fig5 = figure5(tmp_path, tmp_path / "out", "cifar10")
    assert fig5.paths[0].name == "simplexes.png" and fig5.paths[0].stat().st_size > 1000
    assert fig5.value("Simplex (Midpoint)", 4.0)[0] == pytest.approx(0.941)
    assert fig5.value("Simplex (Layerwise, Midpoint)", 2.0)[2] == 2
    cal = calibration(tmp_path, tmp_path / "out", "cifar10")
    assert cal.paths[1].name == "calibration.pdf" and cal.paths[0].stat().st_size > 1000
    assert cal.value("Line (Midpoint)", 0.2)[0] == pytest.approx(0.87)
    assert cal.value("SWA ECE", 0.0)[0] == pytest.approx(0.03)
    assert cal.value("Standard Ensemble of Two ECE", 0.2)[0] == pytest.approx(0.21)


@pytest.mark.parametrize("skip, figure, script", [
    (("eval:curves",), figure4, "experiment_configs/cifar10/one_dimensional_subspaces/eval_curves.py"),
    (("eval:linestats-swa",), figure4, "experiment_configs/cifar10/one_dimensional_subspaces/eval_linestats_swa.py"),
    ((ENSEMBLES,), figure4, "experiment_configs/cifar10/ensembles/eval_ensembles.py"),
    ((MEMBERS,), figure5, "experiment_configs/cifar10/ensembles/train_ensemble_members.py"),
    ((SWA,), calibration, "experiment_configs/cifar10/swa/train_swa.py"),
])
def test_missing_runs_are_named(tmp_path, skip, figure, script):
    make_results(tmp_path, skip)
    with pytest.raises(MissingRuns) as e:
        figure(tmp_path, tmp_path / "out", "cifar10")
    msg = str(e.value)
    assert "\n" not in msg and f"python {script}" in msg and str(tmp_path) in msg
    assert not (tmp_path / "out").exists()
    figure(tmp_path, tmp_path / "out", "cifar10", partial=True)  # draws what is there
    assert any((tmp_path / "out").glob("*.png"))


def test_nothing_at_all_is_an_error_even_with_partial(tmp_path, capsys):
    assert cli(figure5, "digits", argv=["--log-dir", str(tmp_path), "--partial"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot draw Figure 5") and "\n" not in err
    assert "python experiment_configs/digits/simplexes/train_simplexes.py" in err


def test_the_scripts_run_from_another_directory(tmp_path):
    make_results(tmp_path / "results")
    script = ROOT / "analyze_results" / "cifar10" / "one_dimensional_subspaces.py"
    out = subprocess.run([sys.executable, str(script), "--log-dir", str(tmp_path / "results"), "--out", str(tmp_path / "figs")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(tmp_path / "figs" / f"one_dimensional_subspaces.{e}") for e in ("png", "pdf")]
    missing = subprocess.run([sys.executable, str(ROOT / "analyze_results" / "imagenet" / "calibration.py"), "--log-dir", str(tmp_path / "none")],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "train_swa.py" in missing.stderr


def test_default_paths_follow_the_configs():
    from experiment_configs import RESULTS_ROOT
    from experiment_configs.cifar10.common import SETUP

    assert common.default_root("cifar10", RESULTS_ROOT) == SETUP.log_root
