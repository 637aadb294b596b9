"""Config scripts on another data set, model or data folder without editing them: --set, --model,
--model-name and --data, and CIFAR-10 as a folder of JPEGs."""
from __future__ import annotations

import importlib

import pytest

from subspaces.sweep import make_config, run_cli
from subspaces.utils.results import read_results
from tests.helpers import make_cifar_images

LINES = "one_dimensional_subspaces/train_lines"
NAME = "id=lines+ln=0.0+beta=1.0+num_samples=1+seed=0"


def config(ds: str, script: str = LINES):
    return importlib.import_module(f"experiment_configs.{ds}.{script.replace('/', '.')}")


def test_a_cifar10_config_on_jpegs_and_on_other_models_and_sets(tmp_path, capsys):
    """The CIFAR-10 config, unedited, trains on <data>/cifar10/{train,test}/<class>/*.jpg (1 epoch, a
    tiny ResNet); --model/--model-name/--set replace the config's in every run, and those runs get
    their own attempts and rows: none skips or resumes another's."""
    make_cifar_images(tmp_path / "data", per_class=3)
    mod = config("cifar10")
    argv = ["--data", str(tmp_path / "data"), "--log-dir", str(tmp_path / "r"), "--seeds", "0", "--epochs", "1",
            "--device", "cpu", "--threads", "1", "--quiet"]
    variants = {"0": ["--model-name", "cifar_resnet_8"],
                "1": ["--set", "ImageFolder", "--data", str(tmp_path / "data" / "cifar10"), "--model", "CIFARResNetDropout",
                      "--model-name", "cifar_resnet_8"]}
    for flags in variants.values():
        assert run_cli(mod.runs, mod.SETUP, argv=argv + flags) == 0
    rows = {r["Name"]: r for r in read_results(tmp_path / "r" / "one-dimensional-subspaces" / "results.csv")}
    assert {n: (r["set"], r["model"], r["model_name"], r["epoch"]) for n, r in rows.items()} == {
        f"{NAME}+try=0": ("CIFAR10", "CIFARResNet", "cifar_resnet_8", "1"),
        f"{NAME}+try=1": ("ImageFolder", "CIFARResNetDropout", "cifar_resnet_8", "1")}
    capsys.readouterr()
    for i, flags in variants.items():
        assert run_cli(mod.runs, mod.SETUP, argv=argv + flags + ["--dry-run"]) == 0
        assert capsys.readouterr().out.strip().endswith(f"done ({NAME}+try={i})")


@pytest.mark.parametrize("flags, says", [(["--model", "ResNet7"], "unknown model 'ResNet7' (--model); choose one of: "),
                                         (["--set", "CIFAR11"], "unknown data set 'CIFAR11' (--set); choose one of: ")])
def test_unknown_set_or_model_is_one_line(tmp_path, capsys, flags, says):
    mod = config("cifar10")
    assert run_cli(mod.runs, mod.SETUP, argv=["--log-dir", str(tmp_path / "r")] + flags) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: " + says)
    assert not (tmp_path / "r").exists()


def test_model_without_model_name_takes_the_class_default():
    """--model alone drops the config's variant (cifar_resnet_20 is no variant of every class)."""
    setup = config("cifar10").SETUP
    assert make_config(setup, model="ResNet18").base.model_name is None
    assert make_config(setup, model="ResNet18", model_name="x").base.model_name == "x"
    assert make_config(setup, model_name="cifar_resnet_56").base.model == "CIFARResNet"
    assert make_config(setup).base.model_name == "cifar_resnet_20"


def test_a_model_without_model_name_is_not_the_run_with_another_model_name():
    """``--model X`` alone means X's default name: an earlier run of X with another --model-name is
    another run (it was skipped as done); unset fields elsewhere still match the saved defaults."""
    from subspaces.args import Settings
    from subspaces.sweep import same_run

    earlier = Settings(model="CIFARResNet", model_name="cifar_resnet_8_32").to_dict()
    assert not same_run(earlier, Settings(model="CIFARResNet"))
    assert same_run(earlier, Settings(model="CIFARResNet", model_name="cifar_resnet_8_32"))
    assert same_run(Settings(model="CIFARResNet").to_dict(), Settings(model="CIFARResNet"))
    assert same_run(Settings(model="DigitsConvNet").to_dict(), Settings())  # the data set's default model
