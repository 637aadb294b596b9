"""The model registry: classes register by decorator and are looked up by name (``--model``)."""
from __future__ import annotations

from utils.errors import unknown_name

MODELS: dict = {}


def register_model(cls: type) -> type:
    """Class decorator: make ``cls`` available as ``--model <ClassName>``."""
    MODELS[cls.__name__] = cls
    return cls


def model_names() -> list:
    """The registered model names."""
    return sorted(MODELS)


def get_model_class(name: str) -> type:
    """The model class called ``name``; a UserError lists the valid names otherwise."""
    if name not in MODELS:
        raise unknown_name("model", name, list(MODELS), "--model")
    return MODELS[name]
