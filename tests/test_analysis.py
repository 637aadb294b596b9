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
from subspaces.utils.results import append_rows, read_results

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


def test_figure4_from_a_half_grid_draws_the_whole_range(tmp_path):
    """A grid over alpha0 in [0, 0.5] (pairs (a, 1 - a)) holds both points of each pair: the point
    alone is drawn from 0 to 1 (``m0_acc`` at alpha0 where no row has that alpha1), the pair
    ensemble mirrored; a full grid draws the same numbers."""
    for half, root in ((True, tmp_path / "half"), (False, tmp_path / "full")):
        make_results(root)
        alphas = (0.0, 0.25, 0.5) if half else (0.0, 0.25, 0.5, 0.75, 1.0)
        rows = [{"Name": f"id=curves+ln=0.0+beta=1.0+num_samples=1+seed=9+try=0+alpha0={a:g}+alpha1={1 - a:g}", "alpha0": a, "alpha1": 1 - a,
                 "curr_acc1": 0.5 + 0.4 * (1 - a), "m0_acc": 0.5 + 0.4 * a, "ensemble_acc": 0.95 - 0.1 * abs(2 * a - 1),
                 **common_cols(0.0, 9)} for a in alphas]
        (root / EVAL_ONE_DIM / "results.csv").unlink()
        append_rows(root / EVAL_ONE_DIM / "results.csv", rows)
        fig = figure4(root, root / "out", "cifar10", partial=True)
        got = {x: (fig.value("Curve", x)[0], fig.value("Curve (Ensemble)", x)[0]) for x in (0.0, 0.25, 0.5, 0.75, 1.0)}
        assert got == {x: (pytest.approx(0.5 + 0.4 * x), pytest.approx(0.95 - 0.1 * abs(2 * x - 1))) for x in got}, half
        assert all(fig.value("Curve", x)[2] == 1 for x in got)  # one value per run and alpha, not two


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
    # analyze_results/plot.py on results made by hand (the second subprocess of this test, in place of
    # a per-data-set script's exit status, which test_nothing_at_all_is_an_error_even_with_partial checks in-process)
    train, evals = hand_results(tmp_path)
    out = subprocess.run([sys.executable, str(ROOT / "analyze_results" / "plot.py"), "figure4", str(evals), "--out", "figs"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [f"figs/one_dimensional_subspaces.{e}" for e in ("png", "pdf")]
    assert (tmp_path / "figs" / "one_dimensional_subspaces.png").stat().st_size > 1000 and out.stderr.startswith("note: ")


def test_default_paths_follow_the_configs():
    from experiment_configs import RESULTS_ROOT
    from experiment_configs.cifar10.common import SETUP

    assert common.default_root("cifar10", RESULTS_ROOT) == SETUP.log_root


def test_rows_of_another_model_are_not_averaged_in(tmp_path):
    make_results(tmp_path)  # a config edited to another model, its runs in the same folders
    append_rows(tmp_path / SIMPLEXES / "results.csv", [{"Name": "id=simplex+n=2+ln=0.0+beta=1.0+num_samples=1+seed=5+try=0", "curr_acc1": 0.5,
                                                         "n": 2, **common_cols(0.0, 5), "model_name": "cifar_resnet_56"}])
    fig = figure5(tmp_path, tmp_path / "out", "cifar10")
    assert fig.value("Simplex (Midpoint)", 2.0)[:3] == (pytest.approx(0.921), pytest.approx(0.001), 2)
    assert fig.notes == [f"Figure 5 drawn for model_name=cifar_resnet_20; rows of model_name=cifar_resnet_56 skipped: "
                         f"draw them with python analyze_results/plot.py figure5 {tmp_path}"]


# --- Figure 4's straight lines: optional, and in a panel of their own when they dip far ----------


def along_rows(name: str, acc, ens, cols: dict, alphas=ALPHAS) -> list:
    """Figure 4's rows of one run: ``acc(a)``/``ens(a)`` at each alpha1 = a."""
    return [{"Name": f"{name}+alpha0={1 - a:g}+alpha1={a:g}", "curr_acc1": acc(a), "ensemble_acc": ens(a),
             "alpha0": 1 - a, "alpha1": a, **cols} for a in alphas]


def test_figure4_without_the_straight_line_draws_and_names_it(tmp_path, capsys):
    make_results(tmp_path, ("eval:linestats-swa",))  # the walkthrough's command list: no eval_linestats_swa.py
    assert cli(figure4, "cifar10", argv=["--log-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    out, err = capsys.readouterr()
    assert out.split() == [str(tmp_path / "out" / f"one_dimensional_subspaces.{e}") for e in ("png", "pdf")]
    assert err.count("\n") == 1 and err.startswith("note: Figure 4 drawn without: Line Between Two Trained Networks")
    assert "python experiment_configs/cifar10/one_dimensional_subspaces/eval_linestats_swa.py" in err
    fig = figure4(tmp_path, tmp_path / "out", "cifar10")
    assert fig.value("Line", 0.5)[2] == 2 and fig.value("Line Between Two Trained Networks", 0.5) is None
    assert len(fig.ylims) == 1


def test_a_deep_straight_line_gets_a_panel_of_its_own(tmp_path):
    make_results(tmp_path)  # the straight line dips to 0.30, the learned lines stay in 0.90-0.95
    fig = figure4(tmp_path, tmp_path / "out", "cifar10")
    (top_lo, top_hi), (lo, hi) = fig.ylims
    assert 0.88 < top_lo < 0.905 and 0.95 < top_hi < 0.97  # learned lines and baselines fill the top panel
    assert lo < 0.30 and hi > 0.95  # the second panel holds the dip
    assert fig.value("Line Between Two Trained Networks", 0.5)[0] == pytest.approx(0.301)


def test_the_aligned_straight_line_is_drawn_when_there(tmp_path):
    make_results(tmp_path, ("eval:linestats-swa",))
    cols = {"trainer": "linestats_swa", **common_cols(0.0, 0)}
    append_rows(tmp_path / EVAL_ONE_DIM / "results.csv", along_rows(
        "id=linestats-aligned+ln=0.0+epochs=160+members=0-1+try=0", lambda a: 0.9 - 0.02 * (1 - abs(2 * a - 1)), lambda a: 0.91, cols))
    fig = figure4(tmp_path, tmp_path / "out", "cifar10")
    assert fig.value("Aligned Line Between Two Trained Networks", 0.5)[0] == pytest.approx(0.88)
    assert fig.value("Aligned Line Between Two Trained Networks (Ensemble)", 1.0)[0] == pytest.approx(0.91)
    assert fig.value("Line Between Two Trained Networks", 0.5) is None  # a linestats_swa trainer, but the id says aligned
    assert len(fig.ylims) == 1  # near the learned lines: one panel
    assert [n.split(":")[1].strip().split(" (")[0] for n in fig.notes] == ["Line Between Two Trained Networks"]


# --- analyze_results/plot.py: any results.csv, rows made by hand ---------------------------------


def by_hand(trainer: str, conv: str = "StandardConv", run: int = 0, ln="", **cols) -> dict:
    """The settings columns of a row main.py writes for a run without --name (no id=)."""
    return {"Name": f"default+try={run}", "set": "Digits", "model": "DigitsConvNet", "model_name": "", "trainer": trainer,
            "conv_type": conv, "bn_type": conv.replace("Conv", "BN"), "layerwise": False, "label_noise": ln, "label_smoothing": "",
            "width_mult": 0.25, "init_endpoints": "", "n": -1, "num_models": 1, **cols}


def hand_results(root: Path) -> tuple:
    """runs/results.csv (two standard networks, trained by hand) and runs/eval/results.csv: two lines
    and a curve evaluated by hand, all three named ``default``; their rows on the grid."""
    train = root / "runs" / "results.csv"
    append_rows(train, [{**by_hand("default", run=s), "curr_acc1": 0.95 + 0.01 * s, "ece": 0.02} for s in (0, 1)])
    evals = root / "runs" / "eval" / "results.csv"
    for run, conv, off in ((0, "LinesConv", 0.0), (1, "LinesConv", 0.02), (2, "CurvesConv", 0.01)):
        row = by_hand("eval_one_dim_subspaces", conv, run)
        append_rows(evals, along_rows(row.pop("Name"), lambda a: 0.94 + off, lambda a: 0.95 + off, row))
        (evals.parent / f"default+try={run}").mkdir()
    return train, evals


def test_plot_figure4_from_runs_made_by_hand(tmp_path, capsys):
    from subspaces.analysis import plot

    train, evals = hand_results(tmp_path)
    assert plot.main(["figure4", str(evals), str(train), "--out", str(tmp_path / "figs")]) == 0
    out, err = capsys.readouterr()
    assert out.split() == [str(tmp_path / "figs" / f"one_dimensional_subspaces.{e}") for e in ("png", "pdf")]
    left = err.strip().split(": ", 2)[2]  # the one note: what was left out, and how to make it
    assert err.count("\n") == 1 and left.startswith("Line (Layerwise) (main.py --trainer eval_one_dim_subspaces")
    assert "Standard Ensemble of Two (main.py --trainer ensemble" in left and "Standard Training" not in left
    fig, = plot.plot("figure4", [evals, train], tmp_path / "figs")
    assert fig.value("Line", 0.5)[:3] == (pytest.approx(0.95), pytest.approx(0.01), 2)  # two runs named "default": both kept
    assert fig.value("Curve (Ensemble)", 0.0)[0] == pytest.approx(0.96)
    assert fig.value("Standard Training")[:3] == (pytest.approx(0.955), pytest.approx(0.005), 2)
    # A run folder: that run's rows only.
    fig, = plot.plot("figure4", [evals.parent / "default+try=1"], tmp_path / "one")
    assert fig.value("Line", 0.5)[:3] == (pytest.approx(0.96), 0.0, 1) and fig.value("Curve", 0.5) is None


def test_plot_draws_one_figure_per_label_noise_level(tmp_path, capsys):
    from subspaces.analysis import plot

    csv = tmp_path / "results.csv"
    for run, ln in ((0, 0.0), (1, 0.2)):
        row = by_hand("eval_one_dim_subspaces", "LinesConv", run, ln=ln)
        append_rows(csv, along_rows(row.pop("Name"), lambda a: 0.9 - ln, lambda a: 0.91 - ln, row))
    figs = plot.plot("figure4", [csv], tmp_path / "figs")
    assert [f.paths[0].name for f in figs] == ["one_dimensional_subspaces_label_noise=0.png", "one_dimensional_subspaces_label_noise=0.2.png"]
    assert figs[1].value("Line", 1.0)[0] == pytest.approx(0.7)
    fig, = plot.plot("figure4", [csv], tmp_path / "ln", {"label_noise": "0.20"})
    assert fig.paths[0].name == "one_dimensional_subspaces.png" and fig.value("Line", 0.0)[0] == pytest.approx(0.7)


def test_plot_figure5_and_calibration_from_runs_made_by_hand(tmp_path):
    from subspaces.analysis import plot

    csv = tmp_path / "results.csv"
    append_rows(csv, [{**by_hand("train_simplexes", f"SimplexConv{n}", 2 * n + lw, n=n if n > 2 else -1, layerwise=lw), "curr_acc1": 0.9 + 0.01 * n + 0.001 * lw}
                      for n in (2, 3) for lw in (False, True)])
    for k, ln in enumerate((0.0, 0.2)):
        append_rows(csv, [{**by_hand("default", run=10 + 3 * k, ln=ln), "curr_acc1": 0.95 - ln, "ece": 0.02 + ln},
                          {**by_hand("train_one_dim_subspaces", "LinesConv", 11 + 3 * k, ln=ln), "curr_acc1": 0.96 - ln, "ece": 0.01 + ln},
                          {**by_hand("swa", run=12 + 3 * k, ln=ln), "curr_acc1": 0.955 - ln, "ece": 0.015}])
    fig5, = plot.plot("figure5", [csv], tmp_path / "figs")
    assert fig5.value("Simplex (Midpoint)", 2.0)[0] == pytest.approx(0.92)  # n from SimplexConv2
    assert fig5.value("Simplex (Layerwise, Midpoint)", 3.0)[0] == pytest.approx(0.931)
    assert fig5.value("Standard Training")[:3] == (pytest.approx(0.95), 0.0, 1)  # at label noise 0, not 0.2
    assert fig5.notes == ["rows of label_noise=0.2 hold nothing Figure 5 draws: skipped"] and fig5.paths[0].name == "simplexes.png"
    cal, = plot.plot("calibration", [csv], tmp_path / "figs")
    assert cal.value("Line (Midpoint)", 0.2)[0] == pytest.approx(0.76) and cal.value("SWA ECE", 0.0)[0] == pytest.approx(0.015)
    assert cal.notes == ["the calibration figure drawn without: Standard Ensemble of Two (main.py --trainer ensemble --resume a.pt,b.pt --pretrained --epochs 0 --save-data)"]


def test_plot_refuses_what_it_cannot_read_or_draw(tmp_path, capsys):
    from subspaces.analysis import plot

    train, evals = hand_results(tmp_path)
    cases = [
        (["figure4", str(tmp_path / "nowhere.csv")], 2, "nowhere.csv does not exist"),
        (["figure4", str(evals), "--where", "colour=red"], 2, "no row has a column 'colour'"),
        (["figure4", str(evals), "--where", "colour"], 2, "is not key=value"),
        (["figure5", str(evals), str(train)], 1, "cannot draw Figure 5"),  # no simplexes
        (["figure4", str(train)], 1, "cannot draw Figure 4"),  # baselines alone
        (["figure4", str(evals), "--label-noise", "0.4"], 1, "cannot draw Figure 4"),
    ]
    for argv, code, msg in cases:
        assert plot.main(argv + ["--out", str(tmp_path / "figs")]) == code, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and msg in err, (argv, err)
    assert not (tmp_path / "figs").exists()


def test_plot_draws_a_line_trained_and_evaluated_by_hand(tmp_path, capsys):
    """main.py end to end on Digits at a tiny size: a line trained, evaluated at two points, drawn from its run folder."""
    from subspaces.analysis import plot
    from tests.helpers import cli as main_cli, final_ckpt

    tiny = ["--set", "Digits", "--conv-type", "LinesConv", "--bn-type", "LinesBN", "--width-mult", "0.25", "--batch-size", "64"]
    assert main_cli([*tiny, "--trainer", "train_one_dim_subspaces", "--beta", "1", "--epochs", "1", "--save", "--log-dir", tmp_path]) == 0
    ckpt = final_ckpt(tmp_path / "default+try=0")
    assert main_cli([*tiny, "--trainer", "eval_one_dim_subspaces", "--resume", ckpt, "--pretrained", "--epochs", "0",
                     "--update-bn", "--alphas", "0,0.5", "--save-data", "--log-dir", tmp_path / "eval"]) == 0
    capsys.readouterr()
    assert plot.main(["figure4", str(tmp_path / "eval" / "default+try=0")]) == 0
    out = capsys.readouterr().out
    assert out.split()[0] == str(tmp_path / "eval" / "figures" / "one_dimensional_subspaces.png")
    table = (tmp_path / "eval" / "figures" / "one_dimensional_subspaces.csv").read_text().splitlines()
    # the pairs (0, 1) and (0.5, 0.5) hold the points 0, 0.5 and 1 (curr_acc1 at alpha1, m0_acc at alpha0)
    assert [r.split(",")[:2] for r in table[1:]] == [[lab, x] for lab in ("Line", "Line (Ensemble)") for x in ("0.0", "0.5", "1.0")]
    (row0,) = [r for r in read_results(tmp_path / "eval" / "results.csv") if float(r["alpha0"]) == 0]
    at = {tuple(r.split(",")[:2]): float(r.split(",")[2]) for r in table[1:]}
    assert at["Line", "0.0"] == pytest.approx(float(row0["m0_acc"]), abs=1e-6)
    assert at["Line", "1.0"] == pytest.approx(float(row0["curr_acc1"]), abs=1e-6)


# --- plot.py paths: any line or curve evaluated along alpha ---------------------------------------


def test_plot_paths_draws_every_evaluated_path_whatever_made_it(tmp_path, capsys):
    """Bezier and polygonal-chain curves evaluated by hand, a curve connecting two trained networks
    (--init-endpoints, with --curve-stats' train loss) and a config's line: one figure, one series
    per path under its name, a half grid drawn over the whole range, the loss panels when held."""
    from subspaces.analysis import plot

    evals = tmp_path / "runs" / "results.csv"
    half = (0.0, 0.25, 0.5)  # alpha0 values: pairs (a, 1 - a)

    def grid(name: str, cols: dict, acc, nll=None, train=None) -> list:
        rows = []
        for a in half:
            row = {**cols, "Name": f"{name}+alpha0={a:g}+alpha1={1 - a:g}", "alpha0": a, "alpha1": 1 - a, "curr_acc1": acc(1 - a), "m0_acc": acc(a)}
            if nll:
                row.update(nll=nll(1 - a), m0_nll=nll(a))
            if train:
                row.update(train_nll=train(1 - a), m0_train_nll=train(a))
            rows.append(row)
        return rows

    append_rows(evals, grid("default+try=0", by_hand("eval_one_dim_subspaces", "BezierConv3", 0), lambda a: 0.9 + 0.05 * a, nll=lambda a: 0.3 - a / 10))
    append_rows(evals, grid("default+try=1", by_hand("eval_one_dim_subspaces", "PolyChainConv2", 1), lambda a: 0.8 + 0.1 * a))
    append_rows(evals, grid("default+try=2", {**by_hand("eval_one_dim_subspaces", "CurvesConv", 2), "init_endpoints": "a.pt,b.pt"},
                            lambda a: 0.85, train=lambda a: 0.01 + a * (1 - a)))
    append_rows(evals, grid("id=lines+ln=0.0+beta=1.0+num_samples=1+seed=0+try=0", by_hand("eval_one_dim_subspaces", "LinesConv", 3), lambda a: 0.7))
    append_rows(evals, [{**by_hand("default", run=4), "curr_acc1": 0.95}])  # a training row: no path
    assert plot.main(["paths", str(evals), "--out", str(tmp_path / "figs")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "figs" / f"paths.{e}") for e in ("png", "pdf")]
    table = {}
    for line in (tmp_path / "figs" / "paths.csv").read_text().splitlines()[1:]:
        label, x, mean, *_ = line.split(",")
        table.setdefault(label, {})[float(x)] = float(mean)
    assert set(table) == {"Bezier Curve (degree 3)", "Polygonal Chain (2 bends)", "Curve Connecting Trained Networks", "Line",
                          "Bezier Curve (degree 3): Test NLL", "Curve Connecting Trained Networks: Train loss"}
    xs = [0.0, 0.25, 0.5, 0.75, 1.0]
    assert table["Bezier Curve (degree 3)"] == pytest.approx({x: 0.9 + 0.05 * x for x in xs})
    assert table["Polygonal Chain (2 bends)"] == pytest.approx({x: 0.8 + 0.1 * x for x in xs})
    assert table["Bezier Curve (degree 3): Test NLL"] == pytest.approx({x: 0.3 - x / 10 for x in xs})
    assert table["Curve Connecting Trained Networks: Train loss"] == pytest.approx({x: 0.01 + x * (1 - x) for x in xs})


def test_plot_paths_without_any_grid_is_one_line(tmp_path, capsys):
    from subspaces.analysis import plot

    append_rows(tmp_path / "results.csv", [{**by_hand("default"), "curr_acc1": 0.9}])
    assert plot.main(["paths", str(tmp_path), "--out", str(tmp_path / "figs")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: cannot draw paths: no rows of a line or curve evaluated along alpha")
    assert "--trainer eval_one_dim_subspaces" in err and not (tmp_path / "figs").exists()


@pytest.mark.parametrize("conv, extra, label", [
    ("PolyChainConv1", {}, "Polygonal Chain (1 bend)"),
    ("BezierConv4", {"layerwise": "True"}, "Bezier Curve (degree 4) (Layerwise)"),
    ("LinesConv", {"init_endpoints": "a.pt,b.pt"}, "Line Connecting Trained Networks"),
    ("StandardConv", {}, None),
])
def test_path_labels(conv, extra, label):
    row = {k: str(v) for k, v in {**by_hand("eval_one_dim_subspaces", conv), "alpha0": 0.5, "alpha1": 0.5, **extra}.items()}  # as read from a CSV
    row["_tags"] = {}
    assert common.path_label(row) == label

