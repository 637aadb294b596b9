"""The project is one installable package, ``subspaces``: no top-level module names that collide
with a user's own (``utils``, ``data``, ...), console scripts that exist, a wheel that holds every
subpackage."""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
# Names the project used before it was one package; a user's own modules of these names must win.
COMMON_NAMES = ("args", "data", "models", "modes", "trainers", "utils", "main")
# The console scripts pyproject.toml declares.
SCRIPTS = ("subspaces-train", "subspaces-export", "subspaces-plane", "subspaces-align", "subspaces-plot")


def test_no_top_level_package_collides_with_a_users_modules():
    for name in COMMON_NAMES:
        assert not (ROOT / name).is_dir(), f"top-level package {name}/ would shadow a user's {name}.py"
    assert not (ROOT / "args.py").exists()


def _user_folder(tmp_path: Path) -> Path:
    """A researcher's folder whose own modules carry the common names, each failing if imported."""
    for name in COMMON_NAMES:
        (tmp_path / f"{name}.py").write_text(f"raise SystemExit('the user\\'s {name}.py was imported by subspaces')\n")
    return tmp_path


def test_import_subspaces_from_a_folder_with_its_own_utils(tmp_path):
    """``import subspaces; subspaces.modes.subspace(net, "lines")`` and a training step of it, run
    from a folder holding utils.py, data.py, ... that must not be picked up."""
    code = (
        "import torch, torch.nn as nn, subspaces\n"
        "net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))\n"
        "line = subspaces.modes.subspace(net, 'lines')\n"
        "subspaces.modes.set_point(line, 0.3)\n"
        "out = line(torch.randn(2, 1, 8, 8)); out.sum().backward()\n"
        "print('ok', tuple(out.shape), len(list(line.parameters())))\n"
    )
    # PYTHONPATH: the package as an installed one sees it (the editable install puts only
    # `subspaces` on the path); the user's folder comes first, as a script's folder does.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "subspaces" / "..")}
    done = subprocess.run([sys.executable, "-c", code], cwd=_user_folder(tmp_path), env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok (2, 3)")


def test_the_user_folder_modules_would_be_found_first(tmp_path):
    """The check above can fail: a plain ``import utils`` from that folder gets the user's file."""
    done = subprocess.run([sys.executable, "-c", "import utils"], cwd=_user_folder(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "utils.py was imported" in done.stderr


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_console_scripts_name_callables(script):
    target = _project()["scripts"][script]
    module, func = target.split(":")
    assert callable(getattr(importlib.import_module(module), func))


def test_dependencies_are_the_requirements_pins():
    """pyproject.toml declares exactly what requirements.txt pins (minus the test runner)."""
    reqs = {line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    assert set(_project()["dependencies"]) == reqs - {r for r in reqs if r.startswith("pytest")}


def test_the_console_script_runs_the_training_command_line(tmp_path):
    """``subspaces-train`` is ``main.py``: the same help, under its own name."""
    code = "import sys; sys.argv[0] = 'subspaces-train'; from subspaces.main import cli; sys.exit(cli(['--help']))"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: subspaces-train") and "--conv-type" in done.stdout


def test_the_wheel_holds_every_subpackage_and_no_top_level_scripts(tmp_path):
    """``pip wheel .`` (what ``pip install .`` builds): every module of the package, the entry points,
    and nothing else at the top level (no tests/, experiment_configs/, bench/)."""
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources it builds.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "subspaces", src / "subspaces", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                           "--wheel-dir", str(tmp_path), str(src)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and "No module named 'setuptools'" in done.stderr:
        pytest.skip("setuptools is not installed in this environment (make setup installs it)")
    assert done.returncode == 0, done.stderr[-2000:]
    wheel, = tmp_path.glob("subspaces-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    modules = {n for n in names if n.endswith(".py")}
    expected = {str(p.relative_to(ROOT)) for p in (ROOT / "subspaces").rglob("*.py") if "__pycache__" not in p.parts}
    assert expected <= modules, sorted(expected - modules)
    assert {n.split("/")[0] for n in modules} == {"subspaces"}
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in SCRIPTS:
        assert script in text


def test_the_package_puts_nothing_on_sys_path():
    """No module of the package edits sys.path (one that put subspaces/ there would make its
    utils/ and data/ importable as top-level `utils` and `data` again)."""
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "subspaces").rglob("*.py") if "sys.path" in p.read_text()]
    assert not offenders


@pytest.mark.parametrize("module", ["subspaces", "subspaces.utils.results", "subspaces.sweep", "subspaces.analysis.plot"])
def test_reading_results_and_drawing_figures_do_not_import_pytorch(module):
    """Subpackages load on first use: results files, sweeps' plans and the figures start in under a
    second instead of paying PyTorch's import (about 3 s of CPU) in every process."""
    code = f"import sys, {module}; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
