"""Models, built through :class:`Builder` from layer types named on the command line.

Every model is a :class:`Net` (``features`` + ``classify``) registered by name for ``--model``.
"""
from __future__ import annotations

from . import cifar_resnet, digits_net  # noqa: F401  (register the models)
from .base import ModelSpec, Net
from .builder import Builder
from . import resnet, tinyimagenet_resnet  # noqa: F401  (register the ImageNet-scale models)
from .registry import MODELS, register_model


def get_model(
    name: str,
    builder: Builder,
    *,
    output_size: int,
    in_channels: int = 3,
    model_name: str | None = None,
    width_mult: float = 1.0,
    dropout: float = 0.0,
) -> Net:
    """Build the registered model ``name`` with the builder's layer types (flags: :class:`ModelSpec`)."""
    return MODELS.get(name)(builder, ModelSpec(output_size, in_channels, model_name, width_mult, dropout))


__all__ = ["Builder", "MODELS", "ModelSpec", "Net", "get_model", "register_model"]
