"""Trainers by name (``--trainer``), each with the original's ``init``/``train``/``test`` roles.

Every module of this package is imported here, so a new trainer is one file under ``trainers/``
with a class decorated ``@TRAINERS.register``. An import error in a trainer module surfaces as
itself, not as an unknown trainer name.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import TRAINERS, Position, ResultRow, RunContext, TestResult, Trainer

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def get_trainer(name: str) -> type:
    """The trainer class ``--trainer`` names; a UserError lists the valid names otherwise."""
    return TRAINERS.get(name)


__all__ = ["Position", "ResultRow", "RunContext", "TestResult", "Trainer", "TRAINERS", "get_trainer"]
