"""Checkpoints: written atomically, loaded safely (``weights_only=True``), original's included.

A checkpoint holds the original's keys (``epoch``, ``iter``, ``arch``, ``state_dicts``,
``optimizers``, ``best_acc1``, ``curr_acc1``) plus ``settings``, the run's configuration. The
original's checkpoints store accuracies as NumPy scalars and, when trained on GPU, keys with a
``module.`` prefix: loading allows exactly those NumPy scalar types and strips the prefix only
from state dicts whose every key carries it.
"""
from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn as nn

from subspaces.utils.errors import UserError
from subspaces.utils.io import atomic_write

CHECKPOINT_KEYS = ("epoch", "iter", "arch", "state_dicts", "optimizers", "best_acc1", "curr_acc1")


def _numpy_scalar_globals() -> list:
    """The globals a pickled NumPy float/int scalar needs, under NumPy 1 and 2 module names."""
    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    allowed = [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
    ]
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType"):
        t = getattr(np.dtypes, name, None)
        if t is not None:
            allowed.append(t)
    return allowed


def save_checkpoint(path: "str | Path", payload: dict) -> None:
    """Save ``payload`` to ``path`` atomically (temp file, then rename).

    ``torch.save`` writes through a Python file object: a full disk or a folder that turned
    read-only then raises ``OSError`` with its errno (``ENOSPC``...), which callers turn into one
    line, where writing to a path name raises an opaque ``RuntimeError`` from the zip writer."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            torch.save(payload, f)

    atomic_write(path, write)


def load_checkpoint(path: "str | Path", flag: str = "--resume") -> dict:
    """Load a checkpoint with ``weights_only=True``; corrupt or foreign files raise UserError
    (naming ``flag``, the option that passed the path)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found; pass an existing file to {flag}")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any failure to unpickle safely means: not a checkpoint we can trust
        raise UserError(f"checkpoint {path} is corrupt or not a safe checkpoint ({_load_failure(e)}); "
                        "pass a checkpoint written by main.py --save") from None
    if not isinstance(ckpt, dict) or "state_dicts" not in ckpt:
        raise UserError(f"{path} is not a learning-subspaces checkpoint (no 'state_dicts'); pass a checkpoint written by main.py --save")
    problem = malformed(ckpt)
    if problem:
        raise UserError(f"checkpoint {path} is malformed ({problem}); pass a checkpoint written by main.py --save, or an earlier one of the run")
    return ckpt


# PyTorch's paragraphs around the safe unpickler's own reason (its advice to load with
# weights_only=False is one of them; this project never does).
_WRAPPING = ("Please file an issue", "Check the documentation of torch.load")


def _load_failure(e: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in a few words: the safe unpickler's own
    reason without PyTorch's paragraphs around it, else the error's first line."""
    text = str(e).strip()
    if text.startswith("Weights only load failed"):
        body = text.split("\n\n", 1)[1] if "\n\n" in text else ""
        lines = [line.split("WeightsUnpickler error:")[-1].strip() for line in body.splitlines() if not line.startswith(_WRAPPING)]
        reason = next((line for line in lines if line), "")
        text = f"the safe unpickler refused it: {reason}" if reason else "the safe unpickler refused it"
    first = text.splitlines()[0] if text else type(e).__name__
    return first[:160]


def _count(value: object, least: int = 0, whole: bool = True) -> bool:
    """A whole number (Python, NumPy or 0-d tensor; not a bool) >= ``least``, or any finite number."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        return False
    return (float(value).is_integer() and value >= least) if whole else True


def _generator_problem(state: object) -> str:
    """Why ``state`` is not a CPU generator state ``torch.Generator.set_state`` takes, or ""."""
    if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8:
        return f"a {type(state).__name__}, not a uint8 tensor"
    try:
        torch.Generator().set_state(state)
    except (RuntimeError, TypeError, ValueError) as e:
        return str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
    return ""


def _rng_problem(rng: object) -> str:
    """Why a mid-epoch checkpoint's ``rng`` (what ``trainers.base.rng_state`` saved; under DDP
    ``{"ranks": [...]}``) cannot be restored, or ""."""
    if not isinstance(rng, dict):
        return f"'rng' is a {type(rng).__name__}, not a dict"
    if "ranks" in rng:
        ranks = rng["ranks"]
        if not isinstance(ranks, list) or not ranks:
            return "'rng' 'ranks' is not a list of generator states"
        return next((p for p in map(_rng_problem, ranks) if p), "")
    if "torch" not in rng:
        return "'rng' has no 'torch' generator state"
    for key in ("torch", "epoch"):
        if key in rng and _generator_problem(rng[key]):
            return f"'rng' '{key}' is not a generator state: {_generator_problem(rng[key])}"
    cuda = rng.get("cuda", [])
    if not isinstance(cuda, (list, tuple)) or not all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8 for t in cuda):
        return "'rng' 'cuda' is not a list of generator states"
    return ""


def malformed(ckpt: dict) -> str:
    """What in a loaded checkpoint has the wrong type (so that resuming it would crash half-way,
    after the run folder is made), or "". Checks every key this project or the original writes."""
    sds = ckpt["state_dicts"]
    if not isinstance(sds, list) or not all(isinstance(sd, dict) and all(isinstance(v, torch.Tensor) for v in sd.values()) for sd in sds):
        return "'state_dicts' is not a list of state dicts"
    if not isinstance(ckpt.get("optimizers", []), list) or not all(isinstance(o, dict) for o in ckpt.get("optimizers", [])):
        return "'optimizers' is not a list of optimizer states"
    for key in ("epoch", "iter", "batch"):
        if key in ckpt and not _count(ckpt[key]):
            return f"'{key}' is {ckpt[key]!r}, not a whole number >= 0"
    for key in ("best_acc1", "curr_acc1", "loss_sum"):
        if key in ckpt and not _count(ckpt[key], whole=False):
            return f"'{key}' is {ckpt[key]!r}, not a finite number"
    for key in ("settings", "trainer"):
        if ckpt.get(key) is not None and not isinstance(ckpt[key], dict):
            return f"'{key}' is a {type(ckpt[key]).__name__}, not a dict"
    if "rng" in ckpt and ckpt.get("batch"):
        return _rng_problem(ckpt["rng"])
    return ""


def tensors_of(tree: object) -> Iterable[torch.Tensor]:
    """Every tensor in nested dicts, lists and tuples (state dicts, optimizer states)."""
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict):
        for v in tree.values():
            yield from tensors_of(v)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from tensors_of(v)


def count_non_finite(tensors: Iterable[torch.Tensor]) -> int:
    """How many floating-point tensors hold a NaN or an infinity.

    One fused pass per device and dtype (``torch._foreach_norm``: a NaN or inf makes the norm
    non-finite) and one host sync; only tensors whose norm is not finite (diverged, or so large
    that the norm overflows) are looked at element by element, so the count is exact.
    """
    groups: dict = {}
    for t in tensors:
        if t.is_floating_point() and t.numel():
            groups.setdefault((t.device, t.dtype), []).append(t.detach())
    bad = 0
    for ts in groups.values():
        norms = torch.stack(torch._foreach_norm(ts, 2))
        suspects = (~torch.isfinite(norms)).nonzero().flatten().tolist()
        bad += sum(1 for i in suspects if not bool(torch.isfinite(ts[i]).all()))
    return bad


def strip_module_prefix(state_dict: dict) -> dict:
    """Drop DataParallel's ``module.`` prefix, only when every key has it."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def check_same_architecture(state_dicts: list) -> None:
    """``[(path, state_dict), ...]`` hold one architecture: the same keys with the same shapes
    (``num_batches_tracked`` aside); otherwise a UserError naming the two checkpoints that differ."""
    if len(state_dicts) < 2:
        return
    path0, first = state_dicts[0][0], strip_module_prefix(state_dicts[0][1])
    keep = lambda sd: {k: tuple(v.shape) for k, v in sd.items() if not k.endswith("num_batches_tracked")}  # noqa: E731
    shapes0 = keep(first)
    for path, sd in state_dicts[1:]:
        shapes = keep(strip_module_prefix(sd))
        if shapes == shapes0:
            continue
        only0, only = sorted(set(shapes0) - set(shapes)), sorted(set(shapes) - set(shapes0))
        wrong = [k for k in shapes0 if k in shapes and shapes[k] != shapes0[k]]
        if wrong:
            detail = f"{wrong[0]} is {shapes0[wrong[0]]} in one, {shapes[wrong[0]]} in the other"
        else:
            detail = f"{(only0 or only)[0]} is in only one of them"
        raise UserError(f"checkpoints {path0} and {path} hold different architectures ({detail}); "
                        f"pass checkpoints of one --model, --model-name, --width-mult and --conv-type")

def state_mismatch(own: dict, state_dict: dict) -> str:
    """What keeps ``state_dict`` from loading into a model whose state is ``own`` (``{key: tensor or
    shape}``): counts of missing, unexpected and wrongly shaped keys with an example each, or "".
    ``num_batches_tracked`` buffers may be missing (older checkpoints); nothing else may."""
    shape = lambda v: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v)  # noqa: E731
    missing = [k for k in own if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [k for k in own if k in state_dict and shape(own[k]) != tuple(state_dict[k].shape)]
    parts = [f"{len(keys)} {label} (e.g. {keys[0]})" for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
    return ", ".join(parts)


def load_model_state(model: nn.Module, state_dict: dict, source: str, hint: str = "") -> None:
    """Load ``state_dict`` into ``model`` strictly; a mismatch raises UserError naming the fix.

    ``num_batches_tracked`` buffers may be missing (older checkpoints); nothing else may.
    """
    state_dict = strip_module_prefix(state_dict)
    problem = state_mismatch(model.state_dict(), state_dict)
    if problem:
        raise UserError(f"checkpoint {source} does not fit the model: {problem}; {hint or 'pass the --model, --model-name, --conv-type and --bn-type it was trained with'}")
    model.load_state_dict(state_dict, strict=False)


def as_float(value: object) -> float:
    """A float from a checkpoint value (Python, NumPy or tensor scalar)."""
    if isinstance(value, torch.Tensor):
        return float(value.item())
    return float(value)  # type: ignore[arg-type]
