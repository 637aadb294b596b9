"""End-to-end runs of main.py on Digits: every training trainer, checkpoints, resume, bad input."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from subspaces import main as main_mod
from subspaces.args import Settings, parse_args, replace
from subspaces.utils.checkpoint import CHECKPOINT_KEYS
from subspaces.utils.errors import UserError
from subspaces.utils.results import read_results

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "Digits", "--epochs", "2", "--save", "--lr", "0.1", "--batch-size", "128"]


def run(argv, capsys=None) -> int:
    return main_mod.cli([str(a) for a in argv])


def _final_ckpt(run_dir: Path) -> Path:
    cks = sorted(run_dir.glob("epoch_*_iter_*.pt"), key=lambda p: int(p.name.split("_")[1]))
    return cks[-1]


@pytest.mark.parametrize(
    "flags, extra_cols",
    [
        (["--trainer", "default"], ["ece"]),
        (["--conv-type", "LinesConv", "--bn-type", "LinesBN", "--trainer", "train_one_dim_subspaces", "--beta", "1"], ["norm", "cossim"]),
        (["--conv-type", "LinesConv", "--bn-type", "LinesBN", "--trainer", "train_one_dim_subspaces", "--layerwise", "--train-update-bn"], ["norm", "cossim"]),
        (["--conv-type", "CurvesConv", "--bn-type", "CurvesBN", "--trainer", "train_one_dim_subspaces", "--beta", "1"], ["norm", "cossim"]),
        (["--conv-type", "SimplexConv3", "--bn-type", "SimplexBN3", "--n", "3", "--trainer", "train_simplexes", "--beta", "1"], ["wa_acc", "l2", "cossim"]),
        (["--conv-type", "SimplexConv3", "--bn-type", "SimplexBN3", "--trainer", "train_simplexes", "--layerwise"], ["wa_acc"]),
    ],
    ids=["standard", "lines", "lines-layerwise", "curves", "simplex3", "simplex3-layerwise"],
)
def test_train_from_the_command_line(tmp_path, flags, extra_cols):
    log = tmp_path / "logs"
    assert run(FAST + flags + ["--log-dir", log, "--name", "id=x+seed=1"]) == 0
    rows = read_results(log / "results.csv")
    assert len(rows) == 1
    row = rows[0]
    assert row["Name"] == "id=x+seed=1+try=0"
    assert float(row["curr_acc1"]) > 0.5  # chance is 0.1 on ten digit classes
    for col in ["Date Finished", "curr_acc1", "best_acc1", "train_loss", *extra_cols]:
        assert row[col] != ""
    run_dir = log / "id=x+seed=1+try=0"
    assert (run_dir / "settings.txt").exists()
    assert list(run_dir.glob("events.out.tfevents.*"))
    ckpt = torch.load(_final_ckpt(run_dir), weights_only=True)
    assert set(CHECKPOINT_KEYS) <= set(ckpt)
    assert ckpt["epoch"] == 2 and ckpt["settings"]["conv_type"] == row["conv_type"]


def test_run_folders_count_tries(tmp_path):
    argv = FAST[:3] + ["1", "--save-data", "--log-dir", tmp_path, "--name", "n"]
    assert run(argv) == 0 and run(argv) == 0
    assert (tmp_path / "n+try=0").is_dir() and (tmp_path / "n+try=1").is_dir()
    assert [r["Name"] for r in read_results(tmp_path / "results.csv")] == ["n+try=0", "n+try=1"]


@pytest.mark.parametrize("conv, bn, trainer", [("LinesConv", "LinesBN", "train_one_dim_subspaces"), ("StandardConv", "StandardBN", "default")])
def test_resume_equals_uninterrupted_run(tmp_path, conv, bn, trainer):
    """Stop after epoch 1, resume to 3: the same weights as the uninterrupted 3-epoch run."""
    base = ["--set", "Digits", "--conv-type", conv, "--bn-type", bn, "--trainer", trainer, "--epochs", "3",
            "--save", "--log-dir", tmp_path, "--beta", "1", "--train-update-bn", "--dropout", "0.0"]
    assert run(base + ["--name", "full", "--save-epochs", "1"]) == 0
    full = tmp_path / "full+try=0"
    epoch1 = next(full.glob("epoch_1_iter_*.pt"))
    assert run(base + ["--name", "resumed", "--resume", epoch1]) == 0
    a = torch.load(_final_ckpt(full), weights_only=True)
    b = torch.load(_final_ckpt(tmp_path / "resumed+try=0"), weights_only=True)
    assert b["epoch"] == 3
    for k, v in a["state_dicts"][0].items():
        assert torch.equal(v, b["state_dicts"][0][k]), k
    # the optimizer state continued too (momentum buffers equal)
    ma = a["optimizers"][0]["state"]
    mb = b["optimizers"][0]["state"]
    assert all(torch.equal(ma[i]["momentum_buffer"], mb[i]["momentum_buffer"]) for i in ma)
    rows = {r["Name"]: r for r in read_results(tmp_path / "results.csv")}
    assert rows["full+try=0"]["curr_acc1"] == rows["resumed+try=0"]["curr_acc1"]


def test_pretrained_loads_weights_only_and_restarts_epochs(tmp_path):
    assert run(FAST + ["--log-dir", tmp_path, "--name", "a"]) == 0
    ck = _final_ckpt(tmp_path / "a+try=0")
    summary = main_mod.main(replace(parse_args(FAST + ["--log-dir", str(tmp_path), "--name", "b", "--epochs", "1"]), resume=(str(ck),), pretrained=True))
    assert summary.metrics["epoch"] == 1  # started from epoch 0 despite the checkpoint's epoch 2


def test_original_style_checkpoint_loads(tmp_path):
    """NumPy scalar accuracies and a 'module.' prefix (GPU-trained original) load safely."""
    np = pytest.importorskip("numpy")
    assert run(FAST + ["--log-dir", tmp_path, "--name", "a", "--epochs", "1"]) == 0
    ck = torch.load(_final_ckpt(tmp_path / "a+try=0"), weights_only=True)
    orig = {
        "epoch": 1, "iter": 12, "arch": "DigitsConvNet",
        "state_dicts": [{"module." + k: v for k, v in ck["state_dicts"][0].items()}],
        "optimizers": ck["optimizers"], "best_acc1": np.float64(0.5), "curr_acc1": np.float64(0.5),
    }
    path = tmp_path / "orig.pt"
    torch.save(orig, path)
    s = main_mod.main(parse_args(["--set", "Digits", "--resume", str(path), "--epochs", "1", "--log-dir", str(tmp_path)]))
    assert s.curr_acc1 > 0.5  # weights really loaded: a fresh model scores ~0.1 without training


def _bad(tmp_path, argv, capsys, expect):
    log = tmp_path / "badlog"
    rc = run(list(argv) + ["--log-dir", log, "--save", "--name", "bad"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err
    assert not log.exists() or (not list(log.iterdir()))  # no run folder, no results.csv


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["--conv-type", "FooConv"], "StandardConv"),
        (["--bn-type", "FooBN"], "LinesBN"),
        (["--conv-type", "LinesConv", "--bn-type", "CurvesBN", "--trainer", "train_one_dim_subspaces"], "matching"),
        (["--model", "NoSuchNet"], "CIFARResNet"),
        (["--set", "NoSuchSet"], "Digits"),
        (["--trainer", "nope"], "train_one_dim_subspaces"),
        (["--lr-policy", "nope"], "cosine_lr"),
        (["--optimizer", "nope"], "sgd"),
        (["--conv-type", "SimplexConv3", "--bn-type", "SimplexBN3", "--n", "4", "--trainer", "train_simplexes"], "--n 3"),
        (["--conv-type", "LinesConv", "--bn-type", "LinesBN", "--trainer", "train_simplexes"], "train_one_dim_subspaces"),
        (["--trainer", "train_one_dim_subspaces"], "--trainer default"),
        (["--epochs", "-1"], "--epochs"),
        (["--epochs", "0"], "--epochs N >= 1"),
        (["--label-noise", "1.5"], "[0, 1]"),
        (["--pretrained"], "--resume"),
        (["--set", "CIFAR10", "--data", "/nonexistent/place"], "--data"),
        (["--set", "TinyImageNet", "--data", "/nonexistent/place"], "--data"),
        (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "tpu"], "--device"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, expect):
    _bad(tmp_path, ["--set", "Digits", "--epochs", "1", *argv] if "--set" not in argv else ["--epochs", "1", *argv], capsys, expect)


def test_corrupt_and_foreign_checkpoints(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint")
    _bad(tmp_path, ["--set", "Digits", "--epochs", "1", "--resume", corrupt], capsys, "corrupt")
    missing = tmp_path / "missing.pt"
    _bad(tmp_path, ["--set", "Digits", "--epochs", "1", "--resume", missing], capsys, "not found")
    # A pickle that would run code must be refused by weights_only loading.
    evil = tmp_path / "evil.pt"
    torch.save({"state_dicts": [], "x": os.system}, evil)
    _bad(tmp_path, ["--set", "Digits", "--epochs", "1", "--resume", evil], capsys, "corrupt")
    # The reason is the safe unpickler's, not PyTorch's advice to load with weights_only=False.
    for bad, why in ((corrupt, "(pop from empty list)"), (evil, "(the safe unpickler refused it: Trying to load unsupported GLOBAL ")):
        assert main_mod.cli(["--set", "Digits", "--epochs", "1", "--resume", str(bad)]) == 2
        err = capsys.readouterr().err
        assert why in err and "weights_only" not in err, err
    # A line checkpoint's weights loaded into a standard model: the layer types are named in the error.
    # (A resume without --pretrained takes layer types left at their defaults from the checkpoint:
    # test_never_lose.py::test_resume_takes_defaulted_architecture_flags_and_reports_changes.)
    assert run(FAST + ["--conv-type", "LinesConv", "--bn-type", "LinesBN", "--trainer", "train_one_dim_subspaces", "--epochs", "1", "--log-dir", tmp_path / "ok", "--name", "l"]) == 0
    line_ck = _final_ckpt(tmp_path / "ok" / "l+try=0")
    capsys.readouterr()
    _bad(tmp_path, ["--set", "Digits", "--epochs", "1", "--resume", line_ck, "--pretrained"], capsys, "--conv-type LinesConv")
    # A checkpoint of another architecture (no settings inside): the key mismatch is reported.
    ck = torch.load(line_ck, weights_only=True)
    foreign = tmp_path / "foreign.pt"
    torch.save({"epoch": 1, "state_dicts": [{"layer.weight": torch.zeros(3)}]}, foreign)
    _bad(tmp_path, ["--set", "Digits", "--epochs", "1", "--resume", foreign], capsys, "does not fit")


def test_cli_subprocess_has_no_traceback(tmp_path):
    """The real command line: exit status 2, one line on stderr, no traceback."""
    p = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--conv-type", "Nope", "--log-dir", str(tmp_path / "l"), "--save"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and p.stderr.strip().count("\n") == 0
    assert not (tmp_path / "l").exists()


def test_every_original_flag_exists():
    flags = ["--model", "--model-name", "--set", "--data", "--log-dir", "--name", "--seed", "--epochs", "--batch-size",
             "--test-batch-size", "--lr", "--momentum", "--wd", "--optimizer", "--lr-policy", "--warmup-length",
             "--conv-type", "--bn-type", "--conv_type", "--bn_type", "--conv-init", "--n", "--trainer", "--beta", "--layerwise",
             "--num-samples", "--num-models", "--resume", "--pretrained", "--save", "--save-data", "--save-epochs",
             "--save-iters", "--test-freq", "--update-bn", "--train-update-bn", "--label-noise", "--label-smoothing",
             "--width-mult", "--output-size", "--workers", "--trainswa", "--swa-start", "--swa-lr", "--alpha0", "--alpha1",
             "--ct", "--sev", "--data-seed", "--multigpu", "--device"]
    from subspaces.args import build_parser

    known = set(build_parser()._option_string_actions)
    assert [f for f in flags if f not in known] == []


def test_settings_are_immutable_and_misspellings_fail():
    s = Settings()
    with pytest.raises(Exception):
        s.seed = 3  # frozen: a sweep cannot leak one run's change into the next
    with pytest.raises(UserError, match="sed"):
        replace(s, sed=3)
    assert replace(s, seed=3).seed == 3 and s.seed == 1


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    """A crash while saving leaves neither a partial checkpoint nor a temp file behind."""
    from subspaces.utils import checkpoint

    def boom(obj, f, *a, **k):
        f.write(b"partial")  # save_checkpoint hands torch.save an open file (so a full disk is an OSError)
        f.flush()
        raise RuntimeError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", boom)
    with pytest.raises(RuntimeError):
        checkpoint.save_checkpoint(tmp_path / "c.pt", {"state_dicts": []})
    assert list(tmp_path.iterdir()) == []


def test_results_header_grows_with_new_columns(tmp_path):
    from subspaces.utils.results import append_rows

    path = tmp_path / "results.csv"
    append_rows(path, [{"Name": "a", "curr_acc1": 0.5, "best_acc1": 0.5, "train_loss": 1.0, "norm": 2.0}])
    append_rows(path, [{"Name": "b", "curr_acc1": 0.6, "best_acc1": 0.6, "train_loss": 1.0, "ece": 0.1}])
    header = path.read_text().splitlines()[0].split(",")
    assert header[:5] == ["Date Finished", "Name", "curr_acc1", "best_acc1", "train_loss"]
    assert "norm" in header and "ece" in header and all(h == h.strip() for h in header)
    rows = read_results(path)
    assert rows[0]["norm"] == "2" and rows[0]["ece"] == "" and rows[1]["ece"] == "0.1"


def test_save_iters_and_save_epochs_write_checkpoints(tmp_path):
    assert run(FAST + ["--epochs", "3", "--save-iters", "3,15", "--save-epochs", "2", "--log-dir", tmp_path, "--name", "c"]) == 0
    names = {p.name for p in (tmp_path / "c+try=0").glob("epoch_*.pt")}
    # the initialisation, the two iterations (12 batches per epoch), epoch 2, the last
    assert names == {"epoch_0_iter_0.pt", "epoch_0_iter_3.pt", "epoch_1_iter_15.pt", "epoch_2_iter_24.pt", "epoch_3_iter_36.pt"}
    assert os.readlink(tmp_path / "c+try=0" / "last.pt") == "epoch_3_iter_36.pt"
    assert all(torch.load(tmp_path / "c+try=0" / n, weights_only=True)["settings"]["name"] == "c+try=0" for n in names)


def test_num_samples_draws_a_point_per_part_of_the_batch(tmp_path, monkeypatch):
    """Appendix B: --num-samples K trains K points per batch, each on its own part of it."""
    import subspaces.trainers.subspace as sub

    points, sizes = [], []
    real_sample = sub.sample_and_set

    def spy(layers, coeffs, gen, layerwise):
        points.append(real_sample(layers, coeffs, gen, layerwise))
        return points[-1]

    monkeypatch.setattr(sub, "sample_and_set", spy)
    s = parse_args(["--set", "Digits", "--conv-type", "LinesConv", "--bn-type", "LinesBN", "--trainer",
                    "train_one_dim_subspaces", "--epochs", "1", "--num-samples", "4", "--batch-size", "128"])
    summary = main_mod.main(s)
    assert len(points) == 4 * 12  # 12 batches of Digits' 1437 training images, 4 points each
    assert len(set(points)) == len(points)  # every part of every batch has its own point
    assert summary.curr_acc1 > 0.3


def test_channels_last_is_on_by_default_only_for_cpu_evaluation_runs():
    assert parse_args([]).channels_last is None  # auto
    assert parse_args(["--channels-last"]).channels_last is True
    assert parse_args(["--no-channels-last"]).channels_last is False
    check = main_mod.check_settings
    for trainer in ("eval_one_dim_subspaces", "eval_simplexes", "ensemble"):
        ev = Settings(trainer=trainer, resume=("x.pt",), pretrained=True, epochs=0)
        assert check(ev).channels_last is True, trainer
        assert check(replace(ev, channels_last=False)).channels_last is False
    for trainer in ("default", "train_one_dim_subspaces", "train_simplexes", "swa"):
        s = Settings(trainer=trainer)
        assert check(s).channels_last is False, trainer  # training keeps NCHW
        assert check(replace(s, channels_last=True)).channels_last is True
