"""Accuracy along the straight line between trained networks: unaligned, aligned by weight matching,
aligned by activation matching; BatchNorm statistics recomputed at each point, or interpolated.

An accuracy measurement, not a timing: for every pair (A, B) of the given checkpoints (standard
networks of one architecture, e.g. the members of ``experiment_configs/<set>/ensembles/
train_ensemble_members.py``) it aligns B to A (``subspaces.modes.matching.align_networks``) and
evaluates the point ``(1 - alpha) * w_a + alpha * w_b`` on the test set, with its BatchNorm
statistics either recomputed there over the training set (as ``--trainer linestats_aligned`` does:
the simplest form of REPAIR, Jordan et al. 2023) or interpolated like the weights (no recompute).
Prints the mean and spread over the pairs.

    python bench/aligned_line.py --members A.pt,B.pt[,C.pt...] [--alphas 0,0.25,0.5] [--data DIR]
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys

import common  # first: it puts the repository on sys.path
import torch

from subspaces import data as datasets
from subspaces.args import floats, replace, strs
from subspaces.modes.align import load_plain
from subspaces.modes.matching import ACTIVATION_BATCHES, align_networks
from subspaces.trainers.evaluate import EVAL_BN_EPOCH
from subspaces.utils.bn import update_bn
from subspaces.utils.evaluation import predict
from subspaces.utils.metrics import accuracy
from subspaces.utils.seed import make_generator

METHODS = ("none", "weight", "activation")


@torch.no_grad()
def point_accuracy(net, state_a: dict, state_b: dict, alpha: float, bundle, recompute: bool) -> float:
    """Test accuracy of ``(1 - alpha) * a + alpha * b`` (every tensor, statistics included), its
    BatchNorm statistics then recomputed over the training set when ``recompute``."""
    net.load_state_dict({k: torch.lerp(v.float(), state_b[k].float(), alpha).to(v.dtype) if v.is_floating_point() else v
                         for k, v in state_a.items()})
    if recompute:
        bundle.set_epoch(EVAL_BN_EPOCH)
        update_bn(bundle.bn_loader, net)
    p = predict(net, bundle.val_loader, torch.device("cpu"))
    return accuracy(p.logits, p.targets)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=strs, required=True, help="checkpoints of trained standard networks, comma separated")
    p.add_argument("--alphas", type=floats, default=(0.0, 0.25, 0.5), help="points of the line (default: 0,0.25,0.5)")
    p.add_argument("--data", help="folder holding the data sets (default: the checkpoints')")
    ns = p.parse_args(argv)
    common.header("Accuracy along the straight line between trained networks, aligned or not", torch.device("cpu"))
    nets = [load_plain(path, None, "--point") for path in ns.members]
    s = nets[0][1]
    bundle = datasets.get_dataset(replace(s, device="cpu", label_noise=None, data=ns.data or s.data))
    bundle.set_epoch(EVAL_BN_EPOCH)
    batches = [x for x, _ in itertools.islice(bundle.bn_loader, ACTIVATION_BATCHES)]
    results: dict = {}
    for (net_a, _, _), (net_b, _, _) in itertools.combinations(nets, 2):
        state_a = {k: v.clone() for k, v in net_a.state_dict().items()}
        for method in METHODS:
            state_b = net_b.state_dict() if method == "none" else align_networks(net_a, net_b, method, batches, make_generator(0, "align"))[1]
            state_b = {k: v.clone() for k, v in state_b.items()}
            for recompute, alpha in itertools.product((True, False), ns.alphas):
                acc = point_accuracy(net_a, state_a, state_b, alpha, bundle, recompute)
                results.setdefault((method, recompute, alpha), []).append(acc)
            net_a.load_state_dict(state_a)
    pairs = len(nets) * (len(nets) - 1) // 2
    print(f"{pairs} pair(s) of {len(nets)} networks; test accuracy, mean +- std over the pairs")
    print(f"{'alignment':<12} {'BatchNorm':<13} " + " ".join(f"{'alpha ' + format(a, 'g'):>17}" for a in ns.alphas))
    for method, recompute in itertools.product(METHODS, (True, False)):
        cells = [results[(method, recompute, a)] for a in ns.alphas]
        text = " ".join(f"{statistics.fmean(c):>8.4f} +- {statistics.pstdev(c):.4f}" for c in cells)
        print(f"{method:<12} {'recomputed' if recompute else 'interpolated':<13} {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
