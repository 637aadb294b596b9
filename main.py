"""Train or evaluate one run, as the original's ``python main.py --set ... --conv-type ...``.

The code is the ``subspaces`` package (:mod:`subspaces.main`); after ``pip install`` the same
command is ``subspaces-train``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the clone's subspaces package first

from subspaces.main import cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli())
