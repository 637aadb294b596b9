"""The baselines from the command line on Digits: ensembles of checkpoints and SWA (with resume)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from subspaces import main as main_mod
from subspaces.args import Settings, parse_args, replace
from subspaces.data import get_dataset
from subspaces.trainers.swa import swa_learning_rate, swa_start_epoch
from subspaces.utils.evaluation import predict
from subspaces.utils.metrics import accuracy, ensemble_probs
from subspaces.utils.results import read_results
from tests.helpers import ckpt_at, cli, train_members

SMALL = ["--set", "Digits", "--batch-size", "128", "--width-mult", "0.5"]


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list:
    """Two standard networks trained independently (seeds 1 and 2) for one epoch."""
    return train_members(tmp_path_factory.mktemp("members"), SMALL + ["--epochs", "1"], (1, 2), "id=base+seed={seed}")


def member_logits(paths: list) -> tuple:
    s = parse_args([str(a) for a in SMALL])
    data = get_dataset(s)
    out = []
    for p in paths:
        net = main_mod.build_model(replace(s, model="DigitsConvNet", output_size=10), data)
        net.load_state_dict(torch.load(p, weights_only=True)["state_dicts"][0])
        preds = predict(net, data.val_loader, torch.device("cpu"))
        out.append(preds.logits)
    return out, preds.targets


def test_ensemble_from_the_command_line(members, tmp_path):
    log = tmp_path / "logs"
    base = SMALL + ["--trainer", "ensemble", "--resume", ",".join(map(str, members)), "--pretrained", "--epochs", "0", "--save-data", "--log-dir", log]
    assert cli(base + ["--name", "id=ens"]) == 0
    assert cli(base + ["--name", "id=ens_probs", "--ensemble-mode", "probs"]) == 0
    logit_row, probs_row = read_results(log / "results.csv")
    for col in ["tvdist", "percent_disagree", "percent_disagree_correct", "feat_cossim", "feat_sq_cossim",
                "nll", "ece", "brier", "model_0_acc", "model_1_acc", "avg_model_acc"]:
        assert logit_row[col] != "", col
    assert logit_row["num_models"] == "2" and logit_row["ensemble_mode"] == "logits"
    assert logit_row["ensemble_acc"] == logit_row["curr_acc1"] and logit_row["ensemble_nll"] == logit_row["nll"]
    logits, y = member_logits(members)
    assert float(logit_row["curr_acc1"]) == pytest.approx(accuracy(logits[0] + logits[1], y), abs=1e-6)  # summed logits
    for i in range(2):
        assert float(logit_row[f"model_{i}_acc"]) == pytest.approx(accuracy(logits[i], y), abs=1e-6)
    p = ensemble_probs(logits, "probs")
    assert float(probs_row["curr_acc1"]) == pytest.approx((p.argmax(1) == y).float().mean().item(), abs=1e-6)
    assert float(probs_row["nll"]) == pytest.approx(-p.gather(1, y[:, None]).log().mean().item(), rel=1e-5)
    # Independently trained members differ: some disagreement, features not identical.
    assert 0.0 < float(logit_row["tvdist"]) < 1.0 and 0.0 < float(logit_row["percent_disagree"]) < 1.0
    assert float(logit_row["feat_sq_cossim"]) <= 1.0


def test_ensemble_bad_input(members, tmp_path, capsys):
    log = tmp_path / "bad"
    for resume, expect in [(f"{members[0]},{tmp_path / 'missing.pt'}", "not found"), (str(members[0]), "at least two")]:
        capsys.readouterr()
        argv = SMALL + ["--trainer", "ensemble", "--resume", resume, "--pretrained", "--epochs", "0", "--save", "--log-dir", log]
        assert cli(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and expect in err and len(err.splitlines()) == 1, err
        assert not log.exists() or not any(log.iterdir())


SWA = SMALL + ["--trainswa", "--epochs", "3", "--swa-start", "0.5", "--swa-lr", "0.05", "--save",
               "--label-noise", "0.1", "--label-smoothing", "0.05"]


def test_swa_from_the_command_line_survives_resume(tmp_path):
    log = tmp_path / "logs"
    assert cli(SWA + ["--log-dir", log, "--name", "id=swa", "--save-epochs", "2"]) == 0
    (row,) = read_results(log / "results.csv")
    assert row["trainer"] == "swa" and row["num_models"] == "2" and row["label_noise"] == "0.1"
    assert row["curr_acc1"] == row["swa_acc"] and row["model_acc"] != "" and row["swa_n"] == "2"
    assert float(row["curr_acc1"]) > 0.5
    run_dir = log / "id=swa+try=0"
    final = torch.load(ckpt_at(run_dir, 3), weights_only=True)
    at2 = torch.load(ckpt_at(run_dir, 2), weights_only=True)
    assert len(final["state_dicts"]) == 2 and len(final["optimizers"]) == 1  # the average is not trained
    # Averaged after epochs 2 and 3 (--swa-start 0.5 of 3 epochs: from epoch int(1.5) = 1, counting
    # from 0): the mean of the weights those epochs ended with.
    avg = final["state_dicts"][1]
    for k in ("convs.0.weight", "bns.2.weight", "fc.weight"):
        expected = (at2["state_dicts"][0][k] + final["state_dicts"][0][k]) / 2
        assert torch.allclose(avg[k], expected, atol=1e-6), k

    # Resumed after epoch 2: the same average, the same model, the same row.
    assert cli(SWA + ["--log-dir", log, "--name", "id=swa_resumed", "--resume", ckpt_at(run_dir, 2)]) == 0
    resumed = torch.load(ckpt_at(log / "id=swa_resumed+try=0", 3), weights_only=True)
    for i in range(2):
        for k, v in final["state_dicts"][i].items():
            assert torch.equal(v, resumed["state_dicts"][i][k]), (i, k)
    rows = read_results(log / "results.csv")
    assert rows[1]["curr_acc1"] == row["curr_acc1"] and rows[1]["model_acc"] == row["model_acc"]

    # Evaluating the final checkpoint alone gives the run's SWA accuracy again.
    assert cli(SWA + ["--log-dir", log, "--name", "id=swa_eval", "--resume", ckpt_at(run_dir, 3)]) == 0
    assert read_results(log / "results.csv")[2]["curr_acc1"] == row["curr_acc1"]
    assert cli(SWA + ["--log-dir", tmp_path / "bad", "--resume", ckpt_at(run_dir, 3), "--pretrained", "--epochs", "0"]) == 2


def test_swa_learning_rate_follows_swalr():
    s = Settings(epochs=100, swa_start=0.5, swa_lr=0.05, lr=0.1, lr_policy="constant_lr")
    assert swa_start_epoch(s) == 50
    # Cosine annealing over a quarter of the 50 averaging epochs, capped at 10: 0.1 -> 0.05 by epoch 60.
    assert swa_learning_rate(s, 50) == pytest.approx(0.1)
    assert swa_learning_rate(s, 55) == pytest.approx(0.05 + 0.05 * (1 + math.cos(math.pi * 0.5)) / 2)
    assert swa_learning_rate(s, 60) == pytest.approx(0.05)
    assert swa_learning_rate(s, 99) == pytest.approx(0.05)


def test_trainswa_bad_input(tmp_path, capsys):
    log = tmp_path / "bad"
    for argv, expect in [(["--conv-type", "LinesConv", "--bn-type", "LinesBN", "--trainer", "train_one_dim_subspaces"], "--trainswa"),
                         (["--swa-start", "1.5"], "--swa-start")]:
        capsys.readouterr()
        assert cli(SWA[:-4] + argv + ["--log-dir", log]) == 2  # (label noise would cache its permutation)
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and expect in err, err
        assert not log.exists() or not any(log.iterdir())
