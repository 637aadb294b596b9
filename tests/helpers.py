"""What many tests share: the command line run in-process, and the checkpoints a run leaves."""
from __future__ import annotations

import contextlib
import io
import os
import signal
import time
from pathlib import Path
from typing import Sequence

from subspaces import main as main_mod
from subspaces.utils.bn import update_bn


def cli(argv: Sequence) -> int:
    """``main.cli`` on ``argv``, its items made strings (paths and numbers are fine)."""
    return main_mod.cli([str(a) for a in argv])


def final_ckpt(run_dir: Path) -> Path:
    """The checkpoint of a run folder's last epoch."""
    return max(Path(run_dir).glob("epoch_*_iter_*.pt"), key=lambda p: int(p.name.split("_")[1]))


def ckpt_at(run_dir: Path, epoch: int) -> Path:
    """The checkpoint a run folder holds for ``epoch``."""
    return next(Path(run_dir).glob(f"epoch_{epoch}_iter_*.pt"))


def train_members(log: Path, argv: Sequence, seeds: Sequence[int], name: str = "m{seed}") -> list:
    """Standard networks trained independently, one per seed, with ``argv``; their last checkpoints."""
    paths = []
    for seed in seeds:
        run = name.format(seed=seed)
        assert cli([*argv, "--seed", seed, "--save", "--log-dir", log, "--name", run]) == 0
        paths.append(final_ckpt(Path(log) / f"{run}+try=0"))
    return paths


class CountingBN:
    """Stands in for utils.bn.update_bn and counts the recomputes."""

    def __init__(self):
        self.calls = 0

    def __call__(self, loader, model, device=None, weighting="batch"):
        self.calls += 1
        update_bn(loader, model, device, weighting)


def make_cifar_images(root: Path, name: str = "cifar10", per_class: int = 2, classes: int = 10) -> None:
    """``<root>/<name>/{train,test}/class<c>/<k>.jpg``: random 32x32 JPEGs, ``per_class`` per class and
    split (the layout of CIFAR-10 as JPEGs)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(classes):
            for k in range(per_class):
                path = Path(root) / name / split / f"class{c:02d}" / f"{k:04d}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path, "JPEG")


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie that no one reaps has ended too)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def all_gone_after_killing(parent, children: Sequence[int], wait_s: float = 20.0) -> bool:
    """SIGKILL the Popen ``parent``, then whether all ``children`` ended within ``wait_s`` (those
    still running are SIGKILLed before returning, so no test leaves an orphan)."""
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + wait_s
    while not all(gone(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    ended = all(gone(p) for p in children)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return ended


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, as tqdm asks before drawing a bar."""

    def isatty(self) -> bool:
        return True
