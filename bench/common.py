"""What the benchmark scripts share: the header (command line, machine), interleaved timing, tables.

Every figure a benchmark prints is the median of at least 5 repetitions, and the variants it
compares are measured side by side: each repetition runs every variant once, in an order that
rotates from one repetition to the next, so that load from other processes on a shared machine
falls on all of them alike.
"""
from __future__ import annotations

import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

MIN_REPS = 5


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (or what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> str:
    """One line naming the hardware and software the figures come from."""
    cpu = f"{cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    gpu = f"GPU {torch.cuda.get_device_name(device)}; " if device.type == "cuda" else ""
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average %.1f" % os.getloadavg()[0]
    return f"{gpu}CPU {cpu}{load}; torch {torch.__version__}, Python {platform.python_version()}"


def header(title: str, device: torch.device) -> None:
    """Print the benchmark's title, its exact command line, the machine and the date."""
    print(f"# {title}")
    print(f"# command: python {' '.join(shlex.quote(a) for a in sys.argv)}")
    print(f"# machine: {machine(device)}")
    print(f"# date: {time.strftime('%Y-%m-%d %H:%M:%S')}")
    sys.stdout.flush()


def synchronize(device: torch.device) -> None:
    """Wait for the device (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(variants: "dict[str, Callable[[], object]]", reps: int, device: torch.device,
                log: bool = True) -> "dict[str, list]":
    """Seconds of each variant's call in each of ``reps`` repetitions, the variants interleaved.

    Repetition r runs the variants in the order rotated by r, so no variant is always first.
    """
    if reps < MIN_REPS:
        raise SystemExit(f"--reps {reps}: every figure is the median of at least {MIN_REPS} repetitions")
    names = list(variants)
    times: dict = {n: [] for n in names}
    for r in range(reps):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            synchronize(device)
            t0 = time.perf_counter()
            variants[n]()
            synchronize(device)
            times[n].append(time.perf_counter() - t0)
        if log:
            done = ", ".join(f"{n} {times[n][-1]:.3f}s" for n in names)
            print(f"#   repetition {r + 1}/{reps}: {done}", file=sys.stderr, flush=True)
    return times


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over repetitions of num[r] / den[r] (each pair measured side by side)."""
    return statistics.median(a / b for a, b in zip(num, den))


def table(rows: "list[list]", headers: "list[str]") -> str:
    """A Markdown table (pasted as is into BENCHMARKS.md)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


def folder_subset(root: str, n_train: int, n_test: int, dest: str) -> int:
    """Link every k-th image of ``root/train`` and ``root/test`` (so every class is in) into
    ``dest``, same layout; returns the number of classes."""
    import numpy as np

    from subspaces.data.folders import find_classes, scan

    root = os.path.expanduser(root)
    classes = find_classes(os.path.join(root, "train"))
    idx = {c: i for i, c in enumerate(classes)}
    for split, n in (("train", n_train), ("test", n_test)):
        samples = scan(os.path.join(root, split), idx)
        if n < len(samples):
            samples = [samples[i] for i in np.linspace(0, len(samples) - 1, n).round().astype(int)]
        for path, target in samples:
            link = Path(dest, split, classes[target], Path(path).name)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.abspath(path))
    return len(classes)
