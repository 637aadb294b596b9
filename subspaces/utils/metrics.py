"""Classification metrics, vectorised over whole test sets (no per-sample Python loop).

All take logits ``(N, K)`` (or probabilities where named) and integer targets ``(N,)``.
ECE uses 20 equal-width confidence bins (the original's ``M = 20``); the ensemble helpers combine
members by summed logits (the original's ensembles) or averaged probabilities.
"""
from __future__ import annotations

import itertools
from typing import Optional, Sequence

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


NUM_ECE_BINS = 20


def ece(probs: torch.Tensor, targets: torch.Tensor, num_bins: int = NUM_ECE_BINS) -> float:
    """Expected calibration error with ``num_bins`` equal-width confidence bins.

    ``sum_b |sum_{i in b} (correct_i - conf_i)| / N``; the bin of confidence c is
    ``min(floor(c * num_bins), num_bins - 1)``, as the original.
    """
    conf, pred = probs.max(dim=1)
    correct = (pred == targets).to(probs.dtype)
    bins = (conf * num_bins).long().clamp(0, num_bins - 1)  # NaN outputs land in bin 0 (and give NaN), not out of range
    gap = torch.zeros(num_bins, dtype=probs.dtype, device=probs.device)
    gap.index_add_(0, bins, correct - conf)
    return (gap.abs().sum() / len(targets)).item()


def tv_distance(p: torch.Tensor, q: torch.Tensor) -> float:
    """Mean total variation distance ``0.5 * sum_k |p_k - q_k|`` between two predictive distributions."""
    return (0.5 * (p - q).abs().sum(dim=1)).mean().item()


def disagreement(logits_a: torch.Tensor, logits_b: torch.Tensor) -> float:
    """Fraction of examples on which the two models' top-1 predictions differ."""
    return (logits_a.argmax(dim=1) != logits_b.argmax(dim=1)).float().mean().item()


def disagreement_correct(logits_a: torch.Tensor, logits_b: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of examples on which the two predictions differ and one of them is right
    (the original ensemble trainer's ``percent_disagree_correct``)."""
    pa, pb = logits_a.argmax(dim=1), logits_b.argmax(dim=1)
    return ((pa != pb) & ((pa == targets) | (pb == targets))).float().mean().item()


def feature_cossim(fa: torch.Tensor, fb: torch.Tensor, squared: bool = True) -> float:
    """Mean (by default squared, as in Figure 4) cosine similarity of two models' penultimate
    features, example by example."""
    cos = F.cosine_similarity(fa.flatten(1).float(), fb.flatten(1).float(), dim=1)
    return (cos.pow(2) if squared else cos).mean().item()


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


def ensemble_probs(logits: Sequence[torch.Tensor], mode: str = "logits") -> torch.Tensor:
    """The ensemble's predictive distribution from its members' logits.

    ``logits``: the original's ensembles sum the logits; the argmax of the sum is the argmax of the
    mean, and the mean is the one whose softmax is a calibrated distribution (summing k members
    would sharpen it k-fold), so NLL/ECE/Brier use ``softmax(mean of logits)``, as the original's
    simplex ensembles do. ``probs``: the mean of the members' softmax outputs.
    """
    if mode == "logits":
        total = logits[0].float()
        for x in logits[1:]:
            total = total + x.float()
        return (total / len(logits)).softmax(dim=1)
    if mode == "probs":
        return torch.stack([x.float().softmax(dim=1) for x in logits]).mean(dim=0)
    raise ValueError(f"unknown ensemble mode {mode!r}; use 'logits' or 'probs'")


def ensemble_metrics(logits: Sequence[torch.Tensor], targets: torch.Tensor, mode: str = "logits", prefix: str = "") -> dict:
    """Accuracy, NLL, ECE and Brier score of the ensemble of ``logits`` (see :func:`ensemble_probs`).

    In ``logits`` mode the accuracy is that of the summed logits, exactly as the original computes it.
    """
    probs = ensemble_probs(logits, mode)
    m = probs_metrics(probs, targets, prefix)
    if mode == "logits":
        total = logits[0].float()
        for x in logits[1:]:
            total = total + x.float()
        m[f"{prefix}acc"] = accuracy(total, targets)
    return m


def pairwise_stats(logits: Sequence[torch.Tensor], targets: torch.Tensor, features: Optional[Sequence[torch.Tensor]] = None) -> dict:
    """Means over all pairs of members: TV distance of their softmax outputs (``tvdist``),
    disagreement (``percent_disagree``, ``percent_disagree_correct``) and, with features, the
    plain (``feat_cossim_plain``) and squared (``feat_cossim_sq``) cosine similarity of their
    penultimate features. An empty dict for fewer than two members."""
    pairs = list(itertools.combinations(range(len(logits)), 2))
    if not pairs:
        return {}
    probs = [x.float().softmax(dim=1) for x in logits]
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    out = {
        "tvdist": mean([tv_distance(probs[i], probs[j]) for i, j in pairs]),
        "percent_disagree": mean([disagreement(logits[i], logits[j]) for i, j in pairs]),
        "percent_disagree_correct": mean([disagreement_correct(logits[i], logits[j], targets) for i, j in pairs]),
    }
    if features is not None:
        out["feat_cossim_plain"] = mean([feature_cossim(features[i], features[j], squared=False) for i, j in pairs])
        out["feat_cossim_sq"] = mean([feature_cossim(features[i], features[j]) for i, j in pairs])
    return out


def path_stats(values: Sequence[float], dl: Sequence[float]) -> dict:
    """dnn-mode-connectivity's ``stats`` of a quantity along a path: ``min``, ``max``, ``avg`` (the
    plain mean over the points) and ``int``, the length-weighted mean by the trapezoid rule,
    ``sum_i (v_i + v_{i+1}) / 2 * dl_i / sum_i dl_i`` with ``dl_i`` the distance between points i
    and i + 1 (NaN for a path of length 0, as its 0/0)."""
    v = [float(x) for x in values]
    length = float(sum(dl))
    trapezoid = sum(0.5 * (a + b) * d for a, b, d in zip(v, v[1:], dl))
    return {"min": min(v), "max": max(v), "avg": sum(v) / len(v), "int": trapezoid / length if length > 0 else float("nan")}
