"""The model registry: classes register by decorator and are looked up by name (``--model``)."""
from __future__ import annotations

from subspaces.utils.registry import Registry

MODELS: Registry = Registry("model", "--model")
register_model = MODELS.register
