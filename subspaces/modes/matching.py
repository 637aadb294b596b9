"""Permutations that align network B's units to network A's (Git Re-Basin, Ainsworth et al. 2023).

- :func:`weight_matching` (their Algorithm 1): for one group at a time, with the other groups'
  permutations held fixed, the permutation of B's units that maximises the inner product of A's and
  B's weights over every parameter the group indexes is a linear assignment problem
  (``scipy.optimize.linear_sum_assignment``); the groups are visited in random order, pass after
  pass, until no group's assignment improves.
- :func:`activation_matching` (their Section 3.1; Entezari et al. 2022): B's units are matched to A's
  by the correlation of their activations -- the inputs of the layers that read the group's
  channels -- on a few training batches, one linear assignment per group.

Both return an :class:`Alignment`; :func:`subspaces.modes.permutation.permute` applies it to B's
state dict, which then computes exactly B's function.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
from scipy.optimize import linear_sum_assignment

from subspaces.utils.errors import UserError

from .permutation import permutation_groups, permute, trace

METHODS = ("weight", "activation")
ACTIVATION_BATCHES = 8  # training batches whose activations activation matching correlates
MAX_PASSES = 100  # weight matching stops earlier when a pass improves no group (a few passes in practice)


@dataclass
class Alignment:
    """The permutation of each group (unit i of aligned B is unit ``perms[g][i]`` of B) and how it was found."""

    groups: list
    perms: dict
    method: str
    passes: int = 1  # weight matching: passes over the groups until none improved

    def summary(self) -> dict:
        """Builtins for a checkpoint or a results row: method, passes, groups, units, units moved."""
        moved = sum(int((self.perms[g.name] != torch.arange(g.size)).sum()) for g in self.groups)
        return {"method": self.method, "passes": self.passes, "groups": len(self.groups),
                "units": sum(g.size for g in self.groups), "moved": moved}


def _assign(cost: torch.Tensor) -> torch.Tensor:
    """The permutation ``col`` maximising ``sum_i cost[i, col[i]]``."""
    _, col = linear_sum_assignment(cost.numpy(), maximize=True)
    return torch.from_numpy(np.asarray(col, dtype=np.int64))


def _by_key(groups: list) -> dict:
    """``{key: [(group name, axis)]}``: the permutations that act on each tensor."""
    out: dict = {}
    for g in groups:
        for key, axis in g.axes:
            out.setdefault(key, []).append((g.name, axis))
    return out


def _rows(w: torch.Tensor, axis: int) -> torch.Tensor:
    """``w`` as one row per unit of ``axis``."""
    return w.movedim(axis, 0).reshape(w.shape[axis], -1)


def _matched(g) -> list:
    """The ``(key, axis)`` pairs of group ``g`` that weight matching compares (not the statistics)."""
    return [(key, axis) for key, axis in g.axes if key not in g.statistics]


def _units_of_b(state_b: dict, g, acting: dict, perms: dict) -> torch.Tensor:
    """B's units of group ``g`` as rows over every tensor it indexes, each tensor's other axes
    permuted by the other groups' current permutations."""
    parts = []
    for key, axis in _matched(g):
        w = state_b[key]
        for other, ax in acting[key]:
            if (other, ax) != (g.name, axis):
                w = w.index_select(ax, perms[other].to(w.device))
        parts.append(_rows(w, axis))
    return torch.cat(parts, 1)


def weight_matching(state_a: dict, state_b: dict, groups: list, generator: Optional[torch.Generator] = None,
                    max_passes: int = MAX_PASSES) -> Alignment:
    """Git Re-Basin's weight matching of B's units to A's (BatchNorm statistics move, but are not matched on).

    A group is solved again only when a permutation acting on its tensors changed since it was
    last solved (its cost matrix is otherwise the same); a pass that improves no group ends it.
    """
    perms = {g.name: torch.arange(g.size) for g in groups}
    acting = _by_key(groups)
    units_a = {g.name: torch.cat([_rows(state_a[k], ax) for k, ax in _matched(g)], 1).double() for g in groups}
    neighbours = {g.name: sorted({h for k, _ in _matched(g) for h, _ in acting[k]}) for g in groups}
    version = dict.fromkeys(perms, 0)
    solved: dict = {}  # group -> the versions of its neighbours when it was last solved
    passes = 0
    for passes in range(1, max_passes + 1):
        improved = False
        for k in torch.randperm(len(groups), generator=generator).tolist():
            g = groups[k]
            if solved.get(g.name) == [version[h] for h in neighbours[g.name]]:
                continue
            cost = (units_a[g.name] @ _units_of_b(state_b, g, acting, perms).double().T).cpu()
            col = _assign(cost)
            old, new = cost[torch.arange(g.size), perms[g.name]].sum(), cost[torch.arange(g.size), col].sum()
            if new > old + 1e-12 * max(1.0, abs(float(old))):
                perms[g.name], improved = col, True
                version[g.name] += 1
            solved[g.name] = [version[h] for h in neighbours[g.name]]
        if not improved:
            break
    return Alignment(groups, perms, "weight", passes)


class _Recorder(fx.Interpreter):
    """Runs a traced model and keeps, for each watched node, the value a layer reads from it (taken
    when the layer reads it, so later in-place operations do not change it) as rows of channels."""

    def __init__(self, gm: fx.GraphModule, watch: dict) -> None:
        super().__init__(gm)
        self.watch = watch  # {layer name: node name}
        self.seen: dict = {}

    def run_node(self, n: fx.Node):
        if n.op == "call_module" and n.target in self.watch:
            src = self.watch[n.target]
            if src not in self.seen:
                x = self.env[next(a for a in n.all_input_nodes if a.name == src)]
                self.seen[src] = x.detach().movedim(1, -1).reshape(-1, x.shape[1]).double()
        return super().run_node(n)

    def record(self, x: torch.Tensor) -> dict:
        self.seen = {}
        self.run(x)
        return self.seen


class _Correlation:
    """Streaming Pearson correlation between the channels of two activations (sums in float64)."""

    def __init__(self) -> None:
        self.n, self.sa, self.sb, self.saa, self.sbb, self.sab = 0, 0.0, 0.0, 0.0, 0.0, 0.0

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.n += a.shape[0]
        self.sa, self.sb = self.sa + a.sum(0), self.sb + b.sum(0)
        self.saa, self.sbb = self.saa + (a * a).sum(0), self.sbb + (b * b).sum(0)
        self.sab = self.sab + a.T @ b

    def value(self) -> torch.Tensor:
        ma, mb = self.sa / self.n, self.sb / self.n
        cov = self.sab / self.n - ma[:, None] * mb[None, :]
        sd_a = (self.saa / self.n - ma * ma).clamp_min(0).sqrt()
        sd_b = (self.sbb / self.n - mb * mb).clamp_min(0).sqrt()
        return (cov / (sd_a[:, None] * sd_b[None, :] + 1e-12)).cpu()


@torch.no_grad()
def activation_matching(net_a: nn.Module, net_b: nn.Module, batches: Iterable, groups: Optional[list] = None) -> Alignment:
    """Match B's units to A's by the correlation of their activations over ``batches`` (input
    tensors on the networks' device), both networks in eval mode; each group's cost sums the
    correlations of every tensor that a layer reads from its channels."""
    groups = groups if groups is not None else permutation_groups(net_a, "network A")
    watch = {layer: node for g in groups for layer, node in g.inputs.items()}
    modes = net_a.training, net_b.training
    net_a.eval(), net_b.eval()
    rec_a, rec_b = _Recorder(trace(net_a, "network A"), watch), _Recorder(trace(net_b, "network B"), watch)
    corr = {node: _Correlation() for node in set(watch.values())}
    try:
        for x in batches:
            acts_a, acts_b = rec_a.record(x), rec_b.record(x)
            for node, c in corr.items():
                c.add(acts_a[node], acts_b[node])
    finally:
        net_a.train(modes[0]), net_b.train(modes[1])
    if not any(c.n for c in corr.values()):
        raise UserError("activation matching saw no batches; pass training data (a non-empty loader)")
    perms = {}
    for g in groups:
        perms[g.name] = _assign(sum(corr[node].value() for node in set(g.inputs.values())))
    return Alignment(groups, perms, "activation")


def check_method(method: str) -> str:
    """``method`` if it is one of :data:`METHODS`, else a UserError listing them."""
    if method not in METHODS:
        raise UserError(f"unknown alignment method {method!r}; choose one of: {', '.join(METHODS)}")
    return method


def align_networks(net_a: nn.Module, net_b: nn.Module, method: str = "weight", batches: Optional[Iterable] = None,
                   generator: Optional[torch.Generator] = None) -> tuple:
    """``(alignment, B's state dict permuted to match A)`` for two plain networks of one architecture.

    ``method``: "weight" (``generator`` orders the groups) or "activation" (``batches``: input
    tensors on the networks' device). The returned state dict loads into ``net_b`` and computes
    exactly its function.
    """
    check_method(method)
    groups = permutation_groups(net_a, f"network A ({type(net_a).__name__})")
    if method == "weight":
        alignment = weight_matching(net_a.state_dict(), net_b.state_dict(), groups, generator)
    else:
        alignment = activation_matching(net_a, net_b, batches if batches is not None else (), groups)
    return alignment, permute(net_b.state_dict(), groups, alignment.perms)
