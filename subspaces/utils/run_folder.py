"""A run's folder: ``<log_dir>/<name>+try=<i>/`` with settings.txt, TensorBoard events, checkpoints.

Made only once everything that can fail on bad input has been checked, so bad input leaves no
folder behind. Checkpoints hold the original's keys (``epoch``, ``iter``, ``arch``,
``state_dicts``, ``optimizers``, ``best_acc1``, ``curr_acc1``), the run's settings, and what a
mid-epoch resume needs (``batch``, ``loss_sum``, ``rng``) and the trainer's own state
(``trainer``); they are written atomically, never hold a NaN or infinite tensor, and never reuse
a name for other weights. ``last.pt`` points at the newest one.

A run resumed from the newest checkpoint of an unfinished run folder of the same ``--log-dir``
and ``--name`` continues in that folder (as open_lth's runs do); any other resume opens a new
``+try=<i>`` folder, as the original.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from subspaces.utils.errors import Diverged, UserError
from subspaces.utils.io import atomic_write_text

# The original's names, epoch_<e>_iter_<it>.pt: at an epoch boundary ``it`` is the steps done, mid-epoch
# (--save-iters) the index of the step just done. After the first step of an epoch the two agree,
# so that mid-epoch checkpoint alone takes a ``_mid`` suffix instead of replacing the epoch's start.
CHECKPOINT_RE = re.compile(r"^epoch_(\d+)_iter_(\d+)(_mid)?\.pt$")
LAST = "last.pt"


@dataclass(frozen=True, order=True)
class CheckpointFile:
    """A checkpoint of a run folder, ordered as the run wrote them (oldest first)."""

    epoch: int
    iter: int
    mid: bool  # the ``_mid`` checkpoint after the first step of epoch ``epoch``
    path: Path = field(compare=False)

    @property
    def initialisation(self) -> bool:
        """The checkpoint of the weights before training (``epoch_0_iter_0.pt``)."""
        return (self.epoch, self.iter, self.mid) == (0, 0, False)


def checkpoint_name(epoch: int, it: int, first_step: bool = False) -> str:
    """``epoch_<e>_iter_<it>.pt``; ``first_step``: a mid-epoch checkpoint after the epoch's first step."""
    return f"epoch_{epoch}_iter_{it}{'_mid' if first_step else ''}.pt"


def checkpoint_files(run_dir: "str | Path") -> list:
    """The :class:`CheckpointFile` s of a run folder, oldest first (``last.pt`` is not one)."""
    out = []
    for p in Path(run_dir).glob("epoch_*_iter_*.pt"):
        m = CHECKPOINT_RE.match(p.name)
        if m:
            out.append(CheckpointFile(int(m.group(1)), int(m.group(2)), bool(m.group(3)), p))
    return sorted(out)


def point_last(run_dir: Path, target: Path) -> None:
    """Make ``<run_dir>/last.pt`` point at ``target`` (a checkpoint in ``run_dir``), replaced atomically:
    a relative symlink, or a hard link or a copy where the file system has no symlinks."""
    tmp = run_dir / f".{LAST}.{secrets.token_hex(6)}.tmp"
    try:
        try:
            os.symlink(target.name, tmp)
        except OSError:
            try:
                os.link(target, tmp)
            except OSError:
                shutil.copyfile(target, tmp)
        os.replace(tmp, run_dir / LAST)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def refresh_last(run_dir: Path) -> None:
    """Point ``last.pt`` at the newest checkpoint left in ``run_dir`` (after pruning), or remove it."""
    files = checkpoint_files(run_dir)
    if files:
        point_last(run_dir, files[-1].path)
    elif os.path.lexists(run_dir / LAST):
        os.unlink(run_dir / LAST)


def resume_file(path: "str | Path") -> str:
    """The checkpoint that ``--resume path`` names: the file itself, or for a run folder the newest
    checkpoint its ``last.pt`` points at."""
    p = Path(path).expanduser()
    if not p.is_dir():
        return str(path)
    last = p / LAST
    if not last.exists():
        raise UserError(f"--resume {path} is a folder without {LAST} (no checkpoint saved there); pass a checkpoint file, e.g. {p / 'epoch_<e>_iter_<it>.pt'}")
    if last.is_symlink():
        return str(p / os.readlink(last))
    same = [f.path for f in checkpoint_files(p) if os.path.samefile(f.path, last)]
    return str(same[-1] if same else last)


def _finished(log_dir: Path, run_name: str) -> bool:
    """Whether ``results.csv`` of ``log_dir`` holds a row of the run folder ``run_name``."""
    from subspaces.utils.results import read_results

    return any(r.get("Name") == run_name or r.get("Name", "").startswith(run_name + "+") for r in read_results(log_dir / "results.csv"))


def continued_folder(settings, checkpoint: str) -> tuple:
    """``(folder, note)``: the run folder a resume from ``checkpoint`` continues in, or None (a new
    folder) and a note saying why not when the checkpoint is of this ``--log-dir`` and ``--name``.

    A run continues in its folder when the checkpoint is that folder's newest and the run has no
    results row yet; a resume from an older checkpoint, or of a finished run, opens a new folder
    so that no checkpoint name is written twice and no run gets two rows.
    """
    ckpt = Path(checkpoint).expanduser()
    folder, root = ckpt.parent, Path(settings.log_dir).expanduser()
    same_run = re.fullmatch(re.escape(settings.name) + r"\+try=\d+", folder.name)
    if not (settings.save and same_run and root.is_dir() and os.path.samefile(folder.parent, root)):
        return None, ""
    files = checkpoint_files(folder)
    if not files or files[-1].path.name != ckpt.name:
        return None, f"{ckpt.name} is not the newest checkpoint of {folder.name}, so this run gets a new folder"
    if _finished(root, folder.name):
        return None, f"{folder.name} finished (it has a results.csv row), so this run gets a new folder"
    return folder, ""


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


def write_failed(e: OSError, path: Path, newest: Optional[str]) -> UserError:
    """The one line for a write into a run folder that failed (full disk, read-only folder)."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        what = f"the disk is full (or over quota): {path.name} could not be written in {path.parent}"
        fix = f"free space in {path.parent}"
    elif e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        what = f"{path.parent} became read-only ({e.strerror}): {path.name} could not be written"
        fix = f"make {path.parent} writable"
    else:
        what, fix = f"{path} could not be written ({e.strerror or e})", "fix the folder"
    kept = f"the newest checkpoint is {newest}; {fix}, then continue with --resume {newest}" if newest else f"no checkpoint was written; {fix} and run again"
    return UserError(f"{what}; {kept}")


class RunFolder:
    """Where a run writes; ``path`` is None for a run that saves nothing (no --save/--save-data),
    and in every process of a DDP run but the first (``writes`` False).

    ``continue_in``: an existing run folder the run continues in (see :func:`continued_folder`);
    ``record``: entries settings.txt and the checkpoints record besides the settings
    (``resumed_from``, ``changed_on_resume``).
    """

    def __init__(self, settings, writes: bool = True, continue_in: Optional[Path] = None, record: Optional[dict] = None) -> None:
        self.settings, self.path, self.name, self.writer = settings, None, settings.name, None
        self.record = dict(record or {})
        if writes and (settings.save or settings.save_data):
            made = continue_in is None
            self.path, self.name = (make_run_dir(settings.log_dir, settings.name) if made else (continue_in, continue_in.name))
            try:
                atomic_write_text(self.path / "settings.txt", json.dumps(self.recorded_settings(), indent=2, sort_keys=True) + "\n")
            except OSError as e:
                if made:
                    shutil.rmtree(self.path, ignore_errors=True)  # nothing half-made
                raise write_failed(e, self.path / "settings.txt", None) from None
            print(f"=> {'Saving data in' if made else 'Continuing in'} {self.path}", file=sys.stderr)
        if settings.save and self.path is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.path))

    def recorded_settings(self) -> dict:
        """The settings as recorded with the run (its name with ``+try=<i>``)."""
        return {**self.settings.to_dict(), "name": self.name, **self.record}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def checkpointer(self, nets: list, optimizers: list, trainer, progress, n_batches: int,
                     newest: Optional[str] = None) -> "Checkpointer":
        """``save(position) -> path or None``: a checkpoint of the run at ``position``; ``newest``:
        the checkpoint the run resumed from."""
        return Checkpointer(self, nets, optimizers, trainer, progress, n_batches, newest)


class Checkpointer:
    """Writes the run's checkpoints; ``newest`` is the newest good (finite) one, or None."""

    def __init__(self, folder: RunFolder, nets: list, optimizers: list, trainer, progress, n_batches: int,
                 newest: Optional[str] = None) -> None:
        self.folder, self.nets, self.optimizers, self.trainer = folder, nets, optimizers, trainer
        self.progress, self.n_batches, self.newest = progress, n_batches, newest

    def __call__(self, position) -> Optional[str]:
        # Imported here: sweeps and figures read run folders through this module without PyTorch.
        from subspaces.utils.checkpoint import count_non_finite, save_checkpoint, tensors_of
        from subspaces.utils.modules import unwrap

        s = self.folder.settings
        if not s.save:
            return None
        states = [unwrap(n).state_dict() for n in self.nets]
        optimizers = [o.state_dict() for o in self.optimizers if o is not None]
        # The loss is checked before each update; the update itself can still make the weights
        # non-finite. Every rank checks (DDP ranks hold the same weights) so all stop together.
        bad = count_non_finite(tensors_of([states, optimizers]))
        if bad:
            where = f"epoch {position.epoch + 1}, step {position.batch}" if position.batch else f"epoch {position.epoch}"
            raise Diverged(f"{bad} tensors of the weights or optimizer state became NaN or infinite by the end of {where} "
                           "and were not checkpointed; the run stopped: lower --lr (or add --warmup-length, or --amp none)")
        if self.folder.path is None:
            return None
        # An epoch boundary is named by the steps done; a mid-epoch one by the step just done,
        # as the original's --save-iters.
        it = position.epoch * self.n_batches + (position.batch - 1 if position.batch else 0)
        path = self.folder.path / checkpoint_name(position.epoch, it, position.batch == 1)
        if self.newest is not None and Path(self.newest).resolve() == path.resolve():
            return str(path)  # the checkpoint this run resumed from: the same weights, already there
        payload = {
            "epoch": position.epoch,
            "iter": it,
            "arch": s.model,
            "state_dicts": states,
            "optimizers": optimizers,
            "best_acc1": float(self.progress.best_acc1),
            "curr_acc1": float(self.progress.curr_acc1),
            "settings": self.folder.recorded_settings(),
            "batch": position.batch,
            "trainer": self.trainer.state_dict(),
        }
        if position.batch:
            payload.update(loss_sum=float(position.loss_sum), rng=position.rng)
        try:
            save_checkpoint(path, payload)
            self.newest = str(path)
            point_last(self.folder.path, path)
        except OSError as e:
            raise write_failed(e, path, self.newest) from None
        return str(path)

    def newest_whole(self) -> Optional[str]:
        """The checkpoint to continue from after an interrupt: the newest in the run folder (every
        named checkpoint is whole, being written atomically, even one whose write the interrupt
        followed before it was recorded here; ``last.pt`` is pointed at it), else :attr:`newest`."""
        files = checkpoint_files(self.folder.path) if self.folder.path is not None else []
        if not files:
            return self.newest
        with contextlib.suppress(OSError):
            point_last(self.folder.path, files[-1].path)
        return str(files[-1].path)

    def good_hint(self) -> str:
        """Where a stopped run's good weights are, for its error line."""
        if self.newest:
            return f"the newest good checkpoint is {self.newest}"
        return "no checkpoint was saved" if self.folder.settings.save else "nothing was saved (no --save)"
