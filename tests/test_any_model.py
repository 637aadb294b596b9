"""Any model as a subspace: ``modes.subspace`` converts a user's ``nn.Module`` in place, through the
same layer mechanism (``SubspaceLayer`` + ``Coefficients``), and the trainers, the evaluation and
the export of a plain network work on it (torchvision's resnet18, a small transformer).
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from subspaces import modes
from subspaces.args import Settings
from subspaces.trainers import RunContext, get_trainer
from subspaces.trainers.evaluate import Evaluator
from subspaces.utils.bn import update_bn
from subspaces.utils.errors import UserError
from subspaces.utils.evaluation import predict
from subspaces.utils.optim import get_optimizer

ROOT = Path(__file__).resolve().parents[1]


def endpoint_names(name: str, k: int) -> list:
    return [name] + [f"{name}{i}" for i in range(1, k)]


# (make the plain layer, an input, the plain computation with given parameters)
LAYERS = {
    "Conv1d": (lambda: nn.Conv1d(3, 4, 3, padding=1), lambda g: torch.randn(2, 3, 7, generator=g),
               lambda m, x, p: F.conv1d(x, p["weight"], p["bias"], padding=1)),
    "Conv3d": (lambda: nn.Conv3d(2, 3, 3, stride=2, bias=False), lambda g: torch.randn(2, 2, 5, 5, 5, generator=g),
               lambda m, x, p: F.conv3d(x, p["weight"], None, stride=2)),
    "ConvTranspose2d": (lambda: nn.ConvTranspose2d(3, 2, 3, stride=2), lambda g: torch.randn(2, 3, 4, 4, generator=g),
                        lambda m, x, p: F.conv_transpose2d(x, p["weight"], p["bias"], stride=2)),
    "BatchNorm1d": (lambda: nn.BatchNorm1d(4), lambda g: torch.randn(6, 4, generator=g) * 3 + 1,
                    lambda m, x, p: F.batch_norm(x, m.running_mean.clone(), m.running_var.clone(), p["weight"], p["bias"], m.training)),
    "BatchNorm3d": (lambda: nn.BatchNorm3d(2), lambda g: torch.randn(3, 2, 2, 3, 3, generator=g),
                    lambda m, x, p: F.batch_norm(x, m.running_mean.clone(), m.running_var.clone(), p["weight"], p["bias"], m.training)),
    "LayerNorm": (lambda: nn.LayerNorm(5), lambda g: torch.randn(3, 4, 5, generator=g),
                  lambda m, x, p: F.layer_norm(x, (5,), p["weight"], p["bias"])),
    "GroupNorm": (lambda: nn.GroupNorm(2, 4), lambda g: torch.randn(3, 4, 3, generator=g),
                  lambda m, x, p: F.group_norm(x, 2, p["weight"], p["bias"])),
    "Embedding": (lambda: nn.Embedding(9, 4, padding_idx=0), lambda g: torch.randint(0, 9, (3, 5), generator=g),
                  lambda m, x, p: F.embedding(x, p["weight"], padding_idx=0)),
    "Linear": (lambda: nn.Linear(5, 3), lambda g: torch.randn(4, 5, generator=g), lambda m, x, p: F.linear(x, p["weight"], p["bias"])),
}


@pytest.mark.parametrize("kind,kw,point,coeffs", [
    ("lines", {}, (0.3,), [0.7, 0.3]),
    ("simplex", {"n": 3}, (0.2, 0.5), [0.3, 0.2, 0.5]),
    ("bezier", {"bends": 2}, (0.4,), [0.6**3, 0.4**3, 3 * 0.4 * 0.6**2, 3 * 0.4**2 * 0.6]),
], ids=["lines", "simplex3", "bezier3"])
@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_any_layer_at_a_point_is_the_plain_layer_with_combined_parameters(layer, kind, kw, point, coeffs, train):
    gen = torch.Generator().manual_seed(0)
    make, make_input, plain = LAYERS[layer]
    m = modes.subspace(nn.Sequential(make()), kind, **kw)[0]
    k = len(coeffs)
    assert type(m).__name__.startswith({"lines": "Lines", "simplex": "Simplex", "bezier": "Bezier"}[kind])
    names = list(m._endpoint_params)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    m.train(train)
    modes.set_point(m, point)
    combined = {n: sum(c * getattr(m, e).detach() for c, e in zip(coeffs, endpoint_names(n, k))).requires_grad_() for n in names}
    combined.setdefault("bias", None)
    x = make_input(gen)
    expected = plain(m, x, combined)
    g_out = torch.randn(expected.shape, generator=gen)
    (expected * g_out).sum().backward()
    out = m(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    (out * g_out).sum().backward()
    for n in names:
        for c, e in zip(coeffs, endpoint_names(n, k)):
            torch.testing.assert_close(getattr(m, e).grad, c * combined[n].grad, rtol=1e-4, atol=1e-5)
    assert isinstance(m.weight, nn.Parameter)  # the swapped-in tensors are put back


def test_endpoints_are_drawn_independently_by_each_layers_own_init():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(3, 8, 3), nn.BatchNorm1d(8), nn.LayerNorm(4), nn.Embedding(5, 4))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes.subspace(net, "simplex", n=3)
    sd = net.state_dict()
    for k, v in before.items():
        assert torch.equal(sd[k], v), k  # endpoint 0 is the model as it was
    conv = net[0]
    assert not torch.equal(conv.weight1, conv.weight2) and not torch.equal(conv.weight, conv.weight1)
    bound = 1 / (3 * 3) ** 0.5  # Conv1d.reset_parameters: kaiming_uniform(a=sqrt(5)) -> U(-1/sqrt(fan_in), ..)
    assert conv.weight1.abs().max() <= bound and conv.weight1.abs().max() > 0.8 * bound
    assert torch.all(net[1].weight2 == 1) and torch.all(net[2].bias1 == 0)  # BatchNorm/LayerNorm: ones and zeros
    assert net[3].weight1.std() > 0.5  # Embedding: N(0, 1)
    clone = pickle.loads(pickle.dumps(net))  # generated types (SimplexConv1d3, ...) pickle within the process
    assert type(clone[0]) is type(conv) and torch.equal(clone[0].weight2, conv.weight2) and clone[0].point == conv.point
    # init= replaces reset_parameters (e.g. torchvision's kaiming_normal fan_out convs)
    other = modes.subspace(nn.Sequential(nn.Linear(3, 2)), "lines", init=lambda m: nn.init.constant_(m.weight, 7.0))
    assert torch.all(other[0].weight1 == 7.0) and not torch.all(other[0].weight == 7.0)


def test_frozen_parameters_and_unconverted_modules_stay_shared():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return x * self.s

    net = nn.Sequential(nn.Linear(3, 3), Scale(), nn.Linear(3, 2))
    net[2].bias.requires_grad_(False)
    with pytest.warns(UserWarning, match="1 parameter"):
        modes.subspace(net, "lines")
    assert set(net.state_dict()) == {"0.weight", "0.bias", "0.weight1", "0.bias1", "1.s", "2.weight", "2.bias", "2.weight1"}


def test_kinds_and_bad_input():
    assert type(modes.subspace(nn.Sequential(nn.Conv2d(1, 1, 1)), "curves")[0]).__name__ == "CurvesConv"
    assert modes.subspace(nn.Sequential(nn.Linear(1, 1)), "polychain", bends=2)[0].num_tensors == 4
    assert modes.subspace(nn.Sequential(nn.Linear(1, 1)), "bezier", bends=1)[0].coefficients == modes.BezierCoefficients(2)
    with pytest.raises(UserError, match="lines, curves, simplex, bezier, polychain|bezier, curves, lines"):
        modes.subspace(nn.Linear(1, 1), "plane")
    with pytest.raises(UserError, match="pass n="):
        modes.subspace(nn.Linear(1, 1), "simplex")
    with pytest.raises(UserError, match="neither"):
        modes.subspace(nn.Linear(1, 1), "lines", n=3)
    done = modes.subspace(nn.Sequential(nn.Linear(1, 1)), "lines")
    with pytest.raises(UserError, match="already has subspace layers"):
        modes.subspace(done, "lines")
    with pytest.raises(UserError, match="max_norm"):
        modes.subspace(nn.Embedding(3, 2, max_norm=1.0), "lines")


# --- torchvision resnet18 ----------------------------------------------------------------------------


def resnet_line() -> nn.Module:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10)
    return modes.subspace(net, "lines")


def test_resnet18_trains_as_a_line_and_exports_a_plain_resnet18():
    net = resnet_line()
    layers = modes.subspace_layers(net)
    assert type(net.conv1).__name__ == "LinesConv" and type(net.fc).__name__ == "LinesLinear"
    assert len(modes.conv_layers(net)) == 20  # Eq. 3 runs over its convolutions
    assert "layer1.0.conv1.weight1" in net.state_dict() and "layer1.0.bn1.running_mean" in net.state_dict()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 3, 32, 32, generator=gen), torch.randint(0, 10, (4,), generator=gen)
    # Algorithm 1 through the project's own trainer: a random alpha per batch, Eq. 3 with beta 1
    s = Settings(conv_type="LinesConv", bn_type="LinesBN", trainer="train_one_dim_subspaces", beta=1.0, lr=0.01)
    ctx = RunContext([net], [get_optimizer(s, net)], None, nn.CrossEntropyLoss(), torch.device("cpu"))
    trainer = get_trainer("train_one_dim_subspaces")(s)
    state = trainer.begin_epoch(ctx, 0)
    net.train()
    alphas = []
    for _ in range(3):
        loss, _ = trainer.train_step(ctx, state, x, y)
        assert torch.isfinite(loss)
        alphas.append(layers[0].alpha)
    assert len(set(alphas)) == 3
    for name in ("conv1", "layer4.1.conv2", "fc", "bn1"):
        m = net.get_submodule(name)
        assert m.weight.grad.abs().sum() > 0 and m.weight1.grad.abs().sum() > 0, name

    # the midpoint, BatchNorm recomputed there, through the evaluation grid's Evaluator (the model
    # has no forward_with_features: no features are asked for)
    bn = [(torch.randn(4, 3, 32, 32, generator=gen), y) for _ in range(2)]
    data = SimpleNamespace(bn_loader=bn, val_loader=[(x, y)], set_epoch=lambda e: None)
    ev = Evaluator(s, RunContext([net], [None], data, None, torch.device("cpu")), net, update_bn)
    mid = ev.outputs((0.5,), True)
    assert not ev.with_features and mid.features is None and mid.logits.shape == (4, 10)

    # exported: a fresh torchvision resnet18 loads the point's state dict and computes the same
    plain = torchvision.models.resnet18(weights=None, num_classes=10)
    plain.load_state_dict(modes.plain_state_dict(net))  # strict
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(x), mid.logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(plain.layer1[0].conv1.weight, 0.5 * (net.layer1[0].conv1.weight + net.layer1[0].conv1.weight1))


# --- a transformer block -----------------------------------------------------------------------------


class TinyTransformer(nn.Module):
    """Embedding, one encoder layer (multi-head attention, feed-forward, LayerNorms), a head."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 16)
        self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True), 1, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 3)

    def forward(self, tokens):
        return self.head(self.norm(self.enc(self.emb(tokens))).mean(1))


def test_transformer_attention_projections_are_subspaces_too():
    """MultiheadAttention's in_proj and out_proj (which it reads without calling) follow the point,
    in training and in the fused inference path a plain encoder layer takes under no_grad."""
    torch.manual_seed(0)
    net = modes.subspace(TinyTransformer(), "lines")
    attn = net.enc.layers[0].self_attn
    assert {"enc.layers.0.self_attn.in_proj_weight1", "enc.layers.0.self_attn.out_proj.weight1", "emb.weight1",
            "norm.bias1", "enc.layers.0.linear1.weight1"} <= set(net.state_dict())
    tokens = torch.randint(0, 20, (3, 6))
    modes.set_point(net, (0.3,))
    net(tokens).pow(2).sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing
    assert isinstance(attn.in_proj_weight, nn.Parameter) and isinstance(attn.out_proj.weight, nn.Parameter)

    net.eval()
    for point, tensors in (((0.3,), None), ((1.0,), 1)):
        modes.set_point(net, point)
        plain = TinyTransformer().eval()
        if tensors is None:
            plain.load_state_dict(modes.plain_state_dict(net))
        else:  # alpha = 1 by hand: each parameter's tensor 1 (``<name>1``) under the plain name
            sd = net.state_dict()
            extra = {k for k in sd if re.fullmatch(r".*\D\d+", k) and k.rstrip("0123456789") in sd}
            plain.load_state_dict({k: sd.get(k + "1", v) for k, v in sd.items() if k not in extra})
        with torch.no_grad():  # the plain layer takes its fused fast path here; the subspace must not
            torch.testing.assert_close(net(tokens), plain(tokens), rtol=1e-5, atol=1e-5)


def test_readme_snippet_runs():
    """The README's 'your own model as a line' snippet runs as written."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"## Your own model as a subspace.*?```python\n(.*?)```", text, re.S)
    assert m, "README section 'Your own model as a subspace' with a python snippet"
    scope: dict = {}
    exec(compile(m.group(1), "README.md", "exec"), scope)
    assert "plain" in scope and isinstance(scope["plain"], nn.Module)


# --- Eq. 3 on models without convolutions -----------------------------------------------------------


class Block(nn.Module):
    """One transformer encoder layer and a linear head: no convolution anywhere."""

    def __init__(self):
        super().__init__()
        self.enc = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.enc(x).mean(1))


def mlp():
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


# The weight tensors Eq. 3 runs over when a model has no convolution, written out by name.
EQ3_NAMES = {
    "mlp": ["0.weight", "2.weight"],
    "block": ["enc.self_attn.in_proj_weight", "enc.self_attn.out_proj.weight", "enc.linear1.weight", "enc.linear2.weight", "head.weight"],
}


def cos2_by_hand(net: nn.Module, names: list, i: int, j: int) -> float:
    """(sum <w_i, w_j>)^2 / (sum |w_i|^2 sum |w_j|^2), the tensors concatenated (Eq. 3)."""
    sd = dict(net.named_parameters())
    flat = lambda k: torch.cat([sd[n + (str(k) if k else "")].detach().double().flatten() for n in names])  # noqa: E731
    wi, wj = flat(i), flat(j)
    return float((wi @ wj) ** 2 / ((wi @ wi) * (wj @ wj)))


@pytest.mark.parametrize("which", ["mlp", "block"])
def test_eq3_trains_models_without_convolutions(which):
    """modes.subspace on an MLP or a transformer block, --beta 1: Eq. 3 runs over the linear and
    attention weights (equal to the formula by hand), the training step takes it without error,
    the loss falls and the regulariser's gradient reaches both endpoints."""
    torch.manual_seed(0)
    net = modes.subspace(mlp() if which == "mlp" else Block(), "lines")
    names = EQ3_NAMES[which]
    tensors = modes.regularised_tensors(net)
    by_name = {id(m): n for n, m in net.named_modules()}
    assert [f"{by_name[id(m)]}.{p}" for m, p in tensors] == names
    with torch.no_grad():  # endpoints that start almost parallel: Eq. 3 has something to push apart
        for n in names:
            net.get_parameter(n + "1").copy_(net.get_parameter(n) + 0.05 * torch.randn_like(net.get_parameter(n)))
    start = cos2_by_hand(net, names, 0, 1)
    assert start > 0.9
    assert modes.cosine_regulariser(tensors, 0, 1).item() == pytest.approx(start, rel=1e-5)
    assert modes.cosine_regulariser(tensors, 1, 0).item() == pytest.approx(start, rel=1e-5)
    cossim, l2 = modes.endpoint_stats(net)  # the logged statistics use the same tensors
    sd = dict(net.named_parameters())
    gap = torch.cat([(sd[n] - sd[n + "1"]).detach().flatten() for n in names]).norm().item()
    assert (cossim, l2) == pytest.approx((start, gap), rel=1e-5)

    modes.cosine_regulariser(tensors, 0, 1).backward()
    for n in names:
        assert net.get_parameter(n).grad.abs().sum() > 0 and net.get_parameter(n + "1").grad.abs().sum() > 0, n
    net.zero_grad()

    s = Settings(conv_type="LinesConv", bn_type="LinesBN", trainer="train_one_dim_subspaces", beta=1.0, lr=0.05, wd=0.0)
    ctx = RunContext([net], [get_optimizer(s, net)], None, nn.CrossEntropyLoss(), torch.device("cpu"))
    trainer = get_trainer("train_one_dim_subspaces")(s)
    trainer.check([net])
    state = trainer.begin_epoch(ctx, 0)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn((32, 6) if which == "mlp" else (32, 5, 8), generator=gen)
    y = torch.randint(0, 3, (32,), generator=gen)
    net.train()
    losses = [trainer.train_step(ctx, state, x, y)[0].item() for _ in range(40)]
    assert sum(losses[-5:]) < sum(losses[:5])
    assert cos2_by_hand(net, names, 0, 1) < 0.5 * start  # the regulariser pushed the endpoints apart


def test_eq3_on_a_model_without_eligible_tensors_is_refused_at_setup():
    net = modes.subspace(nn.Sequential(nn.Embedding(10, 4), nn.LayerNorm(4)), "lines")
    assert modes.regularised_tensors(net) == [] and modes.endpoint_stats(net) == (0.0, 0.0)
    s = Settings(conv_type="LinesConv", bn_type="LinesBN", trainer="train_one_dim_subspaces", beta=1.0)
    trainer = get_trainer("train_one_dim_subspaces")(s)
    for call in (lambda: trainer.check([net]), lambda: trainer.begin_epoch(RunContext([net], [None], None, None, torch.device("cpu")), 0)):
        with pytest.raises(UserError, match="--beta 0") as e:
            call()
        assert "\n" not in str(e.value)
    get_trainer("train_one_dim_subspaces")(Settings(beta=0.0)).check([net])  # without Eq. 3 it trains
