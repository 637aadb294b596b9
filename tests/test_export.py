"""``python -m subspaces.modes.export``: the plain network at a point of a trained subspace, a checkpoint that
main.py loads as a standard network and that scores what the subspace scores at that point."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from subspaces import main as main_mod
from subspaces.args import Settings, parse_args, replace
from subspaces.modes import export as export_mod
from subspaces.modes.export import export_point
from subspaces.utils.checkpoint import load_checkpoint, save_checkpoint
from subspaces.utils.errors import UserError
from tests.helpers import final_ckpt


@pytest.fixture(scope="module")
def line_ckpt(tmp_path_factory) -> Path:
    log = tmp_path_factory.mktemp("line")
    argv = ["--set", "Digits", "--conv-type", "LinesConv", "--bn-type", "LinesBN", "--trainer", "train_one_dim_subspaces",
            "--epochs", "1", "--save", "--log-dir", str(log), "--name", "line"]
    main_mod.main(parse_args(argv))
    return final_ckpt(log / "line+try=0")


def fresh_ckpt(path: Path, conv: str, bn: str) -> Path:
    s = replace(Settings(), conv_type=conv, bn_type=bn, model="DigitsConvNet", output_size=10, width_mult=0.25)
    torch.manual_seed(0)
    net = main_mod.build_model(s, SimpleNamespace(in_channels=1))
    save_checkpoint(path, {"epoch": 1, "state_dicts": [net.state_dict()], "settings": s.to_dict()})
    return path


def test_exported_point_scores_what_the_subspace_scores_there(line_ckpt, tmp_path):
    """Export alpha = 0.3 with BatchNorm recomputed, load it as a standard network: the accuracy of
    main.py on it equals the line evaluated at alpha = 0.3 (eval_one_dim_subspaces --update-bn)."""
    out = tmp_path / "net.pt"
    assert export_mod.main([str(line_ckpt), "--point", "0.3", "--update-bn", "--out", str(out)]) == 0
    ck = load_checkpoint(out)
    assert ck["settings"]["conv_type"] == "StandardConv" and ck["settings"]["bn_type"] == "StandardBN" and ck["epoch"] == 0
    assert ck["exported_from"] == {"checkpoint": str(line_ckpt), "point": [0.3], "update_bn": True, "bn_weighting": "batch"}
    sub = load_checkpoint(line_ckpt)["state_dicts"][0]
    sd = ck["state_dicts"][0]
    assert not any(k.endswith(("weight1", "bias1")) for k in sd)
    torch.testing.assert_close(sd["convs.0.weight"], 0.7 * sub["convs.0.weight"] + 0.3 * sub["convs.0.weight1"])
    assert not torch.equal(sd["bns.0.running_mean"], sub["bns.0.running_mean"])  # recomputed at the point

    plain = main_mod.main(parse_args(["--set", "Digits", "--conv-type", "StandardConv", "--bn-type", "StandardBN",
                                      "--resume", str(out), "--pretrained", "--epochs", "0"]))
    along = main_mod.main(parse_args(["--set", "Digits", "--conv-type", "LinesConv", "--bn-type", "LinesBN", "--trainer",
                                      "eval_one_dim_subspaces", "--resume", str(line_ckpt), "--pretrained", "--epochs", "0",
                                      "--update-bn", "--alpha1", "0.3", "--alpha0", "0.3", "--no-channels-last"]))
    assert plain.curr_acc1 > 0.5 and plain.curr_acc1 == along.curr_acc1


def test_without_update_bn_the_statistics_are_the_checkpoints(line_ckpt, tmp_path):
    out = export_point(line_ckpt, [1.0], tmp_path / "end.pt")
    sub = load_checkpoint(line_ckpt)["state_dicts"][0]
    sd = load_checkpoint(out)["state_dicts"][0]
    assert torch.equal(sd["bns.1.running_var"], sub["bns.1.running_var"])
    assert torch.equal(sd["fc.weight"], sub["fc.weight1"])  # alpha = 1 is endpoint 1 exactly


def test_simplex_point_is_barycentric(tmp_path):
    ck = fresh_ckpt(tmp_path / "simplex.pt", "SimplexConv3", "SimplexBN3")
    out = export_point(ck, [0.2, 0.3, 0.5], tmp_path / "p.pt")
    sub = load_checkpoint(ck)["state_dicts"][0]
    sd = load_checkpoint(out)["state_dicts"][0]
    for key in ("convs.1.weight", "bns.2.bias", "fc.weight"):
        expected = 0.2 * sub[key] + 0.3 * sub[f"{key}1"] + 0.5 * sub[f"{key}2"]
        torch.testing.assert_close(sd[key], expected, rtol=1e-6, atol=1e-7)
    net = main_mod.build_model(Settings.from_dict(load_checkpoint(out)["settings"]), SimpleNamespace(in_channels=1))
    net.load_state_dict(sd)  # strictly: the plain architecture


@pytest.mark.parametrize("argv_point, expect", [
    ("1.5", "pass one alpha in [0, 1]"),
    ("0.2,0.8", "pass one alpha in [0, 1]"),
])
def test_bad_points_of_a_line(line_ckpt, tmp_path, capsys, argv_point, expect):
    out = tmp_path / "x.pt"
    assert export_mod.main([str(line_ckpt), "--point", argv_point, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expect in err[0]
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("point, expect", [((0.5, 0.5), "3 barycentric coordinates"), ((0.5, 0.6, -0.1), ">= 0"), ((0.2, 0.2, 0.2), "sum to 1")])
def test_bad_simplex_points(tmp_path, point, expect):
    ck = fresh_ckpt(tmp_path / "simplex.pt", "SimplexConv3", "SimplexBN3")
    with pytest.raises(UserError, match=expect):
        export_point(ck, point, tmp_path / "p.pt")
    assert not (tmp_path / "p.pt").exists()


def test_bad_files(tmp_path, capsys):
    assert export_mod.main([str(tmp_path / "missing.pt"), "--point", "0.5", "--out", str(tmp_path / "x.pt")]) == 2
    assert "not found" in capsys.readouterr().err
    std = fresh_ckpt(tmp_path / "std.pt", "StandardConv", "StandardBN")
    with pytest.raises(UserError, match="already plain"):
        export_point(std, [0.5], tmp_path / "x.pt")
    line = fresh_ckpt(tmp_path / "line.pt", "LinesConv", "LinesBN")
    with pytest.raises(UserError, match="is a folder"):
        export_point(line, [0.5], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["line.pt", "std.pt"]


def test_export_never_overwrites_its_input_or_an_existing_file(tmp_path, capsys, monkeypatch):
    line = fresh_ckpt(tmp_path / "line.pt", "LinesConv", "LinesBN")
    before = line.read_bytes()
    (tmp_path / "alias.pt").symlink_to(line)
    (tmp_path / "some_file").write_text("notes")
    real_load, loads = export_mod.load_checkpoint, []
    monkeypatch.setattr(export_mod, "load_checkpoint", lambda *a: loads.append(a) or real_load(*a))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hard.pt").hardlink_to(line)
    refused = [(line, "is one of the inputs"), ("line.pt", "is one of the inputs"), (tmp_path / "alias.pt", "is one of the inputs"),
               (tmp_path / "hard.pt", "is one of the inputs"), (tmp_path / "some_file" / "net.pt", "which is a file"), (tmp_path / "some_file", "exists; pass another file name, or --force")]
    for out, expect in refused:
        for force in ([], ["--force"]) if "exists" not in expect else ([],):
            assert export_mod.main([str(line), "--point", "0.5", "--out", str(out), *force]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and expect in err[0], err
    assert export_mod.main([str(line), "--point", "0.5", "--out", str(tmp_path / "some_file"), "--force"]) == 0
    assert line.read_bytes() == before and (tmp_path / "alias.pt").is_symlink()
    assert loads == [(str(line), "subspaces-export CKPT")]  # only the --force export of some_file got that far
    assert load_checkpoint(tmp_path / "some_file")["settings"]["conv_type"] == "StandardConv"  # --force replaced it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias.pt", "hard.pt", "line.pt", "some_file"]


def test_export_refuses_non_finite_weights(tmp_path):
    line = fresh_ckpt(tmp_path / "line.pt", "LinesConv", "LinesBN")
    ck = load_checkpoint(line)
    ck["state_dicts"][0]["convs.0.weight1"][0] = float("nan")
    save_checkpoint(line, ck)
    with pytest.raises(UserError, match="tensors with NaN or infinite values"):
        export_point(line, [0.5], tmp_path / "p.pt")
    assert not (tmp_path / "p.pt").exists()
