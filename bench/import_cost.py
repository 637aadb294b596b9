"""Start-up cost: the seconds a fresh Python process spends importing what a command needs.

Reading results and drawing figures should not pay for PyTorch, and a training run should not
pay for what it does not use (torchvision's detection models, the figure code). Each command is
run in a new interpreter (the cost a user meets at every ``plot.py`` or ``main.py --help``), and
each checkout given is measured side by side with the others (interleaved repetitions, medians of
wall-clock seconds). Give an older checkout (``git worktree add /tmp/old <commit>``) to compare:

    python bench/import_cost.py
    python bench/import_cost.py --checkout /tmp/old --reps 7
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import common  # first: it puts the repository on sys.path
import torch

# What a user runs, and what each needs to import (run from the checkout's root).
COMMANDS = {
    "import subspaces.utils.results": ["-c", "import subspaces.utils.results"],
    "analyze_results/plot.py --help": ["analyze_results/plot.py", "--help"],
    "import subspaces.main": ["-c", "import subspaces.main"],
    "main.py --help": ["main.py", "--help"],
}


def run_in(checkout: Path, argv: list) -> None:
    """Run ``python argv`` in ``checkout`` (its own package first on the path); fail loudly."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run([sys.executable, *argv], cwd=checkout, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: python {' '.join(argv)} failed in {checkout}: {done.stderr.strip().splitlines()[-1:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", default=[], type=Path,
                        help="another checkout of the project to measure beside this one (repeatable)")
    parser.add_argument("--reps", type=int, default=common.MIN_REPS, help=f"repetitions (at least {common.MIN_REPS})")
    parser.add_argument("--command", action="append", choices=sorted(COMMANDS), default=None,
                        help="measure only this command (repeatable; default: all)")
    args = parser.parse_args()
    checkouts = {"this checkout": common.ROOT}
    for c in args.checkout:
        if not (c / "subspaces" / "__init__.py").is_file():
            raise SystemExit(f"error: --checkout {c} holds no subspaces package; pass the root of a clone or worktree")
        checkouts[str(c)] = c.resolve()
    common.header("Start-up cost of the commands (seconds of a fresh interpreter, wall clock)", torch.device("cpu"))
    rows = []
    for label in args.command or COMMANDS:
        argv = COMMANDS[label]
        variants = {name: (lambda c=c: run_in(c, argv)) for name, c in checkouts.items()}
        times = common.interleaved(variants, args.reps, torch.device("cpu"), log=False)
        rows.append([label] + [f"{common.median(times[name]):.2f}" for name in checkouts])
    print(common.table(rows, ["command"] + [f"{name} (s)" for name in checkouts]))


if __name__ == "__main__":
    main()
