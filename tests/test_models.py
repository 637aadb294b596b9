"""Every registered model, built with every kind of layer: shapes, features, state-dict names."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn as nn

from subspaces import models
from subspaces.models import MODELS, Builder, get_model
from subspaces.models.cifar_resnet import Block
from subspaces.modes import SubspaceLayer
from subspaces.utils.errors import UserError

LAYER_TYPES = [
    ("StandardConv", "StandardBN", 1),
    ("LinesConv", "LinesBN", 2),
    ("CurvesConv", "CurvesBN", 3),
    ("SimplexConv3", "SimplexBN3", 3),
]

# name -> (kwargs, input shape (C, H, W), outputs). Small widths: the whole file runs in seconds.
SMALL = {
    "DigitsConvNet": (dict(width_mult=0.25), (1, 8, 8), 10),
    "CIFARResNet": (dict(model_name="cifar_resnet_8", width_mult=0.5), (3, 32, 32), 10),
    "CIFARResNetDropout": (dict(model_name="cifar_resnet_8", width_mult=0.5, dropout=0.5), (3, 32, 32), 10),
    "TinyImageNetResNet18": (dict(width_mult=0.125), (3, 64, 64), 200),
    "TinyImageNetResNet50": (dict(width_mult=0.0625), (3, 64, 64), 200),
    "ResNet50": (dict(width_mult=0.0625), (3, 64, 64), 1000),
    "WideResNet50_2": (dict(width_mult=0.0625), (3, 64, 64), 1000),
    # The original's other ImageNet models; 32x32 inputs keep the deep ones quick on a CPU.
    "ResNet18": (dict(width_mult=0.125), (3, 32, 32), 1000),
    "ResNet101": (dict(width_mult=0.0625), (3, 32, 32), 1000),
    "WideResNet101_2": (dict(width_mult=0.0625), (3, 32, 32), 1000),
}


def test_every_registered_model_has_a_test_configuration():
    assert set(MODELS) == set(SMALL), "add the new model to SMALL in tests/test_models.py"


def build(name: str, conv_type: str = "StandardConv", bn_type: str = "StandardBN", **overrides) -> models.Net:
    kwargs, (c, _, _), outputs = SMALL[name]
    kwargs = {**kwargs, "in_channels": c, "output_size": outputs, **overrides}
    return get_model(name, Builder(conv_type, bn_type), **kwargs)


@pytest.mark.parametrize("conv_type,bn_type,k", LAYER_TYPES, ids=[t[0] for t in LAYER_TYPES])
@pytest.mark.parametrize("name", sorted(SMALL))
def test_model_builds_and_runs(name, conv_type, bn_type, k):
    torch.manual_seed(0)
    _, shape, outputs = SMALL[name]
    model = build(name, conv_type, bn_type)
    x = torch.randn(2, *shape)

    # Training mode: logits of the right shape, gradients reach every parameter (all endpoints).
    model.train()
    logits, feats = model.forward_with_features(x)
    assert logits.shape == (2, outputs)
    assert feats.ndim == 2 and feats.shape[0] == 2
    assert torch.isfinite(logits).all() and torch.isfinite(feats).all()
    logits.square().sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"

    # Evaluation mode: the features are the classifier's input, and forward == classify(features).
    model.eval()
    with torch.no_grad():
        logits, feats = model.forward_with_features(x)
        assert torch.allclose(model.classify(feats), logits, atol=1e-6)
        assert torch.allclose(model(x), logits, atol=1e-6)
        assert torch.isfinite(logits).all()
        # batch of one keeps its batch dimension (the original's squeeze() did not)
        assert model(x[:1]).shape == (1, outputs)

    # Every conv and BatchNorm went through the builder: all of the chosen type.
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert convs and bns
    if k == 1:
        assert not any(isinstance(m, SubspaceLayer) for m in model.modules())
        assert not any(re.search(r"\.(weight|bias)\d+$", key) for key in model.state_dict())
    else:
        assert all(isinstance(m, SubspaceLayer) and m.num_tensors == k for m in convs + bns)

    # Endpoint names on every conv and BN; BN running statistics are shared (no running_mean1).
    sd = model.state_dict()
    names = {m: n for n, m in model.named_modules()}
    for m in convs:
        for i in range(1, k):
            assert f"{names[m]}.weight{i}" in sd
            assert sd[f"{names[m]}.weight{i}"].shape == m.weight.shape
    for m in bns:
        for i in range(1, k):
            assert f"{names[m]}.weight{i}" in sd and f"{names[m]}.bias{i}" in sd
        assert f"{names[m]}.running_mean" in sd and f"{names[m]}.running_var" in sd
    assert not any(re.search(r"running_(mean|var)\d+$", key) for key in sd)

    # The subspace model's names are the standard model's plus the endpoint names.
    if k > 1:
        base = set(build(name).state_dict())
        stripped = {re.sub(r"\.(weight|bias)\d+$", r".\1", key) for key in sd}
        assert stripped == base


@pytest.mark.parametrize("name", sorted(SMALL))
def test_endpoints_are_independent(name):
    """Each conv endpoint is initialised on its own; BN endpoints start at weight 1, bias 0."""
    torch.manual_seed(0)
    model = build(name, "LinesConv", "LinesBN")
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            assert not torch.equal(m.weight, m.weight1)
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.equal(m.weight1, m.weight)
            assert torch.equal(m.bias, torch.zeros_like(m.bias)) and torch.equal(m.bias1, m.bias)


# --- the original's state-dict names -------------------------------------------------------------


def _conv(prefix):
    return {f"{prefix}.weight"}


def _bn(prefix):
    return {f"{prefix}.{s}" for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}


def original_cifar_keys(blocks_per_stage: int) -> set:
    """The original's CIFARResNet names: conv, bn, blocks.<i>.{conv1,bn1,conv2,bn2,shortcut.0/1}, fc."""
    keys = _conv("conv") | _bn("bn") | _conv("fc")
    for i in range(3 * blocks_per_stage):
        keys |= _conv(f"blocks.{i}.conv1") | _bn(f"blocks.{i}.bn1") | _conv(f"blocks.{i}.conv2") | _bn(f"blocks.{i}.bn2")
        if i > 0 and i % blocks_per_stage == 0:
            keys |= _conv(f"blocks.{i}.shortcut.0") | _bn(f"blocks.{i}.shortcut.1")
    return keys


def original_imagenet_keys(layers=(3, 4, 6, 3), bottleneck: bool = True) -> set:
    """The original's (and torchvision's) ImageNet ResNet names; fc has no bias (a 1x1 conv)."""
    keys = _conv("conv1") | _bn("bn1") | _conv("fc")
    for stage, count in enumerate(layers, start=1):
        for b in range(count):
            p = f"layer{stage}.{b}"
            for j in ((1, 2, 3) if bottleneck else (1, 2)):
                keys |= _conv(f"{p}.conv{j}") | _bn(f"{p}.bn{j}")
            # a shortcut conv where the shape changes: ResNet-18's first stage keeps 64 channels
            if b == 0 and (bottleneck or stage > 1):
                keys |= _conv(f"{p}.downsample.0") | _bn(f"{p}.downsample.1")
    return keys


def original_tiny_keys(bottleneck: bool, num_block) -> set:
    """The original's TinyImageNet names: conv1.0/1, conv<s>_x.<b>.residual_function.<i>, shortcut.0/1, fc."""
    keys = _conv("conv1.0") | _bn("conv1.1") | _conv("fc")
    convs_bns = [(0, 1), (3, 4), (6, 7)] if bottleneck else [(0, 1), (3, 4)]
    for s, count in enumerate(num_block, start=2):
        for b in range(count):
            p = f"conv{s}_x.{b}"
            for c, n in convs_bns:
                keys |= _conv(f"{p}.residual_function.{c}") | _bn(f"{p}.residual_function.{n}")
            # a shortcut conv where the shape changes: the first block of every stage, except
            # ResNet-18's first stage (64 -> 64 at stride 1)
            if b == 0 and (bottleneck or s > 2):
                keys |= _conv(f"{p}.shortcut.0") | _bn(f"{p}.shortcut.1")
    return keys


@pytest.mark.parametrize(
    "name,expected",
    [
        ("CIFARResNet", original_cifar_keys(1)),
        ("CIFARResNetDropout", original_cifar_keys(1)),
        ("ResNet50", original_imagenet_keys()),
        ("WideResNet50_2", original_imagenet_keys()),
        ("ResNet18", original_imagenet_keys((2, 2, 2, 2), bottleneck=False)),
        ("ResNet101", original_imagenet_keys((3, 4, 23, 3))),
        ("WideResNet101_2", original_imagenet_keys((3, 4, 23, 3))),
        ("TinyImageNetResNet18", original_tiny_keys(False, (2, 2, 2, 2))),
        ("TinyImageNetResNet50", original_tiny_keys(True, (3, 4, 6, 3))),
    ],
)
def test_original_state_dict_names(name, expected):
    assert set(build(name).state_dict()) == expected


def test_original_names_spot_checks():
    sd = build("CIFARResNet", model_name="cifar_resnet_20").state_dict()
    for key in ("conv.weight", "bn.running_mean", "blocks.0.conv1.weight", "blocks.3.shortcut.0.weight", "fc.weight"):
        assert key in sd
    assert sd["fc.weight"].shape == (10, 32, 1, 1)  # the classifier is a 1x1 conv without bias
    assert "fc.bias" not in sd


# The full-size models on the meta device (no memory, no compute): the original's shapes exactly.
FULL_SIZE = [
    # name, output_size, parameters per endpoint (torchvision's count less the fc bias)
    ("ResNet50", 1000, 25_557_032 - 1000),
    ("WideResNet50_2", 1000, 68_883_240 - 1000),
    ("ResNet18", 1000, 11_689_512 - 1000),
    ("ResNet101", 1000, 44_549_160 - 1000),
    ("WideResNet101_2", 1000, 126_886_696 - 1000),
    ("TinyImageNetResNet18", 200, None),
    ("TinyImageNetResNet50", 200, None),
]


@pytest.mark.parametrize("name,outputs,count", FULL_SIZE, ids=[f[0] for f in FULL_SIZE])
def test_full_size_shapes(name, outputs, count):
    with torch.device("meta"):
        model = get_model(name, Builder(), output_size=outputs)
        lines = get_model(name, Builder("LinesConv", "LinesBN"), output_size=outputs)
    n = sum(p.numel() for p in model.parameters())
    if count is not None:
        assert n == count
    assert sum(p.numel() for p in lines.parameters()) == 2 * n
    sd = model.state_dict()
    assert sd["fc.weight"].shape[:2] == (outputs, 512 if name.endswith("18") else 2048)
    tv_names = {"ResNet18": "resnet18", "ResNet50": "resnet50", "ResNet101": "resnet101", "WideResNet101_2": "wide_resnet101_2"}
    if name in tv_names:
        tv = pytest.importorskip("torchvision").models
        with torch.device("meta"):
            ref = getattr(tv, tv_names[name])().state_dict()
        ref.pop("fc.bias")
        assert set(sd) == set(ref)
        assert all(sd[k].shape == ref[k].shape for k in ref if k != "fc.weight")
        assert sd["fc.weight"].shape == (*ref["fc.weight"].shape, 1, 1)
    if name.startswith("WideResNet"):
        assert sd["layer1.0.conv1.weight"].shape == (128, 64, 1, 1)  # twice the bottleneck width
        assert sd["layer4.2.conv2.weight"].shape == (1024, 1024, 3, 3)
    if name.startswith("TinyImageNet"):
        stem = "conv1.0.weight"
        assert sd[stem].shape == (64, 3, 3, 3)  # a 3x3 stem, no 7x7 conv, no max pooling
        assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


@pytest.mark.parametrize(
    "name,last_stage",
    [("CIFARResNet", "blocks"), ("ResNet50", "layer4"), ("WideResNet50_2", "layer4"), ("ResNet18", "layer4"), ("TinyImageNetResNet18", "conv5_x"), ("TinyImageNetResNet50", "conv5_x")],
)
def test_features_are_the_pooled_last_stage(name, last_stage):
    """The penultimate features: the last stage's (post-ReLU) output averaged over space."""
    model = build(name).eval()
    seen = {}
    getattr(model, last_stage).register_forward_hook(lambda m, i, o: seen.__setitem__("out", o))
    with torch.no_grad():
        feats = model.features(torch.randn(2, *SMALL[name][1]))
    torch.testing.assert_close(feats, seen["out"].mean(dim=(2, 3)))
    assert (feats >= 0).all()


def test_tinyimagenet_resolution():
    """The first stage keeps 64x64; three stride-2 stages leave 8x8 before pooling."""
    model = build("TinyImageNetResNet18")
    seen = {}
    for stage in ("conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x"):
        getattr(model, stage).register_forward_hook(lambda m, i, o, s=stage: seen.__setitem__(s, o.shape[-1]))
    model(torch.randn(2, 3, 64, 64))
    assert seen == {"conv1": 64, "conv2_x": 64, "conv3_x": 32, "conv4_x": 16, "conv5_x": 8}


def test_imagenet_resolution():
    """224x224: a stride-2 stem and a max pool (56x56), then stages down to 7x7."""
    model = build("ResNet50", width_mult=1 / 64)
    seen = {}
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        getattr(model, stage).register_forward_hook(lambda m, i, o, s=stage: seen.__setitem__(s, o.shape[-1]))
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    assert seen == {"layer1": 56, "layer2": 28, "layer3": 14, "layer4": 7}
    # ResNet v1.5 as the original: the stride is on the 3x3 conv, not the first 1x1
    assert model.layer2[0].conv1.stride == (1, 1) and model.layer2[0].conv2.stride == (2, 2)


def test_no_batchnorm_is_zero_initialised():
    """The original zero-initialises no BatchNorm (not even the last of each residual branch)."""
    for name in ("ResNet50", "ResNet18", "TinyImageNetResNet50", "TinyImageNetResNet18", "CIFARResNet"):
        for key, v in build(name, "LinesConv", "LinesBN").state_dict().items():
            if re.search(r"(bn\d?|residual_function\.\d+|shortcut\.1|downsample\.1|conv1\.1)\.weight\d*$", key) and v.ndim == 1:
                assert torch.all(v == 1), key


# --- dropout ---------------------------------------------------------------------------------------


def test_dropout_sits_on_the_residual_branch_after_bn2():
    """As the original's cifar_resnet_dropout.py: relu(dropout(bn2(conv2(...))) + shortcut(x))."""
    torch.manual_seed(0)
    model = build("CIFARResNetDropout", dropout=0.5)
    block = model.blocks[0]
    assert isinstance(block, Block) and isinstance(block.dropout, nn.Dropout) and block.dropout.p == 0.5
    order = []
    for name in ("conv1", "bn1", "conv2", "bn2", "dropout", "shortcut"):
        getattr(block, name).register_forward_hook(lambda m, i, o, n=name: order.append(n))
    captured = {}
    block.bn2.register_forward_hook(lambda m, i, o: captured.__setitem__("bn2", o.detach().clone()))
    block.dropout.register_forward_hook(lambda m, i, o: captured.__setitem__("drop", (i[0].detach().clone(), o.detach().clone())))
    block.train()
    x = torch.randn(2, block.conv1.in_channels, 8, 8)
    out = block(x)
    assert order == ["conv1", "bn1", "conv2", "bn2", "dropout", "shortcut"]
    drop_in, drop_out = captured["drop"]
    assert torch.equal(drop_in, captured["bn2"])  # dropout's input is bn2's output
    assert torch.allclose(out, torch.relu(drop_out + block.shortcut(x)))
    # The plain CIFARResNet has no dropout even when --dropout is set (its default is 0.5).
    plain = build("CIFARResNet", dropout=0.5)
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    # In evaluation mode dropout is off: two passes agree.
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), model(x))


# --- errors ----------------------------------------------------------------------------------------


def test_unknown_model_lists_valid_names():
    with pytest.raises(UserError) as e:
        get_model("ResNet51", Builder(), output_size=10)
    for name in MODELS:
        assert name in str(e.value)


@pytest.mark.parametrize("bad", ["cifar_resnet_21", "cifar_resnet", "resnet_20", "cifar_resnet_20_x"])
def test_bad_cifar_model_name(bad):
    with pytest.raises(UserError, match="model-name"):
        get_model("CIFARResNet", Builder(), output_size=10, model_name=bad)


def test_mismatched_layer_types():
    with pytest.raises(UserError):
        Builder("LinesConv", "CurvesBN")
    with pytest.raises(UserError, match="LinesConv"):
        Builder("LineConv", "LinesBN")


@pytest.mark.parametrize("conv_type,bn_type", [("StandardConv", "StandardBN"), ("LinesConv", "LinesBN")])
def test_in_place_block_matches_the_out_of_place_formula(conv_type, bn_type):
    """The CIFAR block's ReLUs and residual add run in place; values and gradients are those of
    relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""
    torch.manual_seed(0)
    block = Block(4, 8, True, Builder(conv_type, bn_type)).train()
    x = torch.randn(3, 4, 8, 8, requires_grad=True)

    def reference(x):
        out = torch.relu(block.bn1(block.conv1(x)))
        return torch.relu(block.bn2(block.conv2(out)) + block.shortcut(x))

    grads = []
    for f in (block, reference):
        x.grad = None
        block.zero_grad()
        y = f(x)
        y.pow(2).sum().backward()
        grads.append((y.detach(), x.grad.clone(), [p.grad.clone() for p in block.parameters()]))
    (y0, gx0, gp0), (y1, gx1, gp1) = grads
    assert torch.allclose(y0, y1, atol=1e-6) and torch.allclose(gx0, gx1, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(gp0, gp1))
