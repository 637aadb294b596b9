"""A run's folder: ``<log_dir>/<name>+try=<i>/`` with settings.txt, TensorBoard events, checkpoints.

Made only once everything that can fail on bad input has been checked, so bad input leaves no
folder behind. Checkpoints hold the original's keys (``epoch``, ``iter``, ``arch``,
``state_dicts``, ``optimizers``, ``best_acc1``, ``curr_acc1``), the run's settings, and what a
mid-epoch resume needs (``batch``, ``loss_sum``, ``rng``) and the trainer's own state
(``trainer``); they are written atomically.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Optional

from subspaces.utils.checkpoint import save_checkpoint
from subspaces.utils.io import atomic_write_text
from subspaces.utils.modules import unwrap


def make_run_dir(log_dir: str, name: str) -> tuple:
    """``<log_dir>/<name>+try=<i>/`` for the first free i; returns (path, name with +try=i)."""
    root = Path(log_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    i = 0
    while True:
        run_dir = root / f"{name}+try={i}"
        try:
            run_dir.mkdir()
            return run_dir, f"{name}+try={i}"
        except FileExistsError:
            i += 1


class RunFolder:
    """Where a run writes; ``path`` is None for a run that saves nothing (no --save/--save-data),
    and in every process of a DDP run but the first (``writes`` False)."""

    def __init__(self, settings, writes: bool = True) -> None:
        self.settings, self.path, self.name, self.writer = settings, None, settings.name, None
        if writes and (settings.save or settings.save_data):
            self.path, self.name = make_run_dir(settings.log_dir, settings.name)
            atomic_write_text(self.path / "settings.txt", json.dumps(self.recorded_settings(), indent=2, sort_keys=True) + "\n")
            print(f"=> Saving data in {self.path}", file=sys.stderr)
        if settings.save and self.path is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.path))

    def recorded_settings(self) -> dict:
        """The settings as recorded with the run (its name with ``+try=<i>``)."""
        return {**self.settings.to_dict(), "name": self.name}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def checkpointer(self, nets: list, optimizers: list, trainer, progress, n_batches: int) -> Callable:
        """``save(position) -> path or None``: a checkpoint of the run at ``position``."""

        def save(position) -> Optional[str]:
            if not (self.settings.save and self.path is not None):
                return None
            # An epoch boundary is named by the steps done; a mid-epoch one by the step just done,
            # as the original's --save-iters.
            it = position.epoch * n_batches + (position.batch - 1 if position.batch else 0)
            path = self.path / f"epoch_{position.epoch}_iter_{it}.pt"
            payload = {
                "epoch": position.epoch,
                "iter": it,
                "arch": self.settings.model,
                "state_dicts": [unwrap(n).state_dict() for n in nets],
                "optimizers": [o.state_dict() for o in optimizers if o is not None],
                "best_acc1": float(progress.best_acc1),
                "curr_acc1": float(progress.curr_acc1),
                "settings": self.recorded_settings(),
                "batch": position.batch,
                "trainer": trainer.state_dict(),
            }
            if position.batch:
                payload.update(loss_sum=float(position.loss_sum), rng=position.rng)
            save_checkpoint(path, payload)
            return str(path)

        return save
