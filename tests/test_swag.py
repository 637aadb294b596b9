"""SWAG (Maddox et al. 2019): the statistics collected during SWA training, checked by hand, kept
exactly across a resume, and the Bayesian model average of ``--trainer swag`` on Digits."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from subspaces import main as main_mod
from subspaces.args import parse_args, replace
from subspaces.data import get_dataset
from subspaces.trainers.swa import SWAGStatistics
from subspaces.utils.bn import update_bn
from subspaces.utils.evaluation import predict
from subspaces.utils.metrics import classification_metrics, probs_metrics
from subspaces.utils.results import read_results
from subspaces.utils.seed import make_generator
from tests.helpers import Terminal, cli, ckpt_at

SMALL = ["--set", "Digits", "--batch-size", "128", "--width-mult", "0.5"]
# SWA from the first epoch: 3 averaged epochs, SWAG of rank 2 keeps the last two deviations.
SWAG = SMALL + ["--trainswa", "--swag-rank", "2", "--swa-start", "0", "--swa-lr", "0.05", "--epochs", "3", "--save"]


def load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


# --- the statistics, by hand ------------------------------------------------------------------------


def test_moments_and_deviations_by_hand():
    ws = [
        {"a": torch.tensor([1.0, 2.0, 3.0]), "b": torch.tensor([[0.5, -1.0], [2.0, 0.0]])},
        {"a": torch.tensor([3.0, 0.0, 3.0]), "b": torch.tensor([[1.5, -1.0], [0.0, 4.0]])},
        {"a": torch.tensor([2.0, 4.0, 0.0]), "b": torch.tensor([[2.5, 2.0], [1.0, 2.0]])},
    ]
    stats = SWAGStatistics(rank=2)
    for k, w in enumerate(ws, start=1):
        mean = {n: sum(v[n] for v in ws[:k]) / k for n in w}  # the SWA average after k updates
        stats.collect(w, mean)
    assert stats.n == 3 and stats.num_columns == 2
    # a: mean (2, 2, 2); mean of squares (14/3, 20/3, 6); deviations of w2, w3 from the means after 2 and 3.
    torch.testing.assert_close(stats.sq_mean["a"], torch.tensor([14 / 3, 20 / 3, 6.0]))
    torch.testing.assert_close(stats.deviations["a"], torch.tensor([[1.0, -1.0, 0.0], [0.0, 2.0, -2.0]]))
    torch.testing.assert_close(stats.sq_mean["b"], torch.tensor([[(0.25 + 2.25 + 6.25) / 3, 2.0], [5 / 3, 20 / 3]]))
    torch.testing.assert_close(stats.deviations["b"], torch.tensor([[[0.5, 0.0], [-1.0, 2.0]], [[1.0, 2.0], [0.0, 0.0]]]))
    # Through a checkpoint's trainer state and back.
    again = SWAGStatistics.from_state(stats.state_dict())
    assert again.n == 3 and all(torch.equal(again.deviations[n], stats.deviations[n]) for n in ("a", "b"))


def test_samples_have_swags_covariance():
    """Draws w = mean + sqrt(scale) (sqrt(var) z1 + D^T z2 / sqrt(K - 1)) have mean ``mean`` and
    covariance ``scale * (diag(var) + D^T D / (K - 1))`` (the SWAG paper's Sigma with scale 1/2)."""
    torch.manual_seed(0)
    ws = [{"a": torch.randn(4)} for _ in range(5)]
    stats = SWAGStatistics(rank=3)
    for k, w in enumerate(ws, start=1):
        stats.collect(w, {"a": sum(v["a"] for v in ws[:k]) / k})
    mean = {"a": sum(v["a"] for v in ws) / 5}
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([stats.sample(mean, 0.5, gen)["a"] for _ in range(40000)]).double()
    var = (stats.sq_mean["a"] - mean["a"] ** 2).double()
    d = stats.deviations["a"].double()
    expected = 0.5 * (torch.diag(var) + d.T @ d / 2)
    torch.testing.assert_close(draws.mean(0), mean["a"].double(), atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(draws.T), expected, atol=0.03, rtol=0.05)
    # A fixed generator, a fixed draw.
    one = stats.sample(mean, 0.5, torch.Generator().manual_seed(3))["a"]
    assert torch.equal(one, stats.sample(mean, 0.5, torch.Generator().manual_seed(3))["a"])


# --- collected during SWA training ------------------------------------------------------------------


@pytest.fixture(scope="module")
def swag_run(tmp_path_factory) -> Path:
    log = tmp_path_factory.mktemp("swag")
    assert cli(SWAG + ["--save-epochs", "1,2", "--log-dir", log, "--name", "swag"]) == 0
    return log / "swag+try=0"


def test_training_collects_the_moments_of_the_averaged_weights(swag_run):
    w = [load(ckpt_at(swag_run, e))["state_dicts"][0] for e in (1, 2, 3)]  # the weights averaged after each epoch
    final = load(ckpt_at(swag_run, 3))
    state = final["trainer"]["swag"]
    assert final["trainer"]["swag_rank"] == 2 and state["rank"] == 2 and state["n"] == 3
    names = [n for n in state["sq_mean"]]
    assert "convs.0.weight" in names and "bns.1.bias" in names and not any("running" in n for n in names)
    for n in names:
        mean2, mean3 = (w[0][n] + w[1][n]) / 2, (w[0][n] + w[1][n] + w[2][n]) / 3
        torch.testing.assert_close(final["state_dicts"][1][n], mean3)  # the SWA average is SWAG's mean
        torch.testing.assert_close(state["sq_mean"][n], (w[0][n] ** 2 + w[1][n] ** 2 + w[2][n] ** 2) / 3)
        torch.testing.assert_close(state["deviations"][n], torch.stack([w[1][n] - mean2, w[2][n] - mean3]))


def test_a_resumed_run_continues_the_collection_exactly(swag_run, tmp_path):
    log = tmp_path / "resumed"
    assert cli(SWAG + ["--resume", ckpt_at(swag_run, 2), "--log-dir", log, "--name", "swag"]) == 0
    got = load(ckpt_at(log / "swag+try=0", 3))["trainer"]["swag"]
    want = load(ckpt_at(swag_run, 3))["trainer"]["swag"]
    assert got["n"] == want["n"] == 3
    for key in ("sq_mean", "deviations"):
        for n, v in want[key].items():
            assert torch.equal(got[key][n], v), (key, n)


# --- the swag evaluation ----------------------------------------------------------------------------


def test_swag_bayesian_model_average(swag_run, tmp_path, monkeypatch):
    ckpt = ckpt_at(swag_run, 3)
    log = tmp_path / "eval"
    argv = SMALL + ["--no-channels-last", "--trainer", "swag", "--resume", ckpt, "--pretrained", "--epochs", "0",
                    "--swag-samples", "3", "--swag-scale", "0.5", "--seed", "7", "--save-data", "--log-dir", log, "--name", "bma"]
    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    assert cli(argv) == 0
    assert "SWAG samples" in err.getvalue()  # a bar over the samples, drawn on a terminal
    (row,) = read_results(log / "results.csv")
    assert (row["swag_samples"], row["swag_scale"], row["swag_rank"], row["swag_n"]) == ("3", "0.5", "2", "3")

    # By hand: the SWA mean and three draws from the checkpoint's statistics, each with its BatchNorm
    # statistics recomputed, their probabilities averaged.
    saved = load(ckpt)
    stats, sd_mean = saved["trainer"]["swag"], saved["state_dicts"][1]
    s = parse_args([str(a) for a in SMALL])  # BatchNorm batches of the checkpoint's seed (1); --seed 7 draws the samples
    data = get_dataset(s)
    net = main_mod.build_model(replace(s, model="DigitsConvNet", output_size=10), data)

    def outputs(weights: dict):
        with torch.no_grad():
            for n, p in net.named_parameters():
                p.copy_(weights[n])
        data.set_epoch(0)
        update_bn(data.bn_loader, net)
        return predict(net, data.val_loader, torch.device("cpu"))

    names = [n for n, _ in net.named_parameters()]
    swa = outputs(sd_mean)
    m = classification_metrics(swa.logits, swa.targets)
    assert float(row["swa_acc"]) == pytest.approx(m["acc"], abs=1e-6) and float(row["swa_nll"]) == pytest.approx(m["nll"], rel=1e-4)

    gen = make_generator(7, "swag")
    probs = 0
    for _ in range(3):
        z2 = torch.randn(2, generator=gen)
        w = {}
        for n in names:
            mu = sd_mean[n]
            var = (stats["sq_mean"][n] - mu**2).clamp_min(1e-30)
            z1 = torch.randn(mu.shape, generator=gen)
            low_rank = z2[0] * stats["deviations"][n][0] + z2[1] * stats["deviations"][n][1]
            w[n] = mu + math.sqrt(0.5) * (var.sqrt() * z1 + low_rank / math.sqrt(2 - 1))
        probs = probs + outputs(w).probs
    bma = probs_metrics(probs / 3, swa.targets)
    assert float(row["curr_acc1"]) == pytest.approx(bma["acc"], abs=1 / 360)  # a near-tie may flip with float order
    for k in ("nll", "ece", "brier"):
        assert float(row[k]) == pytest.approx(bma[k], rel=1e-4, abs=1e-6), k
    assert row["test_loss"] == row["nll"]


def _bad(argv, log: Path, capsys, expect: str) -> None:
    capsys.readouterr()
    assert cli([str(a) for a in argv] + ["--log-dir", str(log)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and expect in err, err
    assert not log.exists() or not any(log.iterdir())


def test_swag_bad_input(swag_run, tmp_path, capsys):
    log = tmp_path / "bad"
    final, plain = ckpt_at(swag_run, 3), tmp_path / "plain"
    assert cli(SMALL + ["--epochs", "1", "--save", "--log-dir", plain, "--name", "p"]) == 0
    standard = ckpt_at(plain / "p+try=0", 1)
    ev = SMALL + ["--trainer", "swag", "--epochs", "0", "--pretrained", "--save-data"]
    _bad(ev + ["--resume", standard], log, capsys, "holds no SWAG statistics; train with --trainswa --swag-rank K")
    _bad(ev + ["--resume", f"{final},{final}"], log, capsys, "one SWA checkpoint")
    _bad(ev + ["--resume", ckpt_at(swag_run, 1)], log, capsys, "averaged 1 epoch(s); SWAG needs at least 2")
    _bad(ev + ["--resume", final, "--swag-samples", "0"], log, capsys, "--swag-samples 0 must be at least 1")
    _bad(SWAG[:-1] + ["--swag-rank", "1"], log, capsys, "--swag-rank 1 must be at least 2")
    _bad(SWAG[:-1] + ["--swa-start", "0.75"], log, capsys, "at least 2 averaging epochs")
    _bad(SMALL + ["--swag-rank", "2", "--epochs", "1"], log, capsys, "--swag-rank is read by --trainer swa")
    # A resume must continue the collection as it was: no SWAG statistics started or dropped midway.
    _bad(SWAG[:-1] + ["--resume", ckpt_at(swag_run, 2), "--swag-rank", "3"], log, capsys, "of rank 2; pass --swag-rank 2")
    no_swag = [a for a in SWAG[:-1] if a not in ("--swag-rank", "2")]
    _bad(no_swag + ["--resume", ckpt_at(swag_run, 2)], log, capsys, "pass --swag-rank 2")


# --- agreement with swa_gaussian (Maddox et al. 2019's code) ------------------------------------------


def swa_gaussian_moments(snapshots: list, max_num_models: int) -> tuple:
    """swa_gaussian's collection, from its paper (Algorithm 1) and ``SWAG.collect_model``: running
    mean and mean of squares over all snapshots; after each, the deviation of the snapshot from the
    updated mean is appended as a row of the covariance square root, and the oldest row dropped
    once more than ``max_num_models`` are held. Flat (whole-network) vectors."""
    mean = sq_mean = torch.zeros_like(snapshots[0])
    rows = []
    for n, w in enumerate(snapshots):
        mean = mean * n / (n + 1) + w / (n + 1)
        sq_mean = sq_mean * n / (n + 1) + w**2 / (n + 1)
        rows = (rows + [w - mean])[-max_num_models:]
    return mean, sq_mean, torch.stack(rows)


def swa_gaussian_sample(mean, sq_mean, cov_sqrt, max_num_models: int, scale: float, z1, z2, cov: bool, var_clamp: float = 1e-30):
    """swa_gaussian's ``sample(scale, cov)`` (full-rank path) for given normal draws: the variance
    clamped below at ``var_clamp``, the low-rank term divided by sqrt(max_num_models - 1) (the rank
    asked for, whatever number of rows is held), both terms scaled by sqrt(scale)."""
    var = torch.clamp(sq_mean - mean**2, min=var_clamp)
    noise = var.sqrt() * z1
    if cov:
        noise = noise + cov_sqrt.t().matmul(z2) / (max_num_models - 1) ** 0.5
    return mean + scale**0.5 * noise


@pytest.mark.parametrize("cov", ["lowrank", "diag"])
def test_samples_equal_swa_gaussians_for_the_same_draws(cov):
    """Six snapshots at rank 10 (fewer than the rank, where dividing by the columns held would give a
    1.34x larger low-rank term), a parameter that never moves (variance 0: the clamp), the same z1
    and z2 fed to both formulas: the same weights."""
    gen = torch.Generator().manual_seed(0)
    snaps = [{"a": torch.randn(5, 3, generator=gen, dtype=torch.float64), "b": torch.zeros(4, dtype=torch.float64)} for _ in range(6)]
    stats = SWAGStatistics(rank=10)
    for k, w in enumerate(snaps, start=1):
        stats.collect(w, {n: sum(s[n] for s in snaps[:k]) / k for n in w})
    assert stats.num_columns == 6
    flat = lambda d: torch.cat([d["a"].flatten(), d["b"].flatten()])  # noqa: E731
    mean, sq_mean, cov_sqrt = swa_gaussian_moments([flat(s) for s in snaps], 10)
    z1 = {"a": torch.randn(5, 3, generator=gen, dtype=torch.float64), "b": torch.randn(4, generator=gen, dtype=torch.float64)}
    z2 = torch.randn(6, generator=gen, dtype=torch.float64)
    mean_d = {"a": mean[:15].view(5, 3), "b": mean[15:]}
    got = stats.draw(mean_d, 0.5, z1, z2 if cov == "lowrank" else None)
    want = swa_gaussian_sample(mean, sq_mean, cov_sqrt, 10, 0.5, flat(z1), z2, cov == "lowrank")
    torch.testing.assert_close(flat(got), want, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(got["b"], mean_d["b"] + 0.5**0.5 * 1e-15 * z1["b"], rtol=1e-12, atol=0)  # clamped at 1e-30
    if cov == "lowrank":  # dividing by sqrt(columns - 1) instead would scale the low-rank term by sqrt(9/5) = 1.34
        other = swa_gaussian_sample(mean, sq_mean, cov_sqrt, 6, 0.5, flat(z1), z2, True)
        assert (other - mean).norm() > 1.05 * (want - mean).norm()


def test_fewer_columns_than_the_rank_warns_in_one_line(capsys):
    from subspaces.args import Settings
    from subspaces.trainers.swag import SWAGTrainer

    stats = SWAGStatistics(rank=10)
    ws = [{"a": torch.randn(3)} for _ in range(4)]
    for k, w in enumerate(ws, start=1):
        stats.collect(w, {"a": sum(v["a"] for v in ws[:k]) / k})
    trainer = SWAGTrainer(Settings(trainer="swag", resume=("swa.pt",)))
    trainer.load_checkpoints([{"trainer": {"swag": stats.state_dict()}}])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and "4 deviation columns" in err[0] and "--swag-rank 10" in err[0], err
    SWAGTrainer(Settings(trainer="swag", resume=("swa.pt",), swag_cov="diag")).load_checkpoints([{"trainer": {"swag": stats.state_dict()}}])
    assert capsys.readouterr().err == ""  # the diagonal draw has no low-rank term to warn about


def test_swag_diagonal_draw_through_the_command_line(swag_run, tmp_path):
    """``--swag-cov diag``: one draw ``mean + sqrt(scale) sqrt(var) z1`` (no low-rank term, no z2 drawn),
    its BatchNorm recomputed, scored as the row says."""
    ckpt, log = ckpt_at(swag_run, 3), tmp_path / "diag"
    argv = SMALL + ["--no-channels-last", "--trainer", "swag", "--resume", ckpt, "--pretrained", "--epochs", "0", "--swag-cov", "diag",
                    "--swag-samples", "1", "--seed", "7", "--save-data", "--log-dir", log, "--name", "diag"]
    assert cli(argv) == 0
    (row,) = read_results(log / "results.csv")
    assert row["swag_cov"] == "diag"
    saved = load(ckpt)
    stats, sd_mean = saved["trainer"]["swag"], saved["state_dicts"][1]
    s = parse_args([str(a) for a in SMALL])  # BatchNorm batches of the checkpoint's seed (1); --seed 7 draws the samples
    data = get_dataset(s)
    net = main_mod.build_model(replace(s, model="DigitsConvNet", output_size=10), data)
    gen = make_generator(7, "swag")
    with torch.no_grad():
        for n, p in net.named_parameters():
            var = (stats["sq_mean"][n] - sd_mean[n] ** 2).clamp_min(1e-30)
            p.copy_(sd_mean[n] + math.sqrt(0.5) * var.sqrt() * torch.randn(p.shape, generator=gen))
    data.set_epoch(0)
    update_bn(data.bn_loader, net)
    m = classification_metrics(*(lambda p: (p.logits, p.targets))(predict(net, data.val_loader, torch.device("cpu"))))
    assert float(row["nll"]) == pytest.approx(m["nll"], rel=1e-4) and float(row["curr_acc1"]) == pytest.approx(m["acc"], abs=1 / 360)
