"""Child processes that stop with their parent: the runs of a ``--parallel`` sweep and the ranks
that ``--multigpu`` spawns.

A parent killed by SIGKILL runs no clean-up, so its children would train on as orphans (holding
GPUs, writing rows nobody waits for). Each child asks to be told instead.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies
ORPHAN_GRACE_S = 60.0  # after the parent died: time to write a checkpoint before SIGKILL


def stop_with_parent(parent: int, grace_s: float = ORPHAN_GRACE_S) -> None:
    """SIGTERM this process when its parent ``parent`` dies, even by SIGKILL (a training run then
    checkpoints at its next step and exits): Linux's ``PR_SET_PDEATHSIG``, and, on any system, a
    watchdog thread that notices the new parent; it sends SIGKILL if ``grace_s`` later the process
    still runs."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    threading.Thread(target=_watch_parent, args=(parent, grace_s), name="stop-with-parent", daemon=True).start()


def _watch_parent(parent: int, grace_s: float) -> None:
    while os.getppid() == parent:  # also true at once when the parent died before prctl took effect
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_s)
    os.kill(os.getpid(), signal.SIGKILL)
