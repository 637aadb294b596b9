"""The interface every model has: penultimate features and a classifier on top of them."""
from __future__ import annotations

import torch
import torch.nn as nn


class Net(nn.Module):
    """A classifier split into ``features`` (penultimate, ``(B, F)``) and ``classify``.

    ``forward`` returns logits; ``forward_with_features`` returns ``(logits, features)``, the
    features being the classifier's input (used for the feature cosine similarity, Figure 4).
    """

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))

    def forward_with_features(self, x: torch.Tensor) -> tuple:
        """``(logits, penultimate features)`` in one pass."""
        f = self.features(x)
        return self.classify(f), f
