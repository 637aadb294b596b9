"""Classification metrics, vectorised over whole test sets (no per-sample Python loop).

All take logits ``(N, K)`` (or probabilities where named) and integer targets ``(N,)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy."""
    return (logits.argmax(dim=1) == targets).float().mean().item()


def nll(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean negative log-likelihood of the targets (cross-entropy)."""
    return F.cross_entropy(logits.float(), targets).item()


def nll_from_probs(probs: torch.Tensor, targets: torch.Tensor, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood from probabilities (for probability-averaged ensembles)."""
    return -probs.gather(1, targets[:, None]).clamp_min(eps).log().mean().item()


def brier(probs: torch.Tensor, targets: torch.Tensor) -> float:
    """Brier score: mean over examples of ``sum_k (p_k - onehot_k)^2``."""
    onehot = F.one_hot(targets, probs.shape[1]).to(probs.dtype)
    return (probs - onehot).pow(2).sum(dim=1).mean().item()


def ece(probs: torch.Tensor, targets: torch.Tensor, num_bins: int = 20) -> float:
    """Expected calibration error with ``num_bins`` equal-width confidence bins.

    ``sum_b |sum_{i in b} (correct_i - conf_i)| / N``; the bin of confidence c is
    ``min(floor(c * num_bins), num_bins - 1)``, as the original.
    """
    conf, pred = probs.max(dim=1)
    correct = (pred == targets).to(probs.dtype)
    bins = (conf * num_bins).long().clamp(max=num_bins - 1)
    gap = torch.zeros(num_bins, dtype=probs.dtype, device=probs.device)
    gap.index_add_(0, bins, correct - conf)
    return (gap.abs().sum() / len(targets)).item()


def tv_distance(p: torch.Tensor, q: torch.Tensor) -> float:
    """Mean total variation distance ``0.5 * sum_k |p_k - q_k|`` between two predictive distributions."""
    return (0.5 * (p - q).abs().sum(dim=1)).mean().item()


def disagreement(logits_a: torch.Tensor, logits_b: torch.Tensor) -> float:
    """Fraction of examples on which the two models' top-1 predictions differ."""
    return (logits_a.argmax(dim=1) != logits_b.argmax(dim=1)).float().mean().item()


def feature_cossim(fa: torch.Tensor, fb: torch.Tensor) -> float:
    """Mean squared cosine similarity of two models' penultimate features, example by example."""
    return F.cosine_similarity(fa.flatten(1).float(), fb.flatten(1).float(), dim=1).pow(2).mean().item()


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor, prefix: str = "") -> dict:
    """Accuracy, NLL, ECE (20 bins) and Brier score of one set of logits."""
    probs = logits.float().softmax(dim=1)
    return {
        f"{prefix}acc": accuracy(logits, targets),
        f"{prefix}nll": nll(logits, targets),
        f"{prefix}ece": ece(probs, targets),
        f"{prefix}brier": brier(probs, targets),
    }


def probs_metrics(probs: torch.Tensor, targets: torch.Tensor, prefix: str = "") -> dict:
    """Accuracy, NLL, ECE and Brier score of predictive probabilities."""
    return {
        f"{prefix}acc": (probs.argmax(dim=1) == targets).float().mean().item(),
        f"{prefix}nll": nll_from_probs(probs, targets),
        f"{prefix}ece": ece(probs, targets),
        f"{prefix}brier": brier(probs, targets),
    }
