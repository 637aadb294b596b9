"""bench/paper_cifar10.sh, the paper's CIFAR-10 row on one GPU, checked end to end on the CPU."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import paper_cifar10  # noqa: E402


def test_smoke_run_trains_evaluates_draws_and_prints_the_row(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    out = subprocess.run(["bash", str(ROOT / "bench" / "paper_cifar10.sh"), "--smoke", "--device", "cpu", "--parallel", "2",
                          "--out", str(tmp_path / "paper")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    row = dict(line.split(",") for line in out.stdout.splitlines() if "," in line and not line.startswith("#"))
    for key in ("standard_acc", "standard_ensemble_acc", "lines_midpoint_acc", "lines_endpoint_acc",
                "lines_endpoint_ensemble_acc", "lines_midpoint_ece", "curves_midpoint_acc"):
        assert 0.0 <= float(row[key]) <= 1.0, key
    figures = tmp_path / "paper-smoke" / "figures"
    assert (figures / "one_dimensional_subspaces.png").stat().st_size > 0 and (figures / "one_dimensional_subspaces.pdf").exists()
    # A second call skips every finished run and only redraws.
    again = subprocess.run(["bash", str(ROOT / "bench" / "paper_cifar10.sh"), "--smoke", "--device", "cpu", "--out", str(tmp_path / "paper")],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "skipped" in again.stdout and again.stdout.count(",") >= len(row)


def test_jpeg_folder_becomes_cifar_batches(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("test", 1)):
        for c in paper_cifar10.CLASSES:
            (tmp_path / "jpg" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "jpg" / split / c / f"{i}.png")
    data = paper_cifar10.from_jpegs(tmp_path / "jpg", tmp_path / "out")
    folder = data / "cifar10" / "cifar-10-batches-py"
    batches = [pickle.loads((folder / f"data_batch_{i}").read_bytes()) for i in range(1, 6)]
    assert sum(len(b[b"labels"]) for b in batches) == 20
    test = pickle.loads((folder / "test_batch").read_bytes())
    assert test[b"data"].shape == (10, 3072) and sorted(test[b"labels"]) == list(range(10))
