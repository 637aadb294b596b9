"""The original's other evaluation trainers from the command line on Digits, each checked against a
direct computation: weights combined by hand, BatchNorm recomputed, outputs compared.

average_weights, random_average_weights_{global,layerwise,perweight}, swa_endpoint_ensembles,
simplex_ensembles and linestats_swa (SWAG is in test_swag.py).
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from subspaces import main as main_mod
import subspaces.trainers.eval_one_dim_subspaces as eval_lines
from subspaces.args import Settings, parse_args, replace
from subspaces.data import get_dataset
from subspaces.modes import set_point, set_points, subspace_layers
from subspaces.utils.bn import update_bn
from subspaces.utils.checkpoint import save_checkpoint
from subspaces.utils.evaluation import predict
from subspaces.utils.metrics import accuracy, classification_metrics, feature_cossim, tv_distance
from subspaces.utils.results import read_results
from subspaces.utils.seed import make_generator
from tests.helpers import CountingBN, cli, final_ckpt, train_members

SMALL = ["--set", "Digits", "--batch-size", "128", "--width-mult", "0.5"]
# NCHW as the direct computations (channels-last agrees up to float rounding: tests/test_eval.py).
EVAL = ["--no-channels-last", "--epochs", "0", "--pretrained", "--save-data"]
# One test image: a prediction at a near-tie may flip with the order of float operations (the
# direct computation adds the networks in another order); NLL and the others pin the numbers.
ONE_IMAGE = 1 / 360 + 1e-6


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list:
    """Three standard networks trained independently (seeds 1, 2, 3) for one epoch."""
    return train_members(tmp_path_factory.mktemp("members"), SMALL + ["--epochs", "1"], (1, 2, 3))


def state(path: Path, i: int = 0) -> dict:
    return torch.load(path, weights_only=True)["state_dicts"][i]


def run_rows(argv, log: Path) -> list:
    assert cli(SMALL + EVAL + ["--log-dir", log] + list(argv)) == 0
    return read_results(log / "results.csv")


class ByHand:
    """A Digits model of the test size, its data, and the evaluation done directly."""

    def __init__(self, conv: str = "StandardConv", bn: str = "StandardBN", seed: int = 1):
        # The seed of the run: it fixes the order and augmentation of the BatchNorm batches.
        self.s = replace(parse_args(SMALL), conv_type=conv, bn_type=bn, seed=seed)
        self.data = get_dataset(self.s)
        self.net = main_mod.build_model(replace(self.s, model="DigitsConvNet", output_size=10), self.data)

    def load(self, sd: dict) -> "ByHand":
        self.net.load_state_dict(sd)
        return self

    @torch.no_grad()
    def set_params(self, weights: dict) -> "ByHand":
        for name, p in self.net.named_parameters():
            p.copy_(weights[name])
        return self

    def outputs(self):
        """BatchNorm recomputed over the training batches the evaluators use (epoch 0), then the test set."""
        self.data.set_epoch(0)
        update_bn(self.data.bn_loader, self.net)
        return predict(self.net, self.data.val_loader, torch.device("cpu"), with_features=True)


def params(sd: dict) -> dict:
    """The parameters of a state dict (conv weights, BatchNorm affine parameters), not its buffers."""
    return {k: v for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def assert_row_metrics(row: dict, logits: torch.Tensor, targets: torch.Tensor, prefix: str = "", acc_col: str = "curr_acc1") -> None:
    m = classification_metrics(logits, targets)
    assert float(row[acc_col]) == pytest.approx(m["acc"], abs=ONE_IMAGE)
    for k in ("nll", "brier"):
        assert float(row[prefix + k]) == pytest.approx(m[k], rel=1e-4), k
    assert float(row[prefix + "ece"]) == pytest.approx(m["ece"], abs=ONE_IMAGE)


# --- average_weights and the random points of the simplex ------------------------------------------


def test_average_weights_is_the_uniform_average(members, tmp_path):
    (row,) = run_rows(["--trainer", "average_weights", "--resume", ",".join(map(str, members)), "--name", "avg"], tmp_path)
    assert row["trainer"] == "average_weights" and row["num_models"] == "3" and row["update_bn"] == "True"
    sds = [params(state(p)) for p in members]
    avg = {k: (sds[0][k] + sds[1][k] + sds[2][k]) / 3 for k in sds[0]}
    assert not torch.allclose(avg["convs.0.weight"], sds[0]["convs.0.weight"])
    p = ByHand().set_params(avg).outputs()
    assert_row_metrics(row, p.logits, p.targets)
    assert row["test_loss"] == row["nll"]


def _hand_coefficients(granularity: str, seed: int, n: int, net) -> dict:
    """The Dirichlet(1) draws, made here from the documented generator and order."""
    gen = make_generator(seed, "random_average_weights", granularity)

    def draw(*shape):
        z = torch.empty(n, *shape, dtype=torch.float64).exponential_(1.0, generator=gen)
        return z / z.sum(dim=0, keepdim=True)

    if granularity == "global":
        z = draw()
        return {k: z for k, _ in net.named_parameters()}
    if granularity == "layerwise":
        out = {}
        for prefix, module in net.named_modules():
            own = [k for k, _ in module.named_parameters(recurse=False)]
            if own:  # a conv (weight) or a BatchNorm (weight and bias share the draw)
                z = draw()
                out.update({f"{prefix}.{k}": z for k in own})
        return out
    return {k: draw(*p.shape) for k, p in net.named_parameters()}


@pytest.mark.parametrize("granularity", ["global", "layerwise", "perweight"])
def test_random_average_weights(members, tmp_path, granularity):
    trainer = f"random_average_weights_{granularity}"
    resume = ",".join(map(str, members[:2]))
    rows = run_rows(["--trainer", trainer, "--resume", resume, "--seed", "5", "--name", "r5"], tmp_path)
    row = rows[-1]
    hand = ByHand(seed=5)
    coeffs = _hand_coefficients(granularity, 5, 2, hand.net)
    sds = [params(state(p)) for p in members[:2]]
    mixed = {k: (coeffs[k][0] * sds[0][k] + coeffs[k][1] * sds[1][k]).float() for k in sds[0]}
    p = hand.set_params(mixed).outputs()
    assert_row_metrics(row, p.logits, p.targets)
    if granularity == "global":
        z = next(iter(coeffs.values()))
        assert (float(row["coeff_0"]), float(row["coeff_1"])) == (pytest.approx(float(z[0])), pytest.approx(float(z[1])))
        assert 0 < float(z[0]) < 1 and float(z[0]) != pytest.approx(0.5, abs=1e-3)
        # Another seed, another point of the simplex.
        other = run_rows(["--trainer", trainer, "--resume", resume, "--seed", "6", "--name", "r6"], tmp_path)[-1]
        assert other["coeff_0"] != row["coeff_0"]
    else:
        assert row.get("coeff_0", "") == ""
        # The draws differ between layers (or elements): not one point for the whole network.
        firsts = {float(c.flatten()[0]) if c.dim() == 1 else float(c[0].flatten()[0]) for c in coeffs.values()}
        assert len(firsts) > 1


# --- swa_endpoint_ensembles ------------------------------------------------------------------------


def test_swa_endpoint_ensembles(members, tmp_path):
    t = 0.7
    (row,) = run_rows(["--trainer", "swa_endpoint_ensembles", "--resume", ",".join(map(str, members)), "--t", t, "--name", "se"], tmp_path)
    assert float(row["t"]) == t and row["num_models"] == "3"
    sds = [params(state(p)) for p in members]
    logits = []
    for j in range(3):
        w = {k: t * sds[j][k] + sum((1 - t) / 2 * sds[i][k] for i in range(3) if i != j) for k in sds[0]}
        p = ByHand().set_params(w).outputs()
        logits.append(p.logits)
        assert_row_metrics(row, p.logits, p.targets, prefix=f"model_{j}_", acc_col=f"model_{j}_acc")
    assert float(row["curr_acc1"]) == pytest.approx(accuracy(sum(logits), p.targets), abs=ONE_IMAGE)
    assert row["ensemble_acc"] == row["curr_acc1"]
    assert 0 < float(row["tvdist"]) < 1  # the three networks still differ


# --- simplex_ensembles -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simplex_ckpt(tmp_path_factory) -> Path:
    log = tmp_path_factory.mktemp("simplex")
    argv = SMALL + ["--conv-type", "SimplexConv3", "--bn-type", "SimplexBN3", "--trainer", "train_simplexes", "--epochs", "1",
                    "--save", "--log-dir", log, "--name", "sx"]
    assert cli(argv) == 0
    return final_ckpt(log / "sx+try=0")


@pytest.mark.parametrize("layerwise", [False, True])
def test_simplex_ensembles(simplex_ckpt, tmp_path, layerwise, monkeypatch):
    """K random points of one simplex, ensembled: the simplex is built once, not K times."""
    built, build = [], main_mod.build_model
    monkeypatch.setattr(main_mod, "build_model", lambda *a: built.append(1) or build(*a))
    argv = ["--conv-type", "SimplexConv3", "--bn-type", "SimplexBN3", "--trainer", "simplex_ensembles", "--resume", simplex_ckpt,
            "--num-models", "3", "--seed", "4", "--name", "sxe"] + (["--layerwise"] if layerwise else [])
    (row,) = run_rows(argv, tmp_path)
    assert len(built) == 1
    # BatchNorm batches of the checkpoint's own seed (1: one checkpoint evaluated); --seed 4 draws the points.
    hand = ByHand("SimplexConv3", "SimplexBN3", seed=1).load(state(simplex_ckpt))
    layers = subspace_layers(hand.net)
    gen = make_generator(4, "simplex_ensembles")
    logits = []
    for k in range(3):
        z = torch.empty(len(layers) if layerwise else 1, 3, dtype=torch.float64).exponential_(1.0, generator=gen)
        z = z / z.sum(dim=1, keepdim=True)  # Dirichlet(1): t_i = Z_i, i = 1, 2
        if layerwise:
            set_points(layers, z[:, 1:])
        else:
            set_point(hand.net, z[0, 1:].tolist())
        p = hand.outputs()
        logits.append(p.logits)
        assert_row_metrics(row, p.logits, p.targets, prefix=f"model_{k}_", acc_col=f"model_{k}_acc")
    assert float(row["curr_acc1"]) == pytest.approx(accuracy(sum(logits), p.targets), abs=ONE_IMAGE)
    assert row["layerwise"] == str(layerwise) and row["num_models"] == "3"
    for col in ("ensemble_nll", "ensemble_ece", "ensemble_brier", "avg_model_acc", "tvdist", "percent_disagree"):
        assert row[col] != "", col


# --- linestats_swa ---------------------------------------------------------------------------------


def test_linestats_swa_grid_and_pair(members, tmp_path, monkeypatch):
    """The straight line between two trained networks: one row per pair of the grid, each distinct
    point evaluated once (BatchNorm recomputed), equal to the points made by hand; --t/--baset are
    --alpha1/--alpha0."""
    counter = CountingBN()
    monkeypatch.setattr(eval_lines, "update_bn", counter)
    a, b = members[:2]
    base = ["--trainer", "linestats_swa", "--resume", f"{a},{b}"]
    rows = run_rows(base + ["--alphas", "0,0.25,0.75", "--name", "ls"], tmp_path)
    assert counter.calls == 4  # the distinct points 0, 1, 0.25, 0.75 (0.25 and 0.75 serve two pairs)
    assert [(float(r["alpha0"]), float(r["alpha1"])) for r in rows] == [(0, 1), (0.25, 0.75), (0.75, 0.25)]
    assert all(r["update_bn"] == "True" and r["conv_type"] == "StandardConv" for r in rows)

    sa, sb = params(state(a)), params(state(b))
    point = lambda alpha: ByHand().set_params({k: (1 - alpha) * sa[k] + alpha * sb[k] for k in sa}).outputs()  # noqa: E731
    p1, p0 = point(0.75), point(0.25)
    row = rows[1]
    assert_row_metrics(row, p1.logits, p1.targets)
    assert_row_metrics(row, p0.logits, p0.targets, prefix="m0_", acc_col="m0_acc")
    assert float(row["ensemble_acc"]) == pytest.approx(accuracy(p1.logits + p0.logits, p1.targets), abs=ONE_IMAGE)
    assert float(row["tvdist"]) == pytest.approx(tv_distance(p0.probs, p1.probs), rel=1e-3)
    assert float(row["feat_cossim"]) == pytest.approx(feature_cossim(p1.features, p0.features), rel=1e-4)
    # alpha = 1 is network b itself, alpha = 0 network a (BatchNorm recomputed).
    pb = ByHand().load(state(b)).outputs()
    assert float(rows[0]["curr_acc1"]) == pytest.approx(accuracy(pb.logits, pb.targets), abs=ONE_IMAGE)

    single = run_rows(base + ["--t", "0.75", "--baset", "0.25", "--name", "ls1"], tmp_path)[-1]
    assert (float(single["alpha0"]), float(single["alpha1"])) == (0.25, 0.75)
    for col in ("curr_acc1", "m0_acc", "ensemble_acc", "tvdist", "feat_cossim", "nll", "m0_ece"):
        assert float(single[col]) == pytest.approx(float(row[col]), rel=1e-6), col


# --- bad input -------------------------------------------------------------------------------------


def fresh_ckpt(path: Path, conv: str = "StandardConv", bn: str = "StandardBN", width: float = 0.5) -> Path:
    s = replace(Settings(), conv_type=conv, bn_type=bn, model="DigitsConvNet", output_size=10, width_mult=width)
    net = main_mod.build_model(s, SimpleNamespace(in_channels=1))
    save_checkpoint(path, {"epoch": 0, "iter": 0, "arch": s.model, "state_dicts": [net.state_dict()], "optimizers": [],
                           "best_acc1": 0.0, "curr_acc1": 0.0, "settings": s.to_dict()})
    return path


def test_bad_input_is_one_line_and_writes_nothing(members, tmp_path, capsys):
    a, b, c = map(str, members)
    wide = str(fresh_ckpt(tmp_path / "wide.pt", width=1.0))
    line = str(fresh_ckpt(tmp_path / "line.pt", "LinesConv", "LinesBN"))
    cases = [
        (["--trainer", "average_weights", "--resume", a], "at least two"),
        (["--trainer", "random_average_weights_global", "--resume", f"{a},{wide}"], f"checkpoints {a} and {wide} hold different architectures"),
        (["--trainer", "average_weights", "--resume", f"{a},{line}"], "--conv-type LinesConv"),
        (["--trainer", "average_weights", "--conv-type", "LinesConv", "--bn-type", "LinesBN", "--resume", line + "," + line], "eval_one_dim_subspaces"),
        (["--trainer", "linestats_swa", "--resume", f"{a},{b},{c}"], "exactly two"),
        (["--trainer", "linestats_swa", "--resume", a], "exactly two"),
        (["--trainer", "linestats_swa", "--resume", f"{a},{b}", "--alphas", "0,0.5", "--t", "0.5"], "drop --t"),
        (["--trainer", "linestats_swa", "--resume", f"{a},{b}", "--baset", "1.5"], "--baset 1.5 is outside [0, 1]"),
        (["--trainer", "swa_endpoint_ensembles", "--resume", f"{a},{b}"], "needs --t"),
        (["--trainer", "swa_endpoint_ensembles", "--resume", f"{a},{b}", "--t", "-0.1"], "--t -0.1 is outside [0, 1]"),
        (["--trainer", "swa_endpoint_ensembles", "--resume", a, "--t", "0.5"], "at least two"),
        (["--trainer", "ensemble", "--resume", f"{a},{b}", "--t", "0.5"], "--t is read by --trainer linestats_swa / swa_endpoint_ensembles"),
        (["--trainer", "average_weights", "--resume", f"{a},{b}", "--swag-samples", "4"], "--swag-samples is read by --trainer swag"),
        (["--trainer", "simplex_ensembles", "--conv-type", "SimplexConv3", "--bn-type", "SimplexBN3", "--resume", a, "--num-models", "3"], "--conv-type StandardConv"),
        (["--trainer", "simplex_ensembles", "--resume", a, "--num-models", "1"], "--num-models K with K >= 2"),
        (["--trainer", "simplex_ensembles", "--resume", a, "--num-models", "3"], "works on simplex models"),
    ]
    log = tmp_path / "bad"
    for argv, expect in cases:
        capsys.readouterr()
        assert cli(SMALL + EVAL[:-1] + ["--save", "--log-dir", log] + argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and len(err.splitlines()) == 1, err
        assert expect in err, (argv, err)
        assert not log.exists() or not any(log.iterdir())
