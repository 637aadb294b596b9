"""Atomic file writes: a temp file in the same folder, then a rename, so no reader ever sees a
half-written file and an interrupted write leaves the old file (or none) behind.

The temp file is created with mode 0666 and the process's umask applied (as ``open`` does), not
``mkstemp``'s 0600, and a file that is replaced keeps its mode: a shared ``results.csv`` made
group-writable stays so. Its contents reach the disk before the rename (``fsync``), so a power
cut leaves the old file or the new one, never an empty one.
"""
from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Callable


def _new_temp(path: Path) -> Path:
    """A new empty file beside ``path``; the kernel applies the umask to its 0666 mode."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _fsync(path: "str | Path") -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: "str | Path", write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``, then rename ``tmp_path`` onto ``path`` (keeping an existing file's mode)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(path)
    try:
        write(str(tmp))
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        except FileNotFoundError:
            pass  # a new file keeps the umask's mode
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if os.name == "posix":
        _fsync(path.parent)  # the rename itself survives a power cut


def atomic_write_text(path: "str | Path", text: str) -> None:
    """Write ``text`` to ``path`` atomically."""

    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, _write)


def check_new_file(out: "str | Path", inputs: "list[str | Path]" = (), force: bool = False, flag: str = "--out") -> Path:
    """``out`` as a file that a command may write: not a folder, not below a file, not one of
    ``inputs`` (by any path, symlink or hard link), and not an existing file unless ``force``; a
    one-line UserError names the fix. Called before anything is loaded or computed."""
    from subspaces.utils.errors import UserError

    out = Path(out).expanduser()
    if out.is_dir():
        raise UserError(f"{flag} {out} is a folder; pass a file name such as {out / 'net.pt'}")
    parent = next((p for p in out.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UserError(f"{flag} {out} is below {parent}, which is a file; pass a path in a folder")
    for src in inputs:
        src = Path(src).expanduser()
        if src.resolve() == out.resolve() or (out.exists() and src.exists() and os.path.samefile(src, out)):
            raise UserError(f"{flag} {out} is one of the inputs; pass a new file name")
    if os.path.lexists(out) and not force:
        raise UserError(f"{flag} {out} exists; pass another file name, or --force to replace it")
    return out
