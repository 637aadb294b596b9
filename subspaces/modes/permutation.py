"""Permutation symmetry of a plain network: which units can be reordered together, found from the
model's own forward code.

Permuting the output channels of a layer, the BatchNorm parameters and running statistics of those
channels, and the input channels of every layer that reads them leaves the network's function
unchanged (Entezari et al. 2022; Ainsworth et al. 2023, "Git Re-Basin", Section 2). Channels joined
by an addition must move together: a ResNet's residual stream is one *group* shared by the stem,
every shortcut and every block that adds to it (Git Re-Basin's ``resnet20_permutation_spec``).
Channels that reach the input or the output (the classifier's outputs) are fixed.

:func:`permutation_groups` derives the groups by tracing the model with ``torch.fx`` and following
each tensor's channel dimension through the operations that keep it (BatchNorm, ReLU, pooling,
dropout, flatten, indexing that adds unit dimensions) and joining the channels of added tensors;
an operation it does not know is refused, naming it, so a new model is aligned correctly or not at
all. :func:`permute` applies one permutation per group to a state dict.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from subspaces.utils.errors import UserError

from .modules import SubspaceLayer

# Operations that act on each channel alone (so a permutation of the channels passes through them).
CHANNELWISE_MODULES = (nn.ReLU, nn.Identity, nn.modules.dropout._DropoutNd, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
CHANNELWISE_FUNCTIONS = (F.relu, torch.relu, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.max_pool2d, F.avg_pool2d, F.dropout, torch.flatten)
CHANNELWISE_METHODS = ("relu", "relu_", "flatten", "contiguous")
ADDS = (operator.add, operator.iadd, torch.add)
FIXED = 0  # the space of channels that cannot move: the input's and the output's


@dataclass
class Group:
    """Units permuted together: ``size`` channels, and each ``(state-dict key, axis)`` they index."""

    name: str
    size: int
    axes: list = field(default_factory=list)  # [(key, axis)]
    statistics: set = field(default_factory=set)  # the keys of axes that are BatchNorm statistics (moved, not matched)
    inputs: dict = field(default_factory=dict)  # {layer reading the group's channels: the graph node it reads}


class _Spaces:
    """Channel spaces joined by a union-find; space :data:`FIXED` is the input's and the output's."""

    def __init__(self) -> None:
        self.parent = [FIXED]
        self.size: dict = {}

    def new(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def join(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            low, high = sorted((a, b))  # FIXED (0) stays the root of whatever it joins
            self.parent[high] = low


class _Leaves(fx.Tracer):
    """Traces down to convolutions, linear layers and BatchNorm (the project's layer types subclass them)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (nn.Conv2d, nn.Linear, _BatchNorm)) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module, what: str = "the model") -> fx.GraphModule:
    """``model`` as a ``torch.fx`` graph of its forward pass, the layers kept as calls; UserError if
    it has subspace layers (align a plain network: export a point first) or cannot be traced."""
    if any(isinstance(m, SubspaceLayer) for m in model.modules()):
        raise UserError(f"{what} has subspace layers; align plain networks: pick a point of the subspace first (--point-a/--point-b)")
    try:
        graph = _Leaves().trace(model)
    except Exception as e:  # data-dependent control flow and the like
        raise UserError(f"{what} ({type(model).__name__}) cannot be aligned: torch.fx cannot trace its forward ({str(e).splitlines()[0][:160]})") from None
    return fx.GraphModule(model, graph)


def permutation_groups(model: nn.Module, what: str = "the model") -> list:
    """The permutation groups of the plain ``model``, in the order their first layer runs.

    Raises UserError naming the operation when the model uses one whose effect on channels is
    unknown (a concatenation, a grouped convolution, ...).
    """
    gm = trace(model, what)
    return _Derivation(gm, type(model).__name__).groups()


class _Derivation:
    """One walk over a traced graph: the channel space of each node, the layers on each space."""

    def __init__(self, gm: fx.GraphModule, model_name: str) -> None:
        self.gm, self.model_name = gm, model_name
        self.spaces = _Spaces()
        self.space: dict = {}  # node -> its channel space (dim 1)
        self.out_space: dict = {}  # module name -> the space of its outputs (a module called twice keeps one)
        self.in_space: dict = {}  # layer name -> the space of its inputs
        self.entries: list = []  # (space, key, axis, module name)
        self.inputs: list = []  # (space, layer, the node it reads)

    def refuse(self, node: fx.Node, why: str) -> UserError:
        where = f"module {node.target}" if node.op == "call_module" else f"{node.name} in the traced forward"
        return UserError(f"{self.model_name} cannot be aligned: {why} (at {where}); alignment knows convolutions, "
                         f"linear layers, BatchNorm, additions and channel-wise operations")

    def groups(self) -> list:
        for node in self.gm.graph.nodes:
            self.visit(node)
        by_root: dict = {}
        for space, key, axis, module in self.entries:
            root = self.spaces.find(space)
            if root != FIXED:
                g = by_root.setdefault(root, Group(module, self.spaces.size[root]))
                g.axes.append((key, axis))
                if key.endswith(("running_mean", "running_var")):
                    g.statistics.add(key)
        for space, layer, node in self.inputs:
            root = self.spaces.find(space)
            if root != FIXED:
                by_root[root].inputs[layer] = node
        return list(by_root.values())

    def tensor_args(self, node: fx.Node) -> list:
        return [a for a in node.args if isinstance(a, fx.Node)]

    def visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            self.space[node] = FIXED
        elif node.op == "output":
            for a in self.tensor_args(node):
                self.spaces.join(self.space[a], FIXED)
        elif node.op == "call_module":
            self.visit_module(node, self.gm.get_submodule(node.target))
        elif node.op in ("call_function", "call_method"):
            self.visit_function(node)
        else:  # get_attr: a parameter used outside its layer
            raise self.refuse(node, f"a tensor ({node.target}) is read outside a layer")

    def input_space(self, node: fx.Node) -> int:
        args = self.tensor_args(node)
        if not args:
            raise self.refuse(node, "an operation without a tensor input")
        return self.space[args[0]]

    def visit_module(self, node: fx.Node, m: nn.Module) -> None:
        name = node.target
        s_in = self.input_space(node)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if isinstance(m, nn.Conv2d) and m.groups != 1:
                raise self.refuse(node, f"a grouped convolution (groups={m.groups})")
            c_in, c_out = (m.in_channels, m.out_channels) if isinstance(m, nn.Conv2d) else (m.in_features, m.out_features)
            self.sized(node, s_in, c_in)
            if name not in self.out_space:
                self.entries.append((s_in, f"{name}.weight", 1, name))
                self.out_space[name] = self.spaces.new()
                self.spaces.size[self.out_space[name]] = c_out
                self.entries.append((self.out_space[name], f"{name}.weight", 0, name))
                if m.bias is not None:
                    self.entries.append((self.out_space[name], f"{name}.bias", 0, name))
                self.in_space[name] = s_in
            else:  # the same layer called again: its inputs share the first call's permutation
                self.spaces.join(s_in, self.in_space[name])
            self.inputs.append((s_in, name, self.tensor_args(node)[0].name))
            self.space[node] = self.out_space[name]
        elif isinstance(m, _BatchNorm):
            self.sized(node, s_in, m.num_features)
            if name not in self.out_space:
                self.out_space[name] = s_in
                for key in ("weight", "bias", "running_mean", "running_var"):
                    if getattr(m, key, None) is not None:
                        self.entries.append((s_in, f"{name}.{key}", 0, name))
            self.spaces.join(self.out_space[name], s_in)
            self.space[node] = s_in
        elif isinstance(m, CHANNELWISE_MODULES) or (isinstance(m, nn.Flatten) and m.start_dim == 1):
            self.space[node] = s_in
        else:
            raise self.refuse(node, f"the layer {type(m).__name__}")

    def sized(self, node: fx.Node, space: int, channels: int) -> None:
        """A layer reads ``channels`` channels of ``space``: they must be its channels (not, e.g.,
        channels times positions after a flatten)."""
        root = self.spaces.find(space)
        if root != FIXED and self.spaces.size.get(root) != channels:
            raise self.refuse(node, f"a layer reads {channels} features of a tensor with {self.spaces.size.get(root)} channels, "
                                    f"mixed with positions by a flatten or reshape")

    def visit_function(self, node: fx.Node) -> None:
        target = node.target
        if target in ADDS or target in ("add", "add_"):
            spaces = [self.space[a] for a in self.tensor_args(node)]  # one: a number added to each element
            for s in spaces[1:]:
                self.spaces.join(spaces[0], s)
            self.space[node] = self.input_space(node)
        elif target in CHANNELWISE_FUNCTIONS or target in CHANNELWISE_METHODS:
            self.check_flatten(node)
            self.space[node] = self.input_space(node)
        elif target is operator.getitem and self.unit_index(node.args[1]):
            self.space[node] = self.input_space(node)
        else:
            raise self.refuse(node, f"the operation {getattr(target, '__name__', target)}")

    def check_flatten(self, node: fx.Node) -> None:
        """``flatten`` keeps the channel dimension only when it starts after the batch dimension."""
        if node.target in ("flatten", torch.flatten):
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            if start != 1:
                raise self.refuse(node, f"a flatten from dimension {start} (alignment follows dimension 1)")

    @staticmethod
    def unit_index(index: object) -> bool:
        """``x[:, :, None, None]`` and the like: all of dims 0 and 1, new unit dimensions after."""
        full = slice(None, None, None)
        return (isinstance(index, tuple) and len(index) >= 2 and index[0] == full and index[1] == full
                and all(i is None or i == full for i in index[2:]))


@torch.no_grad()
def permute(state_dict: dict, groups: list, perms: dict) -> dict:
    """A copy of ``state_dict`` with each group's units reordered: unit i of the result is unit
    ``perms[group.name][i]`` of the input (groups without a permutation stay as they are)."""
    out = dict(state_dict)
    for g in groups:
        perm = perms.get(g.name)
        if perm is None:
            continue
        perm = torch.as_tensor(perm, dtype=torch.long)
        for key, axis in g.axes:
            out[key] = out[key].index_select(axis, perm.to(out[key].device))
    return out


def random_perms(groups: list, generator: Optional[torch.Generator] = None) -> dict:
    """A random permutation of every group (what a network trained from another seed may differ by)."""
    return {g.name: torch.randperm(g.size, generator=generator) for g in groups}
