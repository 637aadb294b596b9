"""Permutation alignment (``subspaces-align``, ``--trainer linestats_aligned``): the groups found from
each model's forward code, weight and activation matching, aligned checkpoints that compute B's
function, and the aligned straight line between two trained Digits networks."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from subspaces import main as main_mod
from subspaces import models
from subspaces.args import Settings, replace
from subspaces.models import MODELS
from subspaces.modes import align as align_mod
from subspaces.modes import plain_state_dict, set_point
from subspaces.modes.matching import activation_matching, align_networks, weight_matching
from subspaces.modes.permutation import permutation_groups, permute, random_perms
from subspaces.utils.checkpoint import load_checkpoint, save_checkpoint
from subspaces.utils.errors import UserError
from subspaces.utils.results import read_results
from tests.helpers import cli, train_members

# The smallest widths that keep every group a few units wide; 32x32 inputs reach every stage.
WIDTH = {"DigitsConvNet": 0.25, "CIFARResNet": 0.25, "CIFARResNetDropout": 0.25}
IMAGENET_WIDTH = 0.0625


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is as fast, and far faster on a busy machine (threads wait on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str, seed: int, **spec) -> nn.Module:
    """A registered model at test size, seeded, with random BatchNorm parameters and statistics."""
    torch.manual_seed(seed)
    kw = {"in_channels": 1 if name == "DigitsConvNet" else 3, "width_mult": WIDTH.get(name, IMAGENET_WIDTH), **spec}
    net = models.get_model(name, models.Builder(), output_size=10, **kw)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def inputs(name: str) -> torch.Tensor:
    return torch.randn(4, 1, 8, 8) if name == "DigitsConvNet" else torch.randn(4, 3, 32, 32)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_aligned_computes_the_same_function(name):
    """Every registered model: its groups cover every hidden layer (the classifier's outputs stay),
    and B aligned to an independently drawn A computes B's outputs to float rounding."""
    a, b = build(name, 0), build(name, 1)
    alignment, state = align_networks(a, b, "weight", generator=torch.Generator().manual_seed(0))
    moved = {key for g in alignment.groups for key, axis in g.axes if axis == 0}
    convs = {f"{n}.weight" for n, m in b.named_modules() if isinstance(m, nn.Conv2d) and n != "fc"}
    assert convs <= moved and "fc.weight" not in moved
    assert alignment.summary()["moved"] > 0
    x = inputs(name)
    with torch.no_grad():
        expected = b(x)
        b.load_state_dict(state)
        torch.testing.assert_close(b(x), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


@pytest.mark.parametrize("name, spec", [("DigitsConvNet", {}), ("CIFARResNet", {"model_name": "cifar_resnet_14"}),
                                        ("TinyImageNetResNet50", {})])
def test_weight_matching_recovers_a_random_permutation(name, spec):
    """A copy of A with every group randomly permuted is aligned back to A exactly."""
    a = build(name, 0, **spec)
    groups = permutation_groups(a)
    perms = random_perms(groups, torch.Generator().manual_seed(1))
    shuffled = permute(a.state_dict(), groups, perms)
    assert any(not torch.equal(shuffled[k], v) for k, v in a.state_dict().items())
    alignment = weight_matching(a.state_dict(), shuffled, groups, torch.Generator().manual_seed(2))
    back = permute(shuffled, groups, alignment.perms)
    assert all(torch.equal(back[k], v) for k, v in a.state_dict().items())
    assert alignment.passes >= 2  # the last pass improved nothing


def test_activation_matching_recovers_a_random_permutation():
    a = build("DigitsConvNet", 0)
    groups = permutation_groups(a)
    b = build("DigitsConvNet", 0)
    b.load_state_dict(permute(a.state_dict(), groups, random_perms(groups, torch.Generator().manual_seed(1))))
    batches = [torch.randn(32, 1, 8, 8) for _ in range(2)]
    alignment = activation_matching(a, b, batches, groups)
    back = permute(b.state_dict(), groups, alignment.perms)
    assert all(torch.equal(back[k], v) for k, v in a.state_dict().items())


def test_the_residual_stream_is_one_group_and_batchnorm_moves_with_its_channels():
    """cifar_resnet_14, stage 1: the stem conv, its BatchNorm and the second conv of both blocks add
    to one stream, read by the next convs and the stage-2 shortcut; the classifier's inputs move."""
    groups = {g.name: g for g in permutation_groups(build("CIFARResNet", 0, model_name="cifar_resnet_14"))}
    stream = set(groups["conv"].axes)
    assert {("conv.weight", 0), ("bn.running_mean", 0), ("bn.weight", 0), ("blocks.0.conv2.weight", 0),
            ("blocks.1.bn2.running_var", 0), ("blocks.0.conv1.weight", 1), ("blocks.2.shortcut.0.weight", 1)} <= stream
    assert ("blocks.0.conv1.weight", 0) not in stream and ("blocks.0.bn1.bias", 0) in groups["blocks.0.conv1"].axes
    last = [g for g in groups.values() if ("fc.weight", 1) in g.axes]
    assert len(last) == 1 and not any(("fc.weight", 0) in g.axes for g in groups.values())


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        y = self.a(x)
        return torch.cat([y, self.b(y)], 1)


@pytest.mark.parametrize("net, expect", [
    (Concat(), "the operation cat"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3, groups=2)), "a grouped convolution (groups=2)"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)), "a layer reads 144 features of a tensor with 4 channels"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Upsample(scale_factor=2), nn.Conv2d(4, 2, 3)), "the layer Upsample"),
    (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)), None),
])
def test_a_model_that_cannot_be_aligned_is_refused_naming_why(net, expect):
    if expect is None:  # what it knows passes: one group, the hidden conv's 4 channels
        assert [(g.size, len(g.axes)) for g in permutation_groups(net)] == [(4, 3)]
        return
    with pytest.raises(UserError) as e:
        permutation_groups(net)
    assert f"{type(net).__name__} cannot be aligned: {expect}" in str(e.value) and "(at " in str(e.value) and "\n" not in str(e.value)


# --- the command line ---------------------------------------------------------------------------


def save(path: Path, conv: str = "StandardConv", bn: str = "StandardBN", width: float = 0.25, seed: int = 0) -> Path:
    """A DigitsConvNet checkpoint as main.py --save writes it (random weights)."""
    s = replace(Settings(), conv_type=conv, bn_type=bn, model="DigitsConvNet", output_size=10, width_mult=width, name=f"m{seed}")
    torch.manual_seed(seed)
    net = main_mod.build_model(s, SimpleNamespace(in_channels=1))
    save_checkpoint(path, {"epoch": 3, "iter": 9, "arch": s.model, "state_dicts": [net.state_dict()], "optimizers": [],
                           "best_acc1": 0.5, "curr_acc1": 0.25, "settings": s.to_dict()})
    return path


def logits(state: dict, x: torch.Tensor) -> torch.Tensor:
    net = build("DigitsConvNet", 0)
    net.load_state_dict(state)
    with torch.no_grad():
        return net(x)


@pytest.mark.parametrize("method", ["weight", "activation"])
def test_align_command_writes_b_with_its_function(tmp_path, capsys, method):
    a, b, out = save(tmp_path / "a.pt", seed=0), save(tmp_path / "b.pt", seed=1), tmp_path / "b_aligned.pt"
    own = ["--batches", "2"] if method == "activation" else ["--seed", "3"]
    assert align_mod.main([str(a), str(b), "--out", str(out), "--method", method, *own]) == 0
    assert f"wrote {out} ({method} matching" in capsys.readouterr().out
    ck = load_checkpoint(out)
    assert {"epoch", "iter", "arch", "state_dicts", "optimizers", "best_acc1", "curr_acc1", "settings"} <= set(ck)
    assert (ck["curr_acc1"], ck["best_acc1"], ck["settings"]["name"]) == (0.25, 0.5, f"m1+aligned={method}")
    record = ck["aligned_to"]
    assert (record["checkpoint"], record["source"], record["method"], record["groups"]) == (str(a), str(b), method, 4)
    assert record.get("seed") == (3 if method == "weight" else None) and record.get("batches") == (2 if method == "activation" else None)
    assert 0 < record["moved"] <= record["units"] == (8 + 16 + 16 + 32)
    x = torch.randn(16, 1, 8, 8)
    before, after = load_checkpoint(b)["state_dicts"][0], ck["state_dicts"][0]
    assert not torch.equal(after["convs.1.weight"], before["convs.1.weight"])
    torch.testing.assert_close(logits(after, x), logits(before, x), rtol=1e-5, atol=1e-5)


def test_align_a_point_of_a_line_to_another_network(tmp_path):
    """``--point-b 0.3``: the plain network at alpha 0.3 of a line, aligned; its function is the line's there."""
    a, line, out = save(tmp_path / "a.pt"), save(tmp_path / "line.pt", "LinesConv", "LinesBN", seed=1), tmp_path / "p.pt"
    assert align_mod.main([str(a), str(line), "--point-b", "0.3", "--out", str(out)]) == 0
    ck = load_checkpoint(out)
    assert ck["aligned_to"]["source_point"] == [0.3] and ck["curr_acc1"] == 0.0 and ck["settings"]["conv_type"] == "StandardConv"
    s = Settings.from_dict(load_checkpoint(line)["settings"])
    net = main_mod.build_model(s, SimpleNamespace(in_channels=1))
    net.load_state_dict(load_checkpoint(line)["state_dicts"][0])
    set_point(net, 0.3)
    x = torch.randn(16, 1, 8, 8)
    torch.testing.assert_close(logits(ck["state_dicts"][0], x), logits(plain_state_dict(net), x), rtol=1e-5, atol=1e-5)


def test_align_command_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    a, b = str(save(tmp_path / "a.pt")), str(save(tmp_path / "b.pt", seed=1))
    wide, line = str(save(tmp_path / "wide.pt", width=0.5)), str(save(tmp_path / "line.pt", "LinesConv", "LinesBN"))
    taken = tmp_path / "taken.pt"
    taken.write_bytes(b"keep")
    cases = [
        ([a, b, "--out", str(taken)], "exists; pass another file name, or --force"),
        ([a, b, "--out", b], "is one of the inputs"),
        ([a, b, "--out", f"{a}/x.pt"], "which is a file"),
        ([a, b, "--out", str(tmp_path)], "is a folder"),
        ([a, wide, "--out", str(tmp_path / "o.pt")], "hold different architectures"),
        ([a, b, "--point-b", "0.5", "--out", str(tmp_path / "o.pt")], "holds a standard network, which has no points; drop --point-b"),
        ([a, line, "--out", str(tmp_path / "o.pt")], "holds a line (--conv-type LinesConv); pass --point-b"),
        ([a, line, "--point-b", "2", "--out", str(tmp_path / "o.pt")], "is not a point of a line"),
        ([a, str(tmp_path / "none.pt"), "--out", str(tmp_path / "o.pt")], "not found"),
        ([a, b, "--batches", "0", "--method", "activation", "--out", str(tmp_path / "o.pt")], "--batches 0 must be at least 1"),
        ([a, b, "--batches", "2", "--out", str(tmp_path / "o.pt")], "--batches is read by --method activation, not by --method weight"),
        ([a, b, "--seed", "1", "--method", "activation", "--out", str(tmp_path / "o.pt")], "--seed is read by --method weight"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv, expect in cases:
        capsys.readouterr()
        assert align_mod.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and len(err.splitlines()) == 1 and expect in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before and taken.read_bytes() == b"keep"
    assert align_mod.main([a, b, "--out", str(taken), "--force"]) == 0 and load_checkpoint(taken)["aligned_to"]


# --- the aligned straight line (Figure 4's third curve) ------------------------------------------

SMALL = ["--set", "Digits", "--width-mult", "0.25", "--batch-size", "64"]


@pytest.fixture(scope="module")
def members(one_thread, tmp_path_factory) -> list:
    """Two Digits networks trained independently (seeds 1, 2) for 3 epochs."""
    return train_members(tmp_path_factory.mktemp("members"), SMALL + ["--epochs", "3"], (1, 2))


def test_aligned_line_midpoint_is_above_the_naive_lines(members, tmp_path, capsys):
    """linestats_aligned writes linestats_swa's rows and columns; at alpha 1 it is network B (its
    function unchanged by the permutation), at the midpoint it is measurably more accurate."""
    log, a, b = tmp_path / "log", *map(str, members)
    base = SMALL + ["--resume", f"{a},{b}", "--epochs", "0", "--pretrained", "--save-data", "--log-dir", log, "--alphas", "0.5,0"]
    assert cli(base + ["--trainer", "linestats_swa", "--name", "id=linestats-swa"]) == 0
    for method in ("weight", "activation"):
        assert cli(base + ["--trainer", "linestats_aligned", "--align", method, "--name", f"id=linestats-aligned+align={method}"]) == 0
    rows = read_results(log / "results.csv")
    naive, weight, activation = rows[:2], rows[2:4], rows[4:]
    assert set(naive[0]) <= set(weight[0])
    for r in weight + activation:
        assert r["trainer"] == "linestats_aligned" and r["update_bn"] == "True" and int(r["align_moved"]) > 0
    assert (weight[0]["align_method"], activation[0]["align_method"]) == ("weight", "activation")
    assert naive[1]["alpha1"] == weight[1]["alpha1"] == "1"
    assert float(weight[1]["curr_acc1"]) == pytest.approx(float(naive[1]["curr_acc1"]), abs=1 / 360 + 1e-6)
    assert float(weight[0]["curr_acc1"]) > float(naive[0]["curr_acc1"]) + 0.05
    assert float(activation[0]["curr_acc1"]) > float(naive[0]["curr_acc1"]) + 0.05
    capsys.readouterr()
    for argv, expect in ((["--trainer", "linestats_swa", "--align", "weight"], "--align is read by --trainer linestats_aligned, not by linestats_swa"),
                         (["--trainer", "linestats_aligned", "--t", "0.5"], "not by linestats_aligned; drop --t")):
        assert cli(base + argv) == 2
        assert expect in capsys.readouterr().err
