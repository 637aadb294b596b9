"""The subspace layers (lines, curves, simplexes) against plain layers with hand-combined weights.

Every expected value here is computed by hand from the paper's formulas and the original's names
(``weight``, ``weight1``, ...), never through the code under test.
"""
from __future__ import annotations

import copy
import math
import pickle
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from subspaces import modes
from subspaces.modes import (
                             SubspaceBN,
                             SubspaceConv,
                             SubspaceLayer,
                             conv_layers,
                             cosine_regulariser,
                             endpoint_stats,
                             get_layer_type,
                             sample_and_set,
                             subspace_layers,
                             )
from subspaces.modes.coefficients import CurveCoefficients, LineCoefficients, SimplexCoefficients
from subspaces.utils.errors import UserError

# --- the paper's coefficients, by hand -------------------------------------------------------------


def line_coeffs(point):
    (a,) = point
    return [1 - a, a]


def curve_coeffs(point):
    # (weight, weight1, weight2): the endpoints first, the control point last
    (a,) = point
    return [(1 - a) ** 2, a**2, 2 * a * (1 - a)]


def simplex_coeffs(point):
    return [1 - sum(point), *point]


# (prefix, suffix, tensors, hand coefficients, vertex points)
KINDS = {
    "lines": ("Lines", "", 2, line_coeffs, [(0.0,), (1.0,)]),
    "curves": ("Curves", "", 3, curve_coeffs, [(0.0,), (1.0,)]),
    "simplex4": ("Simplex", "4", 4, simplex_coeffs, [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]),
}


def layer_type(kind: str, family: str) -> type:
    prefix, suffix, *_ = KINDS[kind]
    return get_layer_type(f"{prefix}{family}{suffix}")


def random_point(kind: str, gen: torch.Generator) -> tuple:
    """An interior point with all coefficients clearly nonzero."""
    k = KINDS[kind][2]
    if kind in ("lines", "curves"):
        return (0.15 + 0.7 * torch.rand(1, generator=gen).item(),)
    z = torch.rand(k, generator=gen, dtype=torch.float64) + 0.2
    z = z / z.sum()
    return tuple(z[1:].tolist())


def endpoint_names(name: str, k: int) -> list:
    return [name] + [f"{name}{i}" for i in range(1, k)]


def randomise(layer: nn.Module, gen: torch.Generator) -> None:
    """Give every endpoint distinct random values (BN endpoints start out identical)."""
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))


def by_hand(layer: nn.Module, name: str, coeffs: list) -> torch.Tensor:
    """``sum_i c_i * getattr(layer, name_i)``, looked up by the original's names."""
    tensors = [getattr(layer, n).detach() for n in endpoint_names(name, len(coeffs))]
    return sum(c * t for c, t in zip(coeffs, tensors))


FAMILIES = ["Conv", "BN-train", "BN-eval", "Linear"]


def make_layer(kind: str, family: str) -> nn.Module:
    if family == "Conv":
        return layer_type(kind, "Conv")(3, 5, kernel_size=3, stride=2, padding=1, bias=True)
    if family.startswith("BN"):
        return layer_type(kind, "BN")(5)
    return layer_type(kind, "Linear")(7, 4)


def make_input(family: str, gen: torch.Generator) -> torch.Tensor:
    if family == "Conv":
        return torch.randn(4, 3, 9, 9, generator=gen)
    if family.startswith("BN"):
        return torch.randn(6, 5, 4, 4, generator=gen) * 2 + 1
    return torch.randn(4, 7, generator=gen)


def plain_forward(family: str, layer: nn.Module, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, stats=None):
    """The plain layer's computation with the given (combined) weights."""
    if family == "Conv":
        return F.conv2d(x, w, b, stride=2, padding=1)
    if family == "Linear":
        return F.linear(x, w, b)
    mean, var = stats
    return F.batch_norm(x, mean, var, w, b, training=(family == "BN-train"), momentum=0.1, eps=layer.eps)


# --- a subspace layer at a point is the plain layer with the combined weights -----------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_layer_equals_plain_layer_with_combined_weights(kind, family):
    gen = torch.Generator().manual_seed(list(KINDS).index(kind) * 10 + FAMILIES.index(family))
    _, _, k, hand, _ = KINDS[kind]
    layer = make_layer(kind, family)
    randomise(layer, gen)
    point = random_point(kind, gen)
    layer.set_point(point)
    coeffs = hand(point)
    assert all(abs(c) > 1e-3 for c in coeffs)
    x = make_input(family, gen)

    stats = None
    if family.startswith("BN"):
        with torch.no_grad():
            layer.running_mean.copy_(torch.randn(5, generator=gen))
            layer.running_var.copy_(torch.rand(5, generator=gen) + 0.5)
        stats = (layer.running_mean.clone(), layer.running_var.clone())
    layer.train(family != "BN-eval")

    # the reference, with the combined weights as leaves so we get d loss / d w
    w = by_hand(layer, "weight", coeffs).requires_grad_()
    b = by_hand(layer, "bias", coeffs).requires_grad_()
    expected = plain_forward(family, layer, x, w, b, stats)
    g_out = torch.randn(expected.shape, generator=gen)
    (expected * g_out).sum().backward()

    out = layer(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    if family.startswith("BN"):
        # running statistics: updated in training (shared by all endpoints), untouched in eval
        torch.testing.assert_close(layer.running_mean, stats[0])
        torch.testing.assert_close(layer.running_var, stats[1])

    # every endpoint gets a gradient: d loss / d w_i = c_i * d loss / d w
    (out * g_out).sum().backward()
    for name, g_ref in (("weight", w.grad), ("bias", b.grad)):
        for c, n in zip(coeffs, endpoint_names(name, k)):
            g = getattr(layer, n).grad
            assert g is not None, n
            assert g.abs().sum() > 0, n
            torch.testing.assert_close(g, c * g_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_vertices_are_the_plain_layer_with_that_endpoint(kind, family):
    """alpha = 0 / 1 (lines, curves) and the simplex vertices select one endpoint alone."""
    gen = torch.Generator().manual_seed(7)
    _, _, k, _, vertices = KINDS[kind]
    layer = make_layer(kind, family)
    randomise(layer, gen)
    x = make_input(family, gen)
    layer.train(family != "BN-eval")
    for i, point in enumerate(vertices):
        assert layer.coefficients.vertex(i) == point
        layer.set_point(point)
        if family == "Conv":
            plain = nn.Conv2d(3, 5, kernel_size=3, stride=2, padding=1, bias=True)
        elif family == "Linear":
            plain = nn.Linear(7, 4)
        else:
            plain = nn.BatchNorm2d(5)
        plain.train(layer.training)
        suffix = "" if i == 0 else str(i)
        with torch.no_grad():
            plain.weight.copy_(getattr(layer, f"weight{suffix}"))
            plain.bias.copy_(getattr(layer, f"bias{suffix}"))
            if family.startswith("BN"):
                plain.running_mean.copy_(layer.running_mean)
                plain.running_var.copy_(layer.running_var)
            torch.testing.assert_close(layer(x), plain(x), rtol=0, atol=1e-6)
            if family.startswith("BN"):
                torch.testing.assert_close(layer.running_mean, plain.running_mean)
                torch.testing.assert_close(layer.running_var, plain.running_var)


def test_curve_midpoint_uses_the_control_point():
    """At alpha = 0.5 a curve is w/4 + w1/4 + w2/2: weight2 is the control point, not an endpoint."""
    layer = get_layer_type("CurvesConv")(2, 2, kernel_size=1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(4.0)
        layer.weight1.fill_(8.0)
        layer.weight2.fill_(100.0)
    layer.set_point((0.5,))
    assert torch.all(layer.get_weight() == 1.0 + 2.0 + 50.0)


def test_default_point_is_the_centre():
    assert get_layer_type("LinesConv")(1, 1, 1).point == (0.5,)
    assert get_layer_type("CurvesBN")(1).point == (0.5,)
    assert get_layer_type("SimplexConv4")(1, 1, 1).point == pytest.approx((0.25, 0.25, 0.25))


def test_point_lives_in_the_original_attributes():
    """The original sets ``alpha`` / ``t<i>`` with setattr: those attributes are the point."""
    line = get_layer_type("LinesConv")(2, 2, kernel_size=1)
    line.alpha = 1.0
    torch.testing.assert_close(line.get_weight(), line.weight1)
    simplex = get_layer_type("SimplexConv3")(2, 2, kernel_size=1)
    simplex.t1, simplex.t2 = 0.0, 1.0
    torch.testing.assert_close(simplex.get_weight(), simplex.weight2)
    with pytest.raises(ValueError):
        simplex.set_point((0.5,))


# --- names ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_state_dict_names(kind):
    k = KINDS[kind][2]
    conv = make_layer(kind, "Conv")
    assert set(conv.state_dict()) == set(endpoint_names("weight", k) + endpoint_names("bias", k))
    nobias = layer_type(kind, "Conv")(3, 5, kernel_size=3, bias=False)
    assert set(nobias.state_dict()) == set(endpoint_names("weight", k))
    linear = make_layer(kind, "Linear")
    assert set(linear.state_dict()) == set(endpoint_names("weight", k) + endpoint_names("bias", k))
    bn = make_layer(kind, "BN")
    # the running statistics are shared: one running_mean / running_var, not one per endpoint
    assert set(bn.state_dict()) == set(
        endpoint_names("weight", k) + endpoint_names("bias", k) + ["running_mean", "running_var", "num_batches_tracked"]
    )
    for layer in (conv, bn, linear):
        assert layer.num_tensors == k
        for n in endpoint_names("weight", k):
            assert getattr(layer, n).shape == layer.weight.shape
    # BN endpoints start at weight 1, bias 0; conv endpoints independently
    assert all(torch.all(getattr(bn, n) == 1) for n in endpoint_names("weight", k))
    assert all(torch.all(getattr(bn, n) == 0) for n in endpoint_names("bias", k))
    flat = [getattr(conv, n).flatten() for n in endpoint_names("weight", k)]
    assert all(not torch.equal(flat[i], flat[j]) for i in range(k) for j in range(i + 1, k))


def test_plain_checkpoint_loads_into_first_endpoint():
    plain = nn.Conv2d(2, 3, 3)
    layer = get_layer_type("LinesConv")(2, 3, 3)
    missing, unexpected = layer.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["bias1", "weight1"] and not unexpected
    assert torch.equal(layer.weight, plain.weight)


def test_simplex_layers_pickle():
    """Whole models with generated SimplexConv<n> types survive pickle (torch.save) and deepcopy."""
    layer = get_layer_type("SimplexConv5")(2, 3, 3)
    layer.set_point((0.1, 0.2, 0.3, 0.0))
    for clone in (pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer)):
        assert type(clone) is type(layer) and clone.point == layer.point
        assert torch.equal(clone.weight4, layer.weight4)
    import subspaces.modes.modules as module

    assert module.SimplexConv5 is type(layer)
    assert not hasattr(module, "SimplexConv1") and not hasattr(module, "NoSuchLayer")


# --- BatchNorm statistics -------------------------------------------------------------------------


@pytest.mark.parametrize("bn_type", ["LinesBN", "CurvesBN", "SimplexBN4"])
def test_bn_momentum_none_is_a_cumulative_average(bn_type):
    gen = torch.Generator().manual_seed(3)
    bn = get_layer_type(bn_type)(4)
    randomise(bn, gen)
    bn.momentum = None
    bn.reset_running_stats()
    bn.train()
    batches = [torch.randn(5, 4, 3, 3, generator=gen) * (i + 1) + i for i in range(4)]
    for x in batches:
        bn(x)
    means = torch.stack([x.mean(dim=(0, 2, 3)) for x in batches])
    vars_ = torch.stack([x.transpose(0, 1).reshape(4, -1).var(dim=1, unbiased=True) for x in batches])
    torch.testing.assert_close(bn.running_mean, means.mean(0))
    torch.testing.assert_close(bn.running_var, vars_.mean(0))
    assert int(bn.num_batches_tracked) == len(batches)


def test_update_bn_recomputes_statistics_at_the_point():
    """torch.optim.swa_utils.update_bn on a subspace model gives the plain model's statistics."""
    gen = torch.Generator().manual_seed(4)
    conv_t, bn_t = get_layer_type("LinesConv"), get_layer_type("LinesBN")
    sub = nn.Sequential(conv_t(2, 3, 3, bias=False), bn_t(3))
    randomise(sub, gen)
    sub[1].running_mean.fill_(123.0)
    modes.set_point(sub, (0.3,))
    plain = nn.Sequential(nn.Conv2d(2, 3, 3, bias=False), nn.BatchNorm2d(3))
    with torch.no_grad():
        plain[0].weight.copy_(0.7 * sub[0].weight + 0.3 * sub[0].weight1)
        plain[1].weight.copy_(0.7 * sub[1].weight + 0.3 * sub[1].weight1)
        plain[1].bias.copy_(0.7 * sub[1].bias + 0.3 * sub[1].bias1)
    loader = [torch.randn(8, 2, 6, 6, generator=gen) for _ in range(3)]
    torch.optim.swa_utils.update_bn(loader, sub)
    torch.optim.swa_utils.update_bn(loader, plain)
    torch.testing.assert_close(sub[1].running_mean, plain[1].running_mean)
    torch.testing.assert_close(sub[1].running_var, plain[1].running_var)
    sub.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(sub(loader[0]), plain(loader[0]), rtol=1e-5, atol=1e-5)


# --- layer types by name -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["LineConv", "Conv", "SimplexConv1", "SimplexConv0", "SimplexConv", "simplexconv3"])
def test_unknown_layer_types(bad):
    with pytest.raises(UserError) as e:
        get_layer_type(bad)
    msg = str(e.value)
    for valid in ("StandardConv", "LinesConv", "CurvesConv", "SimplexConv<n>"):
        assert valid in msg


def test_layer_type_of_another_family():
    with pytest.raises(UserError, match="LinesBN"):
        get_layer_type("LinesConv", "BN")
    with pytest.raises(UserError):
        get_layer_type("SimplexBN3", "Conv")
    assert get_layer_type("SimplexBN3", "BN") is get_layer_type("SimplexBN3")


def test_any_simplex_size():
    t = get_layer_type("SimplexConv7")
    assert t is get_layer_type("SimplexConv7")  # one class per n
    assert issubclass(t, SubspaceConv) and t.__name__ == "SimplexConv7"
    layer = t(2, 3, 3, bias=False)
    assert layer.num_tensors == 7 and layer.point == pytest.approx((1 / 7,) * 6)
    assert set(layer.state_dict()) == {"weight", *(f"weight{i}" for i in range(1, 7))}
    bn = get_layer_type("SimplexBN7")(3)
    assert isinstance(bn, SubspaceBN) and hasattr(bn, "bias6") and not hasattr(bn, "bias7")
    two = get_layer_type("SimplexConv2")(1, 1, 1)  # a simplex of 2 is a line
    assert two.num_tensors == 2


def test_standard_types_are_plain_layers():
    assert get_layer_type("StandardConv") is nn.Conv2d
    assert get_layer_type("StandardBN") is nn.BatchNorm2d
    assert get_layer_type("StandardLinear") is nn.Linear


# --- coefficient functions and sampling --------------------------------------------------------------


def test_coefficient_functions():
    assert LineCoefficients()((0.3,)) == pytest.approx(line_coeffs((0.3,)))
    assert CurveCoefficients()((0.3,)) == pytest.approx(curve_coeffs((0.3,)))
    assert SimplexCoefficients(4)((0.1, 0.2, 0.3)) == pytest.approx(simplex_coeffs((0.1, 0.2, 0.3)))
    assert LineCoefficients().centre() == (0.5,)
    assert SimplexCoefficients(5).centre() == pytest.approx((0.2,) * 4)
    with pytest.raises(ValueError):
        SimplexCoefficients(1)


@pytest.mark.parametrize("coeffs", [LineCoefficients(), CurveCoefficients()], ids=["line", "curve"])
def test_line_samples_are_uniform(coeffs):
    n = 20000
    s = coeffs.sample(n, torch.Generator().manual_seed(0))
    assert s.shape == (n, 1)
    assert s.min() >= 0 and s.max() <= 1
    assert abs(s.mean().item() - 0.5) < 0.01
    assert abs(s.var().item() - 1 / 12) < 0.005
    counts = torch.histc(s.float(), bins=10, min=0, max=1)
    assert (counts - n / 10).abs().max() < 5 * math.sqrt(n / 10)


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_simplex_samples_are_uniform_on_the_simplex(n):
    count = 20000
    s = SimplexCoefficients(n).sample(count, torch.Generator().manual_seed(0))
    assert s.shape == (count, n - 1)
    assert (s >= 0).all() and (s.sum(1) <= 1 + 1e-9).all()
    # uniform on the simplex: each coordinate (t_i and 1 - sum t) is Beta(1, n - 1)
    full = torch.cat([1 - s.sum(1, keepdim=True), s], dim=1)
    mean, var = 1 / n, (n - 1) / (n**2 * (n + 1))
    assert (full.mean(0) - mean).abs().max() < 0.01
    assert (full.var(0) - var).abs().max() < 0.1 * var
    # P(t_1 > 1/2) = (1/2)^(n-1) for the uniform distribution
    assert abs((full[:, 1] > 0.5).double().mean().item() - 0.5 ** (n - 1)) < 0.015


@pytest.mark.parametrize("coeffs", [LineCoefficients(), SimplexCoefficients(4)], ids=["line", "simplex"])
def test_samples_follow_the_generator(coeffs):
    a = coeffs.sample(5, torch.Generator().manual_seed(11))
    b = coeffs.sample(5, torch.Generator().manual_seed(11))
    c = coeffs.sample(5, torch.Generator().manual_seed(12))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(set(a[:, 0].tolist())) == 5  # five draws, five points


# --- model-level helpers -------------------------------------------------------------------------------


class Small(nn.Module):
    """Convs of different shapes, BNs, a linear head and one plain conv."""

    def __init__(self, prefix: str, suffix: str = ""):
        super().__init__()
        conv = get_layer_type(f"{prefix}Conv{suffix}")
        bn = get_layer_type(f"{prefix}BN{suffix}")
        self.c1, self.b1 = conv(2, 4, 3, bias=False), bn(4)
        self.plain = nn.Conv2d(4, 4, 1)
        self.c2, self.b2 = conv(4, 6, 1, bias=False), bn(6)
        self.c3 = conv(6, 3, 5, bias=False)
        self.head = get_layer_type(f"{prefix}Linear{suffix}")(3, 2)


def hand_cos2(model: nn.Module, i: int, j: int) -> float:
    """(sum <w_i, w_j>)^2 / (sum |w_i|^2 sum |w_j|^2) over the subspace convs, by name."""
    names = ["weight", "weight1", "weight2", "weight3"]
    convs = [model.c1, model.c2, model.c3]
    wi = torch.cat([getattr(m, names[i]).detach().flatten() for m in convs]).double()
    wj = torch.cat([getattr(m, names[j]).detach().flatten() for m in convs]).double()
    return float((wi @ wj) ** 2 / ((wi @ wi) * (wj @ wj)))


def test_cosine_regulariser_by_hand():
    torch.manual_seed(0)
    model = Small("Curves")
    # make the endpoints correlated and of different scales per layer, so that concatenating
    # and averaging per layer give clearly different values
    with torch.no_grad():
        model.c1.weight1.add_(3 * model.c1.weight)
        model.c2.weight2.mul_(10).add_(-20 * model.c2.weight)
    convs = conv_layers(model)
    assert convs == [model.c1, model.c2, model.c3]
    for i, j in [(0, 1), (0, 2), (1, 2), (2, 0)]:
        val = cosine_regulariser(convs, i, j)
        assert val.item() == pytest.approx(hand_cos2(model, i, j), rel=1e-5)
    per_layer = sum(cosine_regulariser([m], 0, 1).item() for m in convs) / 3
    assert per_layer != pytest.approx(hand_cos2(model, 0, 1), rel=1e-2)
    # differentiable, and only the two chosen endpoints get a gradient
    cosine_regulariser(convs, 0, 2).backward()
    assert model.c1.weight.grad is not None and model.c1.weight.grad.abs().sum() > 0
    assert model.c3.weight2.grad is not None and model.c3.weight2.grad.abs().sum() > 0
    assert model.c1.weight1.grad is None or model.c1.weight1.grad.abs().sum() == 0
    assert model.plain.weight.grad is None and model.head.weight.grad is None


def test_endpoint_stats_opposite_line():
    torch.manual_seed(0)
    model = Small("Lines")
    with torch.no_grad():
        for m in (model.c1, model.c2, model.c3):
            m.weight1.copy_(-m.weight)
    w = torch.cat([m.weight.detach().flatten() for m in (model.c1, model.c2, model.c3)])
    cossim, l2 = endpoint_stats(model)
    assert cossim == pytest.approx(1.0, rel=1e-5)
    assert l2 == pytest.approx((2 * w).norm().item(), rel=1e-5)


def test_endpoint_stats_simplex_averages_over_pairs():
    torch.manual_seed(0)
    model = Small("Simplex", "3")
    convs = (model.c1, model.c2, model.c3)
    flat = [torch.cat([getattr(m, n).detach().flatten() for m in convs]).double() for n in ("weight", "weight1", "weight2")]
    pairs = [(0, 1), (0, 2), (1, 2)]
    cos = sum(hand_cos2(model, i, j) for i, j in pairs) / 3
    l2 = math.sqrt(sum(float((flat[i] - flat[j]).pow(2).sum()) for i, j in pairs) / 3)
    got = endpoint_stats(model)
    assert got == pytest.approx((cos, l2), rel=1e-5)
    assert endpoint_stats(nn.Sequential(nn.Conv2d(1, 1, 1))) == (0.0, 0.0)


def test_subspace_layers_found_by_base_class():
    model = Small("Lines")
    found = subspace_layers(model)
    assert found == [model.c1, model.b1, model.c2, model.b2, model.c3, model.head]
    assert model.plain not in found and all(isinstance(m, SubspaceLayer) for m in found)

    class MyConv(SubspaceConv):  # a new kind of subspace conv is found without registering it
        coefficients = LineCoefficients()

    seq = nn.Sequential(nn.Conv2d(1, 1, 1), MyConv(1, 1, 1), nn.BatchNorm2d(1))
    assert subspace_layers(seq) == [seq[1]]
    assert conv_layers(seq) == [seq[1]]
    assert modes.subspace_coefficients(seq) == LineCoefficients()
    assert modes.subspace_coefficients(nn.Sequential(nn.Conv2d(1, 1, 1))) is None
    with pytest.raises(ValueError):
        modes.subspace_coefficients(nn.Sequential(MyConv(1, 1, 1), get_layer_type("CurvesBN")(1)))


@pytest.mark.parametrize("prefix,suffix", [("Lines", ""), ("Curves", ""), ("Simplex", "4")])
def test_sample_and_set(prefix, suffix):
    model = Small(prefix, suffix)
    layers = subspace_layers(model)
    coeffs = layers[0].coefficients
    gen = torch.Generator().manual_seed(0)

    point = sample_and_set(layers, coeffs, gen, layerwise=False)
    assert all(m.point == pytest.approx(point) for m in layers)
    assert point != pytest.approx(coeffs.centre())
    if prefix == "Simplex":
        assert min(point) >= 0 and sum(point) <= 1

    point2 = sample_and_set(layers, coeffs, gen, layerwise=True)
    points = [m.point for m in layers]
    assert len(set(points)) == len(layers)  # every layer its own point
    assert points[0] == pytest.approx(point2)
    assert point2 != pytest.approx(point)

    # the same generator state gives the same points
    again = Small(prefix, suffix)
    sample_and_set(subspace_layers(again), coeffs, torch.Generator().manual_seed(0), layerwise=False)
    assert subspace_layers(again)[0].point == pytest.approx(point)


def test_set_point_on_a_model():
    model = Small("Simplex", "3")
    modes.set_point(model, (0.2, 0.5))
    assert all(m.point == (0.2, 0.5) for m in subspace_layers(model))
    with pytest.raises(ValueError):
        modes.set_points(subspace_layers(model), torch.zeros(2, 2))


def test_endpoint_pair_is_two_distinct_indices_covering_all_tensors():
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(200):
        i, j = modes.endpoint_pair(3, gen)
        assert i != j and 0 <= i < 3 and 0 <= j < 3
        seen.add((min(i, j), max(i, j)))
    assert seen == {(0, 1), (0, 2), (1, 2)}  # curves: the control point is drawn too
