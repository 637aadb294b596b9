"""What ``--resume CKPT`` may change about a run, and what it may not (issue 19).

A resumed run continues the experiment its checkpoint's ``settings`` describe:

- the flags that decide the networks and their state dict (:data:`ARCHITECTURE`) cannot change:
  one that contradicts the checkpoint is refused in one line, one left at its default is taken
  from the checkpoint and said once;
- the other flags of the experiment (learning rate, ``--beta``, epochs, ...) may change; each change
  is printed in one line (``resume: --lr 0.1 -> 0.05``) and recorded in settings.txt and the
  checkpoints as ``changed_on_resume``, beside ``resumed_from``.

Where and how a run executes (``sweep.NOT_IDENTITY``: log folder, device, checkpoint flags) is not
compared, so a sweep resuming its own runs with the same settings says nothing. Loading weights
only (``--pretrained``) and evaluations of N checkpoints are not resumes and are not checked here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from subspaces.args import Settings, replace
from subspaces.utils.errors import UserError

# Flags that decide the networks (their state dict, its number of models, how they were initialised).
ARCHITECTURE = ("set", "trainer", "model", "model_name", "conv_type", "bn_type", "n", "width_mult", "output_size",
                "num_models", "conv_init", "mode", "nonlinearity")
# Left unset (None), these are decided by the data set (its default model and number of classes).
DATA_DEFAULTS = ("model", "model_name", "output_size")
# Settings that only mirror another one (``--trainswa`` is ``--trainer swa``).
MIRRORS = frozenset({"trainswa"})


def flag(key: str) -> str:
    """The command-line flag of setting ``key``."""
    return "--" + key.replace("_", "-")


def _plain(v: object) -> object:
    return tuple(v) if isinstance(v, list) else v


def _show(v: object) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return "unset" if v is None else str(v)


@dataclass
class Resumed:
    """A resume's checkpoint, its settings, and the flags taken from it."""

    path: str
    saved: dict
    adopted: dict = field(default_factory=dict)
    asked: dict = field(default_factory=dict)  # the DATA_DEFAULTS as the flags gave them

    def changed(self, s: Settings) -> dict:
        """``{key: (checkpoint's value, this run's)}`` of the experiment's flags that differ."""
        from subspaces.sweep import NOT_IDENTITY

        out = {}
        for f in dataclasses.fields(Settings):
            k = f.name
            if k in NOT_IDENTITY or k in ARCHITECTURE or k in MIRRORS or k not in self.saved:
                continue
            if _plain(self.saved[k]) != getattr(s, k):
                out[k] = (_plain(self.saved[k]), getattr(s, k))
        return out

    def notes(self, s: Settings, data) -> list:
        """The lines a resume prints once: the flags taken from the checkpoint, the flags changed.
        ``s`` has the data set's defaults filled in (``data``), to tell which adoptions are news."""
        from subspaces.main import with_data_defaults

        would_be = with_data_defaults(replace(s, **self.asked), data) if self.asked else s
        taken = [k for k in self.adopted if k not in DATA_DEFAULTS or getattr(would_be, k) != self.adopted[k]]
        lines = []
        if taken:
            lines.append("resume: " + ", ".join(f"{flag(k)} {_show(self.adopted[k])}" for k in taken) + f" taken from {self.path}")
        changed = self.changed(s)
        if changed:
            lines.append("resume: " + ", ".join(f"{flag(k)} {_show(a)} -> {_show(b)}" for k, (a, b) in changed.items()))
        return lines

    def record(self, s: Settings) -> dict:
        """What settings.txt and the checkpoints record of the resume."""
        return {"resumed_from": self.path,
                "changed_on_resume": {k: [_record(a), _record(b)] for k, (a, b) in self.changed(s).items()}}


def _record(v: object) -> object:
    return list(v) if isinstance(v, tuple) else v


def check_architecture(s: Settings, ckpt: dict, path: str) -> tuple:
    """``(settings, Resumed)``: the run's settings with the architecture flags left at their defaults
    taken from the checkpoint; a flag that contradicts it raises a one-line UserError."""
    saved = ckpt.get("settings") or {}
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    adopted = {}
    for k in ARCHITECTURE:
        if k not in saved or _plain(saved[k]) == getattr(s, k):
            continue
        if getattr(s, k) != defaults[k] and not (k == "n" and "conv_type" in adopted):
            raise UserError(f"checkpoint {path} was trained with {flag(k)} {_show(saved[k])}, not {_show(getattr(s, k))}; "
                            f"drop {flag(k)} to resume it (it is taken from the checkpoint), or pass --pretrained to start a new run from its weights")
        adopted[k] = _plain(saved[k])
    asked = {k: getattr(s, k) for k in DATA_DEFAULTS if k in adopted}
    return replace(s, **adopted), Resumed(str(path), saved, adopted, asked)
