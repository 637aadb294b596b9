"""Mode connectivity (Garipov et al. 2018): Bezier curves of any degree, polygonal chains, and
trained networks loaded as the endpoints of a curve (``--init-endpoints``, ``--fix-endpoints``).

Expected coefficients are computed here from the formulas (Bernstein polynomials, piecewise
linear interpolation), never through the code under test.
"""
from __future__ import annotations

import math
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from subspaces import main as main_mod
from subspaces.args import Settings, parse_args, replace
from subspaces.data import get_dataset
from subspaces.modes import BezierCoefficients, CurveCoefficients, PolyChainCoefficients, get_layer_type, linear_type_for, load_endpoints, set_point
from subspaces.utils.bn import update_bn
from subspaces.utils.checkpoint import load_checkpoint, save_checkpoint
from subspaces.utils.errors import UserError
from subspaces.utils.evaluation import predict
from subspaces.utils.results import read_results
from tests.helpers import final_ckpt, train_members

ALPHAS = [0.0, 0.07, 0.25, 1 / 3, 0.5, 0.61, 0.9, 1.0]


def bernstein(j: int, k: int, a: float) -> float:
    return math.comb(k, j) * a**j * (1 - a) ** (k - j)


# --- coefficients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_bezier_coefficients_are_bernstein_polynomials(k):
    """Tensor order: weight (B_0), weight1 (B_k), then the control points weight2.. (B_1..B_{k-1})."""
    coeffs = BezierCoefficients(k)
    assert coeffs.num_tensors == k + 1 and coeffs.point_attrs == ("alpha",)
    for a in ALPHAS:
        c = coeffs((a,))
        expected = [bernstein(0, k, a), bernstein(k, k, a)] + [bernstein(j, k, a) for j in range(1, k)]
        assert c == pytest.approx(expected, abs=1e-14)
        assert math.fsum(c) == pytest.approx(1.0, abs=1e-12)
    assert coeffs((0.0,))[0] == 1.0 and coeffs((1.0,))[1] == 1.0  # the ends are the endpoints
    assert coeffs.vertex(0) == (0.0,) and coeffs.vertex(1) == (1.0,) and coeffs.centre() == (0.5,)


def test_bezier_of_degree_two_is_exactly_the_original_curve():
    bez, curve = BezierCoefficients(2), CurveCoefficients()
    for a in ALPHAS + [0.123456789, 0.987654321]:
        assert bez((a,)) == curve((a,))
        assert curve((a,)) == ((1 - a) ** 2, a**2, 2 * a * (1 - a))  # the original's, unchanged
    gen = torch.Generator().manual_seed(0)
    b = get_layer_type("BezierConv2")(2, 3, 3, bias=True)
    c = get_layer_type("CurvesConv")(2, 3, 3, bias=True)
    c.load_state_dict(b.state_dict())  # the same names: weight, weight1, weight2
    x = torch.randn(2, 2, 5, 5, generator=gen)
    for a in (0.2, 0.5, 0.8):
        b.set_point((a,)), c.set_point((a,))
        assert torch.equal(b(x), c(x))


def chain_by_hand(bends: int, a: float) -> list:
    """Nodes at t = 0, 1/(b+1), ..., 1 in order weight, weight2, ..., weight{b+1}, weight1."""
    nodes = [0] + list(range(2, bends + 2)) + [1]
    c = [0.0] * (bends + 2)
    seg = min(int(a * (bends + 1)), bends)
    u = a * (bends + 1) - seg
    c[nodes[seg]] += 1 - u
    c[nodes[seg + 1]] += u
    return c


@pytest.mark.parametrize("bends", [1, 2, 3])
def test_polychain_is_piecewise_linear_through_its_bends(bends):
    coeffs = PolyChainCoefficients(bends)
    assert coeffs.num_tensors == bends + 2
    for j in range(1, bends + 1):  # bend j (tensor j + 1) alone at t = j / (bends + 1)
        c = coeffs((j / (bends + 1),))
        assert c == pytest.approx([1.0 if i == j + 1 else 0.0 for i in range(bends + 2)], abs=1e-12)
    assert coeffs((0.0,))[0] == 1.0 and coeffs((1.0,))[1] == 1.0
    for a in ALPHAS + [0.3, 0.77]:
        c = coeffs((a,))
        assert c == pytest.approx(chain_by_hand(bends, a), abs=1e-12)
        assert sum(c) == pytest.approx(1.0) and min(c) >= 0 and sum(x > 0 for x in c) <= 2
    # linear inside a segment: the midpoint of a segment is the mean of its ends
    lo, hi = 0.0, 1 / (bends + 1)
    mid = coeffs(((lo + hi) / 2,))
    assert mid == pytest.approx([(x + y) / 2 for x, y in zip(coeffs((lo,)), coeffs((hi,)))])


@pytest.mark.parametrize("kind,k,tensors", [("Bezier", 3, 4), ("PolyChain", 2, 4), ("Bezier", 1, 2)])
def test_bezier_and_polychain_layer_types(kind, k, tensors):
    conv = get_layer_type(f"{kind}Conv{k}")
    assert conv is get_layer_type(f"{kind}Conv{k}") and conv.__name__ == f"{kind}Conv{k}"
    layer = conv(2, 3, 3, bias=False)
    assert set(layer.state_dict()) == {"weight", *(f"weight{i}" for i in range(1, tensors))}
    bn = get_layer_type(f"{kind}BN{k}")(3)
    assert hasattr(bn, f"bias{tensors - 1}") and not hasattr(bn, f"bias{tensors}")
    assert linear_type_for(f"{kind}Conv{k}") == f"{kind}Linear{k}"
    assert get_layer_type(f"{kind}Linear{k}")(3, 2).num_tensors == tensors
    clone = pickle.loads(pickle.dumps(layer))
    assert type(clone) is conv and torch.equal(clone.weight1, layer.weight1)
    for bad in (f"{kind}Conv0", f"{kind}Conv"):
        with pytest.raises(UserError, match=f"{kind}Conv<k>"):
            get_layer_type(bad, "Conv")


def test_endpoints_load_by_name_and_control_points_start_on_the_line():
    """Plain ``w`` -> ``weight`` (end 0) and ``weight1`` (end 1); the control points of a cubic
    Bezier start at 1/3 and 2/3 of the straight line; buffers come from the first network."""
    gen = torch.Generator().manual_seed(0)

    def net(conv, bn):
        return nn.Sequential(get_layer_type(conv)(2, 4, 3, bias=True), get_layer_type(bn)(4))

    a, b = net("StandardConv", "StandardBN"), net("StandardConv", "StandardBN")
    for p in list(a.parameters()) + list(b.parameters()) + [a[1].running_mean]:
        p.data.copy_(torch.randn(p.shape, generator=gen))
    sub = net("BezierConv3", "BezierBN3")
    load_endpoints(sub, [a.state_dict(), b.state_dict()], ["a", "b"])
    for name in ("0.weight", "0.bias", "1.weight", "1.bias"):
        m, p = name.split(".")
        wa, wb = a.state_dict()[name], b.state_dict()[name]
        assert torch.equal(getattr(sub[int(m)], p), wa) and torch.equal(getattr(sub[int(m)], f"{p}1"), wb)
        torch.testing.assert_close(getattr(sub[int(m)], f"{p}2"), wa + (wb - wa) / 3)
        torch.testing.assert_close(getattr(sub[int(m)], f"{p}3"), wa + 2 * (wb - wa) / 3)
    assert torch.equal(sub[1].running_mean, a[1].running_mean)
    # the straight-line init puts every point of the curve on the line: alpha=0.4 is 0.6 a + 0.4 b
    set_point(sub, (0.4,))
    torch.testing.assert_close(sub[0].get_weight(), 0.6 * a[0].weight + 0.4 * b[0].weight)
    with pytest.raises(UserError, match="2 endpoints"):
        load_endpoints(sub, [a.state_dict()], ["a"])
    wide = nn.Sequential(nn.Conv2d(2, 5, 3), nn.BatchNorm2d(5))
    with pytest.raises(UserError, match="does not fit"):
        load_endpoints(sub, [a.state_dict(), wide.state_dict()], ["a", "wide.pt"])


# --- end to end on Digits -------------------------------------------------------------------------

FAST = ["--set", "Digits", "--epochs", "1", "--batch-size", "128", "--lr", "0.1"]


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list:
    """Two standard Digits networks (seeds 0 and 1), one epoch each."""
    return train_members(tmp_path_factory.mktemp("members"), FAST, (0, 1))


def connect(members, log: Path, conv: str, bn: str, *extra) -> Path:
    argv = FAST + ["--conv-type", conv, "--bn-type", bn, "--trainer", "train_one_dim_subspaces", "--save", "--log-dir", str(log),
                   "--name", conv, "--init-endpoints", ",".join(map(str, members)), *extra]
    summary = main_mod.main(parse_args(argv))
    assert summary.curr_acc1 > 0.5 and math.isfinite(summary.train_loss)
    return final_ckpt(log / f"{conv}+try=0")


def bn_batches(settings: Settings) -> list:
    data = get_dataset(settings)
    data.set_epoch(0)
    return list(data.bn_loader), data


def outputs(net: nn.Module, batches: list, data) -> torch.Tensor:
    update_bn(batches, net)
    return predict(net, data.val_loader, torch.device("cpu")).logits


def test_curve_with_fixed_ends_reproduces_the_loaded_networks(members, tmp_path):
    """A cubic Bezier between two trained networks, ends fixed, one epoch: the ends are unchanged,
    the control points moved, and t = 0 / t = 1 give the loaded networks' outputs exactly (after
    recomputing BatchNorm statistics with the same batches on both sides)."""
    ck = connect(members, tmp_path, "BezierConv3", "BezierBN3", "--fix-endpoints", "--wd", "0.01")
    saved = load_checkpoint(ck)
    sd = saved["state_dicts"][0]
    s = Settings.from_dict(saved["settings"])
    assert s.init_endpoints == tuple(map(str, members)) and s.fix_endpoints
    ends = [load_checkpoint(m)["state_dicts"][0] for m in members]
    assert torch.equal(sd["convs.0.weight"], ends[0]["convs.0.weight"]) and torch.equal(sd["fc.weight1"], ends[1]["fc.weight"])
    on_line = ends[0]["convs.0.weight"] + (ends[1]["convs.0.weight"] - ends[0]["convs.0.weight"]) / 3
    assert not torch.allclose(sd["convs.0.weight2"], on_line, atol=1e-4)  # the control point trained
    batches, data = bn_batches(s)
    sub = main_mod.build_model(s, data)
    sub.load_state_dict(sd)
    for t, end in ((0.0, ends[0]), (1.0, ends[1])):
        plain = main_mod.build_model(replace(s, conv_type="StandardConv", bn_type="StandardBN"), data)
        plain.load_state_dict(end)
        set_point(sub, (t,))
        assert torch.equal(outputs(sub, batches, data), outputs(plain, batches, data))
    # the optimizer held only the inner tensors: no momentum buffer for an end
    assert len(saved["optimizers"][0]["state"]) == sum(1 for k in sd if k.endswith(("2", "3")) and "running" not in k)


def test_polychain_with_two_bends_trains_and_is_evaluated_along_the_grid(members, tmp_path):
    ck = connect(members, tmp_path, "PolyChainConv2", "PolyChainBN2")
    log = tmp_path / "eval"
    argv = ["--set", "Digits", "--conv-type", "PolyChainConv2", "--bn-type", "PolyChainBN2", "--trainer", "eval_one_dim_subspaces",
            "--resume", str(ck), "--pretrained", "--epochs", "0", "--update-bn", "--alphas", "0,0.5,1", "--save-data", "--log-dir", str(log)]
    assert main_mod.cli(argv) == 0
    rows = read_results(log / "results.csv")
    assert [float(r["alpha1"]) for r in rows] == [1.0, 0.5, 0.0] and all(float(r["curr_acc1"]) > 0.5 for r in rows)


def test_the_straight_line_between_two_networks(members, tmp_path):
    """eval_one_dim_subspaces with --init-endpoints and LinesConv: the line between two trained
    networks, no training; its end alpha = 0 scores the first network with recomputed statistics."""
    log = tmp_path / "line"
    argv = ["--set", "Digits", "--conv-type", "LinesConv", "--bn-type", "LinesBN", "--trainer", "eval_one_dim_subspaces",
            "--init-endpoints", f"{members[0]},{members[1]}", "--update-bn", "--alpha1", "0", "--alpha0", "0.5", "--no-channels-last",
            "--seed", "0"]  # the member's seed: the same shuffled BatchNorm batches
    summary = main_mod.main(parse_args(argv + ["--log-dir", str(log)]))
    s = Settings.from_dict(load_checkpoint(members[0])["settings"])
    batches, data = bn_batches(s)
    plain = main_mod.build_model(s, data)
    plain.load_state_dict(load_checkpoint(members[0])["state_dicts"][0])
    acc = (outputs(plain, batches, data).argmax(1) == torch.cat([y for _, y in data.val_loader])).float().mean().item()
    assert summary.curr_acc1 == pytest.approx(acc, abs=1e-9)


def _bad(argv, tmp_path, capsys, expect):
    log = tmp_path / "badlog"
    rc = main_mod.cli([str(a) for a in argv] + ["--log-dir", str(log), "--save", "--name", "bad"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err
    assert not log.exists() or not list(log.iterdir())


BEZ = ["--conv-type", "BezierConv3", "--bn-type", "BezierBN3", "--trainer", "train_one_dim_subspaces"]


def test_bad_endpoint_input(members, tmp_path, capsys):
    a, b = map(str, members)
    _bad(FAST + BEZ + ["--init-endpoints", a], tmp_path, capsys, "has 2 endpoints; pass 2")
    _bad(FAST + ["--conv-type", "SimplexConv3", "--bn-type", "SimplexBN3", "--trainer", "train_simplexes", "--init-endpoints", f"{a},{b}"],
         tmp_path, capsys, "has 3 endpoints; pass 3")
    _bad(FAST + BEZ + ["--fix-endpoints"], tmp_path, capsys, "pass --init-endpoints")
    _bad(FAST + ["--init-endpoints", f"{a},{b}"], tmp_path, capsys, "does not take --init-endpoints")
    _bad(FAST + ["--conv-type", "LinesConv", "--bn-type", "LinesBN", "--trainer", "train_one_dim_subspaces", "--init-endpoints", f"{a},{b}",
                 "--fix-endpoints"], tmp_path, capsys, "leaves nothing to train")
    _bad(FAST + BEZ + ["--init-endpoints", f"{a},{tmp_path / 'missing.pt'}"], tmp_path, capsys, "pass an existing file to --init-endpoints")
    # another architecture: a standard network twice as wide
    wide = replace(Settings(), model="DigitsConvNet", output_size=10, width_mult=2.0)
    net = main_mod.build_model(wide, SimpleNamespace(in_channels=1))
    save_checkpoint(tmp_path / "wide.pt", {"state_dicts": [net.state_dict()], "settings": wide.to_dict()})
    _bad(FAST + BEZ + ["--init-endpoints", f"{a},{tmp_path / 'wide.pt'}"], tmp_path, capsys, "wide.pt does not fit the model as an endpoint")
    # a subspace checkpoint is not a network
    line = replace(Settings(), model="DigitsConvNet", output_size=10, conv_type="LinesConv", bn_type="LinesBN")
    save_checkpoint(tmp_path / "line.pt", {"state_dicts": [main_mod.build_model(line, SimpleNamespace(in_channels=1)).state_dict()], "settings": line.to_dict()})
    _bad(FAST + BEZ + ["--init-endpoints", f"{a},{tmp_path / 'line.pt'}"], tmp_path, capsys, "takes standard networks")
