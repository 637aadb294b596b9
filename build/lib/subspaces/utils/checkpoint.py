"""Checkpoints: written atomically, loaded safely (``weights_only=True``), original's included.

A checkpoint holds the original's keys (``epoch``, ``iter``, ``arch``, ``state_dicts``,
``optimizers``, ``best_acc1``, ``curr_acc1``) plus ``settings``, the run's configuration. The
original's checkpoints store accuracies as NumPy scalars and, when trained on GPU, keys with a
``module.`` prefix: loading allows exactly those NumPy scalar types and strips the prefix only
from state dicts whose every key carries it.
"""
from __future__ import annotations

from pathlib import Path

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
    """Save ``payload`` to ``path`` atomically (temp file, then rename)."""
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


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
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"checkpoint {path} is corrupt or not a safe checkpoint ({first[:160]}); pass a checkpoint written by main.py --save") from None
    if not isinstance(ckpt, dict) or "state_dicts" not in ckpt:
        raise UserError(f"{path} is not a learning-subspaces checkpoint (no 'state_dicts'); pass a checkpoint written by main.py --save")
    return ckpt


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
