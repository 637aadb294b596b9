"""Trainers by name (``--trainer``), each with the original's ``init``/``train``/``test`` roles."""
from __future__ import annotations

from utils.errors import unknown_name

from .base import ResultRow, RunContext, TestResult, Trainer
from .default import DefaultTrainer
from .ensemble import EnsembleTrainer
from .eval_one_dim_subspaces import EvalOneDimSubspaces
from .eval_simplexes import EvalSimplexes
from .swa import SWATrainer
from .train_one_dim_subspaces import OneDimSubspaceTrainer
from .train_simplexes import SimplexTrainer

TRAINERS: dict = {t.name: t for t in (DefaultTrainer, OneDimSubspaceTrainer, SimplexTrainer, EvalOneDimSubspaces, EvalSimplexes, EnsembleTrainer, SWATrainer)}


def register_trainer(cls: type) -> type:
    """Class decorator: make a :class:`Trainer` subclass available as ``--trainer <cls.name>``."""
    TRAINERS[cls.name] = cls
    return cls


def get_trainer(name: str) -> type:
    """The trainer class ``--trainer`` names; a UserError lists the valid names otherwise."""
    if name not in TRAINERS:
        raise unknown_name("trainer", name, list(TRAINERS), "--trainer")
    return TRAINERS[name]


__all__ = ["ResultRow", "RunContext", "TestResult", "Trainer", "TRAINERS", "get_trainer", "register_trainer"]
