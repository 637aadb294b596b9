"""BatchNorm recomputation as the reference codes do it: every batch weighing the same (the original,
``torch.optim.swa_utils.update_bn``: the default) or every sample (dnn-mode-connectivity and
swa_gaussian: ``--bn-weighting sample``), honoured by every recompute; and an evaluation of one
checkpoint recomputes over the batches of the checkpoint's own seed, as an exported point does."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from subspaces import main as main_mod
from subspaces.args import Settings, replace
from subspaces.data import get_dataset
from subspaces.modes import get_layer_type, set_point
from subspaces.modes import export as export_mod
from subspaces.trainers import RunContext, get_trainer
from subspaces.utils.bn import update_bn
from subspaces.utils.checkpoint import save_checkpoint
from subspaces.utils.evaluation import predict
from subspaces.utils.metrics import classification_metrics
from subspaces.utils.results import read_results
from tests.helpers import cli

TINY = ["--set", "Digits", "--model", "DigitsConvNet", "--width-mult", "0.25", "--batch-size", "128"]
LINE = ["--conv-type", "LinesConv", "--bn-type", "LinesBN"]


def test_batch_and_sample_weighting_by_hand():
    """Batches of 4, 4 and 2: batch weighting averages the three batch means (unbiased variances)
    with weights 1/3, sample weighting with 4/10, 4/10, 2/10; a subspace BatchNorm too; the modules'
    momenta and the model's mode come back."""
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(b, 3, 2, 2, generator=gen) * (1 + i) + i, torch.zeros(b)) for i, b in enumerate((4, 4, 2))]
    means = torch.stack([x.mean((0, 2, 3)) for x, _ in batches])
    variances = torch.stack([x.transpose(0, 1).reshape(3, -1).var(1, unbiased=True) for x, _ in batches])
    for layer in (torch.nn.BatchNorm2d(3), get_layer_type("LinesBN")(3)):
        net = torch.nn.Sequential(layer).eval()
        for weighting, w in (("batch", torch.tensor([1 / 3, 1 / 3, 1 / 3])), ("sample", torch.tensor([0.4, 0.4, 0.2]))):
            update_bn(batches, net, weighting=weighting)
            torch.testing.assert_close(layer.running_mean, w @ means)
            torch.testing.assert_close(layer.running_var, w @ variances)
        assert layer.momentum == 0.1 and not net.training
    with pytest.raises(ValueError, match="weighting"):
        update_bn(batches, net, weighting="samples")


def fresh_line(path: Path, seed: int) -> Path:
    """An untrained Digits line whose checkpoint records training ``seed`` (what main.py --save writes)."""
    s = replace(Settings(), conv_type="LinesConv", bn_type="LinesBN", model="DigitsConvNet", output_size=10, width_mult=0.25, seed=seed)
    torch.manual_seed(0)
    net = main_mod.build_model(s, SimpleNamespace(in_channels=1))
    save_checkpoint(path, {"epoch": 1, "state_dicts": [net.state_dict()], "settings": s.to_dict()})
    return path


def eval_row(ckpt: Path, log: Path, *extra) -> dict:
    argv = [*TINY, *LINE, "--trainer", "eval_one_dim_subspaces", "--resume", ckpt, "--pretrained", "--epochs", "0", "--update-bn",
            "--alpha0", "0.3", "--alpha1", "0.3", "--no-channels-last", "--save-data", "--log-dir", log, *extra]
    assert cli(argv) == 0
    return read_results(log / "results.csv")[-1]


def test_evaluation_and_export_follow_the_checkpoints_seed_and_the_weighting(tmp_path):
    """A line trained with seed 3, evaluated at alpha 0.3 with --update-bn --bn-weighting sample and
    --seed 7: the numbers of the BatchNorm recompute by hand over the seed-3 batches with per-sample
    weights (not those of batch weights), and of main.py scoring (with --seed 9) the point exported
    with ``--update-bn --bn-weighting sample``."""
    ckpt = fresh_line(tmp_path / "line.pt", seed=3)
    row = eval_row(ckpt, tmp_path / "eval", "--seed", "7", "--bn-weighting", "sample")

    s = replace(main_mod.check_settings(main_mod.parse_args([str(x) for x in TINY + LINE])), seed=3, output_size=10)
    data = get_dataset(s)
    net = main_mod.build_model(s, data)
    net.load_state_dict(torch.load(ckpt, weights_only=True)["state_dicts"][0])
    set_point(net, (0.3,))
    nll = {}
    for weighting in ("sample", "batch"):
        data.set_epoch(0)
        update_bn(data.bn_loader, net, weighting=weighting)
        nll[weighting] = classification_metrics(*(lambda p: (p.logits, p.targets))(predict(net, data.val_loader, torch.device("cpu"))))["nll"]
    assert float(row["nll"]) == pytest.approx(nll["sample"], rel=1e-5) and float(row["nll"]) != pytest.approx(nll["batch"], rel=1e-5)

    out = tmp_path / "mid.pt"
    assert export_mod.main([str(ckpt), "--point", "0.3", "--update-bn", "--bn-weighting", "sample", "--out", str(out)]) == 0
    assert torch.load(out, weights_only=True)["exported_from"]["bn_weighting"] == "sample"
    plain = main_mod.main(main_mod.parse_args([str(x) for x in TINY + ["--resume", out, "--pretrained", "--epochs", "0", "--seed", "9",
                                                                      "--no-channels-last"]]))
    assert plain.metrics["nll"] == pytest.approx(float(row["nll"]), rel=1e-5)
    assert plain.curr_acc1 == pytest.approx(float(row["curr_acc1"]), abs=1e-9)


def test_train_update_bn_honours_the_weighting():
    """--train-update-bn --bn-weighting sample: the midpoint is tested with (and saved with) the
    per-sample recompute there."""
    s = Settings(conv_type="LinesConv", bn_type="LinesBN", trainer="train_one_dim_subspaces", model="DigitsConvNet", output_size=10,
                 width_mult=0.25, train_update_bn=True, bn_weighting="sample")
    torch.manual_seed(0)
    net = main_mod.build_model(s, SimpleNamespace(in_channels=1))
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(b, 1, 8, 8, generator=gen) * (1 + i), torch.randint(0, 10, (b,), generator=gen)) for i, b in enumerate((64, 64, 16))]
    ctx = RunContext([net], [None], SimpleNamespace(bn_loader=batches, val_loader=batches[:1]), torch.nn.CrossEntropyLoss(), torch.device("cpu"))
    get_trainer("train_one_dim_subspaces")(s).test(ctx, 0)
    twin = main_mod.build_model(s, SimpleNamespace(in_channels=1))
    twin.load_state_dict(net.state_dict())
    set_point(twin, (0.5,))
    for weighting, same in (("sample", True), ("batch", False)):
        update_bn(batches, twin, weighting=weighting)
        assert torch.allclose(twin.bns[0].running_var, net.bns[0].running_var, rtol=1e-6) == same, weighting


def test_a_weighting_with_nothing_to_weigh_is_refused(tmp_path, capsys):
    for argv in ([*TINY, "--epochs", "1", "--bn-weighting", "sample"],
                 [*TINY, *LINE, "--trainer", "train_one_dim_subspaces", "--epochs", "1", "--bn-weighting", "sample"]):
        assert cli([*argv, "--save", "--log-dir", tmp_path / "bad"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --bn-weighting sample") and "--update-bn" in err[0], err
    assert not (tmp_path / "bad").exists()
    assert export_mod.main([str(fresh_line(tmp_path / "l.pt", 0)), "--point", "0.5", "--bn-weighting", "sample", "--out", str(tmp_path / "o.pt")]) == 2
    assert "pass --update-bn too" in capsys.readouterr().err and not (tmp_path / "o.pt").exists()
