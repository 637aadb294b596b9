"""utils/metrics.py on small hand-made cases: every expected number is worked out by hand here.

Logits are written as ``log(p)``, so their softmax is exactly the probabilities ``p`` of the case.
"""
from __future__ import annotations

import math

import pytest
import torch

from subspaces.utils.evaluation import CachedBatches
from subspaces.utils.metrics import (
                                     accuracy,
                                     brier,
                                     classification_metrics,
                                     disagreement,
                                     disagreement_correct,
                                     ece,
                                     ensemble_metrics,
                                     ensemble_probs,
                                     feature_cossim,
                                     nll,
                                     nll_from_probs,
                                     pairwise_stats,
                                     probs_metrics,
                                     tv_distance,
                                     )

# Five examples, three classes. Confidence (max prob), 20-bin index (floor(conf * 20)), correct?
#   0.93 -> bin 18, right      0.81 -> bin 16, wrong (predicts 1, label 0)
#   0.57 -> bin 11, right      0.58 -> bin 11, right      0.56 -> bin 11, wrong (predicts 0, label 1)
P = torch.tensor([
    [0.93, 0.05, 0.02],
    [0.10, 0.81, 0.09],
    [0.57, 0.23, 0.20],
    [0.20, 0.22, 0.58],
    [0.56, 0.40, 0.04],
], dtype=torch.float64)
Y = torch.tensor([0, 0, 0, 2, 1])
LOGITS = P.log()


def test_accuracy_by_hand():
    assert accuracy(LOGITS, Y) == pytest.approx(3 / 5)


def test_ece_by_hand():
    # Per bin, |sum(correct) - sum(conf)| (the original's acc_bm - conf_bm), summed, over N:
    # bin 18: |1 - 0.93| = 0.07; bin 16: |0 - 0.81| = 0.81; bin 11: |2 - (0.57 + 0.58 + 0.56)| = 0.29.
    assert ece(P, Y) == pytest.approx((0.07 + 0.81 + 0.29) / 5)
    # With 2 bins (edges 0, 0.5, 1) all five land in bin 1: |3 - 3.45| / 5 = 0.09.
    assert ece(P, Y, num_bins=2) == pytest.approx(0.45 / 5)
    # Confidence exactly 1 goes to the last bin, not past it; a perfect prediction has ECE 0.
    assert ece(torch.tensor([[1.0, 0.0]]), torch.tensor([0])) == 0.0
    assert classification_metrics(LOGITS, Y)["ece"] == pytest.approx(0.234)


def test_nll_by_hand():
    expected = -(math.log(0.93) + math.log(0.10) + math.log(0.57) + math.log(0.58) + math.log(0.40)) / 5
    assert nll(LOGITS, Y) == pytest.approx(expected)
    assert nll_from_probs(P, Y) == pytest.approx(expected)


def test_brier_by_hand():
    # Example 1: (0.93-1)^2 + 0.05^2 + 0.02^2 = 0.0049 + 0.0025 + 0.0004 = 0.0078
    # Example 2: (0.10-1)^2 + 0.81^2 + 0.09^2 = 0.81 + 0.6561 + 0.0081 = 1.4742
    assert brier(P[:2], Y[:2]) == pytest.approx((0.0078 + 1.4742) / 2)
    assert probs_metrics(P[:2], Y[:2])["brier"] == pytest.approx(0.741)


def test_tv_distance_by_hand():
    p = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    q = torch.tensor([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]])
    # 0.5 * (0.3 + 0.2 + 0.5) = 0.5 for the first example, 0 for the second: mean 0.25.
    assert tv_distance(p, q) == pytest.approx(0.25)
    assert tv_distance(q, p) == pytest.approx(0.25)


def test_disagreement_and_feature_cossim_by_hand():
    a = torch.tensor([[2.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])  # predicts 0, 1, 0, 1
    b = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])  # predicts 1, 1, 1, 0
    y = torch.tensor([0, 1, 1, 0])
    assert disagreement(a, b) == pytest.approx(3 / 4)
    # Disagreeing examples 0, 2, 3: one of the two is right in each of them.
    assert disagreement_correct(a, b, y) == pytest.approx(3 / 4)
    fa = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    fb = torch.tensor([[1.0, 1.0], [-2.0, 0.0]])
    # cosines 1/sqrt(2) and -1: squared mean (0.5 + 1) / 2; plain mean (0.7071 - 1) / 2
    assert feature_cossim(fa, fb) == pytest.approx(0.75)
    assert feature_cossim(fa, fb, squared=False) == pytest.approx((1 / math.sqrt(2) - 1) / 2)


def test_ensembles_by_hand():
    # Two members of one example, two classes.
    la = torch.tensor([[2.0, 0.0]])
    lb = torch.tensor([[0.0, 1.0]])
    # Summed logits (2, 1) -> class 0; calibrated distribution softmax(mean) = softmax((1, 0.5)).
    mean = torch.tensor([[1.0, 0.5]]).softmax(1)
    assert torch.allclose(ensemble_probs([la, lb], "logits"), mean)
    avg = (la.softmax(1) + lb.softmax(1)) / 2
    assert torch.allclose(ensemble_probs([la, lb], "probs"), avg)
    m = ensemble_metrics([la, lb], torch.tensor([0]), "logits", prefix="ensemble_")
    assert m["ensemble_acc"] == 1.0
    assert m["ensemble_nll"] == pytest.approx(-math.log(1 / (1 + math.exp(-0.5))))
    mp = ensemble_metrics([la, lb], torch.tensor([1]), "probs")
    p1 = (1 / (1 + math.exp(2)) + 1 / (1 + math.exp(-1))) / 2  # mean prob of class 1
    assert mp["nll"] == pytest.approx(-math.log(p1))
    assert mp["acc"] == (1.0 if p1 > 0.5 else 0.0)
    with pytest.raises(ValueError):
        ensemble_probs([la, lb], "vote")


def test_pairwise_stats_average_over_pairs():
    # Three members; members 0 and 1 identical, member 2 differs on the one example.
    l0 = torch.tensor([[5.0, 0.0]])
    l2 = torch.tensor([[0.0, 5.0]])
    y = torch.tensor([0])
    f = [torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])]
    st = pairwise_stats([l0, l0.clone(), l2], y, f)
    p = l0.softmax(1)[0, 0].item()  # the confident member's probability of class 0
    tv = abs(p - (1 - p))  # TV between (p, 1-p) and (1-p, p)
    assert st["tvdist"] == pytest.approx((0 + tv + tv) / 3)
    assert st["percent_disagree"] == pytest.approx(2 / 3)
    assert st["percent_disagree_correct"] == pytest.approx(2 / 3)
    assert st["feat_cossim_sq"] == pytest.approx(1 / 3)
    assert st["feat_cossim_plain"] == pytest.approx(1 / 3)
    assert pairwise_stats([l0], y) == {}


def test_cached_batches_decode_once_or_replay_when_too_big():
    calls = {"reset": 0, "iter": 0}

    class Loader:
        def __len__(self):
            return 3

        def __iter__(self):
            calls["iter"] += 1
            return iter([(torch.full((2,), float(i)), torch.tensor([i, i])) for i in range(3)])

    def reset():
        calls["reset"] += 1

    cached = CachedBatches(Loader(), reset)
    first = [x.tolist() for x, _ in cached]
    second = [x.tolist() for x, _ in cached]
    assert first == second and calls == {"reset": 1, "iter": 1} and cached.passes == 1 and len(cached) == 3
    calls.update(reset=0, iter=0)
    replay = CachedBatches(Loader(), reset, max_bytes=16)  # smaller than the set: replayed each pass
    assert [x.tolist() for x, _ in replay] == first and [x.tolist() for x, _ in replay] == first
    assert calls == {"reset": 2, "iter": 2} and replay.batches is None
