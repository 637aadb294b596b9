"""Experiment configs: their settings, command line, resumable sweeps, and the Digits pipeline.

Every config of every data set is built and checked; every config runs in --smoke mode (1 epoch
of Digits with a tiny model, which is how the non-Digits configs are exercised without their
data); reproduce.py runs end to end in --smoke mode, and a rerun adds nothing.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from subspaces.args import replace
from subspaces import sweep
from experiment_configs import CONFIG_SCRIPTS as SCRIPTS
from subspaces.sweep import ALPHAS, execute, make_config, run_cli
from subspaces.main import check_settings
from subspaces.utils.checkpoint import load_checkpoint
from subspaces.utils.results import append_rows, read_results

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("digits", "cifar10", "tinyimagenet", "imagenet")


def config(ds: str, script: str):
    return importlib.import_module(f"experiment_configs.{ds}.{script.replace('/', '.')}")


def setup_of(ds: str):
    return importlib.import_module(f"experiment_configs.{ds}.common").SETUP


def rows(root: Path) -> dict:
    """Number of results rows per family folder."""
    return {p.parent.name: len(read_results(p)) for p in sorted(root.glob("*/results.csv"))}


def test_every_config_script_is_there_and_self_locating():
    for ds in DATASETS:
        for script in SCRIPTS:
            path = ROOT / "experiment_configs" / ds / f"{script}.py"
            text = path.read_text()
            assert "sys.path.insert(0, str(Path(__file__).resolve().parents[3]))" in text, path
            assert 'os.path.abspath(".")' not in text and "def runs(cfg)" in text, path
        for fig in ("one_dimensional_subspaces", "simplexes", "calibration"):
            assert (ROOT / "analyze_results" / ds / f"{fig}.py").is_file()


@pytest.mark.parametrize("ds", DATASETS)
def test_configs_build_the_papers_settings(ds):
    cfg = make_config(setup_of(ds), device="cpu")
    paper = ds != "digits"
    for script in SCRIPTS:
        runs = list(config(ds, script).runs(cfg))
        assert runs, script
        for run in runs:
            s = run.settings
            # main.py accepts them (an evaluation gets --resume once its checkpoints exist).
            check_settings(replace(s, resume=("x.pt",) * max(1, len(run.needs))) if run.needs else s)
            assert s.log_dir.startswith(str(cfg.log_root)) and s.seed in (0, 1) and s.label_noise == 0.0
            assert (s.lr, s.momentum, s.optimizer) == (0.1, 0.9, "sgd")
            assert s.wd == (5e-5 if ds == "imagenet" else 1e-4)
            if paper:
                assert s.warmup_length == 5 and s.batch_size == (256 if ds == "imagenet" else 128)
                assert s.epochs in ((200, 0) if ds == "imagenet" else (160, 0))
            train = run.needs[0] if run.needs else s
            if "Lines" in train.conv_type or "Curves" in train.conv_type or "Simplex" in train.conv_type:
                assert train.beta == 1.0 and train.num_samples == 1
                # BatchNorm recomputed at the tested points, except (as the original) lines on ImageNet.
                recompute = ds != "imagenet" or "Simplex" in train.conv_type
                assert train.train_update_bn == train.update_bn == s.update_bn == recompute
            if run.needs:
                assert s.epochs == 0 and s.pretrained and s.save_data and not s.save and run.trained_by.endswith(".py")
                assert (ROOT / run.trained_by).is_file()
            else:
                assert s.save and s.save_epochs == sweep.every(setup_of(ds).checkpoint_every, s.epochs)
    names = [r.settings.name for r in config(ds, "one_dimensional_subspaces/train_lines").runs(cfg)]
    assert names == [f"id=lines+ln=0.0+beta=1.0+num_samples=1+seed={i}" for i in (0, 1)]
    simplexes = list(config(ds, "simplexes/train_simplexes_layerwise").runs(cfg))
    assert sorted({r.settings.n for r in simplexes}) == ([2, 3, 4] if ds == "digits" else [2, 3, 4, 5, 6])
    assert all(r.settings.layerwise and r.settings.conv_type == f"SimplexConv{r.settings.n}" for r in simplexes)
    evals = list(config(ds, "one_dimensional_subspaces/eval_lines_layerwise").runs(cfg))
    assert evals[0].settings.alphas == ALPHAS and evals[0].settings.trainer == "eval_one_dim_subspaces"
    assert evals[0].needs[0].name == "id=lines-layerwise+ln=0.0+beta=1.0+num_samples=1+seed=0"
    swa = list(config(ds, "swa/train_swa").runs(cfg))[0].settings
    assert swa.trainer == "swa" and swa.trainswa and swa.num_models == 2
    swag = list(config(ds, "swa/train_swag").runs(cfg))[0].settings
    assert swag.trainswa and swag.swag_rank == (5 if ds == "digits" else 20) and swag.swa_start == 0.75
    bma = list(config(ds, "swa/eval_swag").runs(cfg))[0]
    assert bma.settings.trainer == "swag" and bma.settings.swag_samples == 30 and bma.needs[0].name == swag.name
    line = list(config(ds, "one_dimensional_subspaces/eval_linestats_swa").runs(cfg))
    assert [r.settings.trainer for r in line] == ["linestats_swa"] and line[0].settings.alphas == ALPHAS
    assert [t.name for t in line[0].needs] == [f"id=base+ln=0.0+seed={i}" for i in (0, 1)]
    aligned = list(config(ds, "one_dimensional_subspaces/eval_aligned_line").runs(cfg))
    assert [(r.settings.trainer, r.settings.align, r.settings.alphas, r.settings.log_dir) for r in aligned] == [
        ("linestats_aligned", "weight", ALPHAS, line[0].settings.log_dir)]
    assert aligned[0].settings.name == "id=linestats-aligned+ln=0.0+epochs=" + line[0].settings.name.split("epochs=")[1]
    assert aligned[0].needs == line[0].needs
    averages = list(config(ds, "ensembles/eval_average_weights").runs(cfg))
    assert [r.settings.trainer for r in averages] == ["average_weights"] + [f"random_average_weights_{g}" for g in ("global", "layerwise", "perweight")]


def test_command_line_overrides(tmp_path, capsys):
    mod = config("cifar10", "simplexes/train_simplexes")
    argv = ["--seeds", "3,4", "--epochs", "7", "--n", "2,5", "--data", str(tmp_path / "d"), "--log-dir", str(tmp_path / "r"), "--label-noise", "0.0,0.4"]
    cfg = make_config(mod.SETUP, sweep.build_parser().parse_args(argv))
    runs = [r.settings for r in mod.runs(cfg)]
    assert len(runs) == 2 * 2 * 2
    assert {(s.seed, s.n, s.label_noise) for s in runs} == {(a, b, c) for a in (3, 4) for b in (2, 5) for c in (0.0, 0.4)}
    assert all(s.epochs == 7 and s.warmup_length == 5 and s.data == str(tmp_path / "d") for s in runs)
    assert all(s.log_dir == str((tmp_path / "r" / "simplexes").resolve()) for s in runs)
    assert run_cli(mod.runs, mod.SETUP, argv=argv + ["--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 8 and all(line.endswith(": new") for line in out)
    assert "id=simplex+n=5+ln=0.4+beta=1.0+num_samples=1+seed=4" in out[-1]
    assert not (tmp_path / "r").exists()  # a dry run writes nothing


def test_a_config_runs_from_another_directory(tmp_path):
    script = ROOT / "experiment_configs" / "tinyimagenet" / "one_dimensional_subspaces" / "eval_curves.py"
    out = subprocess.run([sys.executable, str(script), "--dry-run", "--log-dir", str(tmp_path / "r")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # the training config is named by a path that works from where the user is
    assert f"waits for `python {script.parent / 'train_curves.py'}`" in out.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written, in the current folder or elsewhere


def test_an_evaluation_without_its_training_fails_in_one_line(tmp_path, capsys):
    mod = config("digits", "one_dimensional_subspaces/eval_lines")
    assert run_cli(mod.runs, mod.SETUP, argv=["--smoke", "--log-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: no finished training run id=lines+")
    assert "run `python experiment_configs/digits/one_dimensional_subspaces/train_lines.py` first" in err


# --- resumable sweeps ---------------------------------------------------------------------------


def _lines_cfg(tmp_path, **kw):
    return make_config(setup_of("digits"), smoke=True, log_dir=str(tmp_path), seeds=(0,), quiet=True, **kw)


def test_an_interrupted_run_continues_from_its_last_checkpoint(tmp_path):
    mod = config("digits", "one_dimensional_subspaces/train_lines")
    cfg = _lines_cfg(tmp_path, epochs=3, keep_checkpoints=True).with_(checkpoint_every=1)
    (first,) = execute(list(mod.runs(cfg)), cfg)
    run_dir = first.run_dir
    assert [p.name for p in sorted(run_dir.glob("epoch_*.pt"))] == [f"epoch_{e}_iter_{e * 12}.pt" for e in range(4)]
    expected = load_checkpoint(run_dir / "epoch_3_iter_36.pt")["state_dicts"][0]

    # "Interrupt" it after epoch 2: no final checkpoint and no results row.
    (run_dir / "epoch_3_iter_36.pt").unlink()
    csv = tmp_path / "one-dimensional-subspaces" / "results.csv"
    csv.unlink()
    (second,) = execute(list(mod.runs(cfg.with_(keep_checkpoints=False))), cfg.with_(keep_checkpoints=False))
    assert second.run_dir == run_dir and second.name.endswith("+try=0")  # continued in its own folder
    saved = json.loads((second.run_dir / "settings.txt").read_text())
    assert saved["resume"] == [str(run_dir / "epoch_2_iter_24.pt")] and saved["pretrained"] is False
    assert saved["resumed_from"] == str(run_dir / "epoch_2_iter_24.pt") and saved["changed_on_resume"] == {}
    assert "resume:" not in (tmp_path / "sweep.log").read_text()  # the same settings: nothing to say
    got = load_checkpoint(second.run_dir / "epoch_3_iter_36.pt")["state_dicts"][0]
    assert all(torch.allclose(got[k].float(), expected[k].float(), atol=1e-5) for k in expected)
    assert [r["Name"] for r in read_results(csv)] == [run_dir.name]
    # Finished: the intermediate checkpoints are gone, the initialisation and the last stay.
    assert sorted(p.name for p in tmp_path.rglob("epoch_*.pt")) == ["epoch_0_iter_0.pt", "epoch_3_iter_36.pt"]
    assert os.readlink(run_dir / "last.pt") == "epoch_3_iter_36.pt"


def test_a_run_stopped_before_writing_its_row_is_finished_once(tmp_path):
    mod = config("digits", "one_dimensional_subspaces/train_lines")
    cfg = _lines_cfg(tmp_path)
    (first,) = execute(list(mod.runs(cfg)), cfg)
    (tmp_path / "one-dimensional-subspaces" / "results.csv").unlink()  # final checkpoint, no row
    (second,) = execute(list(mod.runs(cfg)), cfg)  # only tests the final checkpoint, writes the row
    assert second.curr_acc1 == pytest.approx(first.curr_acc1) and second.run_dir == first.run_dir  # in its own folder
    assert execute(list(mod.runs(cfg)), cfg) == []
    assert [r["Name"] for r in read_results(tmp_path / "one-dimensional-subspaces" / "results.csv")] == [first.run_dir.name]


def test_changed_settings_make_a_new_run_and_force_reruns(tmp_path):
    mod = config("digits", "one_dimensional_subspaces/train_lines")
    cfg = _lines_cfg(tmp_path)
    execute(list(mod.runs(cfg)), cfg)
    assert execute(list(mod.runs(cfg)), cfg) == []  # finished: skipped
    two = _lines_cfg(tmp_path, epochs=2)
    (s2,) = execute(list(mod.runs(two)), two)  # same name, other epochs: a new run, not a skip
    assert s2.name.endswith("+try=1")
    (s3,) = execute(list(mod.runs(cfg.with_(force=True))), cfg.with_(force=True))
    assert s3.name.endswith("+try=2")
    trained = next(iter(mod.runs(cfg))).settings
    assert sweep.final_checkpoint(trained).parent.name.endswith("+try=2")
    assert sweep.final_checkpoint(replace(trained, epochs=2)).parent.name.endswith("+try=1")
    assert len(read_results(tmp_path / "one-dimensional-subspaces" / "results.csv")) == 3


def test_a_sweep_checks_each_run_once(tmp_path, monkeypatch):
    """Planning checks a run's flags (main.check_flags, once per distinct settings, though a run is
    planned again under its lock and a training run once more for each evaluation it feeds);
    running it does not check them again (main.run_checked, not main.main)."""
    from subspaces import main as main_mod

    seen, real = [], main_mod.check_flags
    monkeypatch.setattr(main_mod, "check_flags", lambda s: seen.append(s) or real(s))
    monkeypatch.setattr(main_mod, "check_settings", lambda s: pytest.fail("a planned run was checked again"))
    sweep._checked.cache_clear()
    cfg = _lines_cfg(tmp_path)
    train, evaluate = config("digits", "one_dimensional_subspaces/train_lines"), config("digits", "one_dimensional_subspaces/eval_lines")
    assert len(execute(list(train.runs(cfg)), cfg)) == 1
    assert len(execute(list(evaluate.runs(cfg)), cfg)) == 1
    assert len(seen) == len(set(seen)) == 2  # the training run's settings and the evaluation's


# --- every config in smoke mode, and the Digits pipeline -----------------------------------------


@pytest.mark.parametrize("ds", ["cifar10", "tinyimagenet", "imagenet"])
def test_every_config_runs_in_smoke_mode(ds, tmp_path):
    argv = ["--smoke", "--quiet", "--log-dir", str(tmp_path), "--alphas", "0,0.5"]
    for script in SCRIPTS:
        mod = config(ds, script)
        assert run_cli(mod.runs, mod.SETUP, argv=argv) == 0, script
    counts = rows(tmp_path)
    # eval-ensemble: the ensemble and the four weight averages of the pair; the grid's two pairs for
    # three subspaces of two seeds and for the straight line between the members, aligned or not; SWA and SWAG.
    assert counts == {"eval-ensemble": 1 + 4, "eval-one-dimensional-subspaces": 3 * 2 * 2 + 2 * 2, "one-dimensional-subspaces": 6,
                      "simplexes": 4, "swa": 2 + 2, "eval-swag": 2, "train-ensemble-members": 2}
    ens = read_results(tmp_path / "eval-ensemble" / "results.csv")[0]
    assert ens["Name"].startswith("id=ensemble+ln=0.0+epochs=1+num_models=2+members=0-1+try=0") and ens["set"] == "Digits"


@pytest.fixture(scope="module")
def digits_pipeline(tmp_path_factory):
    from experiment_configs.digits import reproduce

    root = tmp_path_factory.mktemp("digits")
    start = time.time()
    assert reproduce.main(["--smoke", "--log-dir", str(root)]) == 0
    return root, time.time() - start


def test_reproduce_makes_the_figures(digits_pipeline, capsys):
    root, _ = digits_pipeline
    for stem in ("one_dimensional_subspaces", "simplexes", "calibration", "plane", "mode_connectivity"):
        for ext in ("png", "pdf", "csv"):
            assert (root / "figures" / f"{stem}.{ext}").stat().st_size > 0
    # Ensembles at two noise levels and four weight averages; three subspaces of two seeds and the
    # line between the members, aligned or not, on a grid of three; SWA at two noise levels and SWAG;
    # the curve connecting two members and the points along it and the straight line between them.
    assert rows(root) == {"eval-ensemble": 2 + 4, "eval-one-dimensional-subspaces": 3 * 2 * 3 + 3 * 2, "one-dimensional-subspaces": 8,
                          "simplexes": 4, "swa": 4 + 2, "eval-swag": 2, "train-ensemble-members": 4,
                          "mode-connectivity": 1, "eval-mode-connectivity": 2 * 3}
    # the connecting curve's ends are the first two members, unchanged (--fix-endpoints)
    curve = load_checkpoint(next((root / "mode-connectivity").glob("*/epoch_1_*.pt")))
    member = load_checkpoint(next((root / "train-ensemble-members").glob("id=base+ln=0.0+seed=1+try=0/epoch_1_*.pt")))
    assert curve["settings"]["fix_endpoints"] and torch.equal(curve["state_dicts"][0]["fc.weight1"], member["state_dicts"][0]["fc.weight"])


def test_rerunning_a_finished_pipeline_adds_nothing(digits_pipeline, capsys):
    from experiment_configs.digits import reproduce

    root, first = digits_pipeline
    before = rows(root)
    folders = sorted(p.name for p in root.glob("*/*+try=*"))
    start = time.time()
    assert reproduce.main(["--smoke", "--log-dir", str(root)]) == 0
    assert time.time() - start < 15
    assert rows(root) == before and sorted(p.name for p in root.glob("*/*+try=*")) == folders
    out = capsys.readouterr().out
    assert ": new" not in out and out.count("skipped") == 41  # every run of the pipeline (trainings and evaluations)
    assert "Plane through" not in out  # the plane is drawn again only for a newer curve
    assert str(root / "figures" / "one_dimensional_subspaces.png") in out


def test_rerunning_one_finished_config_is_quick(digits_pipeline, capsys):
    root, _ = digits_pipeline
    mod = config("digits", "simplexes/train_simplexes")
    start = time.time()
    assert run_cli(mod.runs, mod.SETUP, argv=["--smoke", "--log-dir", str(root)]) == 0
    assert time.time() - start < 10 and capsys.readouterr().out.count("skipped") == 2


def test_appended_rows_of_other_runs_do_not_count_as_finished(tmp_path):
    # A row whose name only starts like the run's (seed=1 vs seed=10) must not mark it finished.
    mod = config("digits", "one_dimensional_subspaces/train_lines")
    cfg = _lines_cfg(tmp_path).with_(seeds=(1,))
    name = next(iter(mod.runs(cfg))).settings.name
    append_rows(tmp_path / "one-dimensional-subspaces" / "results.csv", [{"Name": name.replace("seed=1", "seed=10") + "+try=0"}])
    assert sweep.plan(next(iter(mod.runs(cfg))), cfg).action == "new"
