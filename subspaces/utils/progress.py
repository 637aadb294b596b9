"""Progress bars of a run (training epochs, the evaluation grid, simplex vertices, SWAG samples,
BatchNorm recomputation)."""
from __future__ import annotations

from typing import Iterable, Optional

from tqdm import tqdm

from subspaces.utils import distributed


def progress_bar(iterable: Iterable, desc: str, total: Optional[int] = None, main: Optional[bool] = None) -> tqdm:
    """A tqdm bar over ``iterable`` on stderr, cleared when done.

    Drawn only when stderr is a terminal (tqdm's ``disable=None``): a sweep's ``--quiet``, which sends
    a run's output to ``sweep.log``, a pipe or a batch job's log file get no bars. Under DDP only
    rank 0 draws (``main``: whether this process is rank 0; default: from the process group).
    A disabled bar yields the items as they come, with no per-item work.
    """
    if main is None:
        main = distributed.current().main
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True, disable=None if main else True)
