"""Align network B's units to network A's by permutation, keeping B's function.

    python -m subspaces.modes.align A.pt B.pt --out B_aligned.pt [--method weight|activation]
    python -m subspaces.modes.align LINE1.pt LINE2.pt --point-a 1 --point-b 0 --out end2_aligned.pt
    subspaces-align A.pt B.pt --out B_aligned.pt

Independently trained networks differ by a permutation of their hidden units, which is much of
why the straight line between them dips (Entezari et al. 2022). This permutes B's units to match
A's -- by weight matching (Ainsworth et al. 2023, "Git Re-Basin", Algorithm 1; the default) or by
matching the correlations of their activations on a few training batches (their Section 3.1) --
with the permutation groups found from the model's forward code (``modes/permutation.py``: a
ResNet's residual stream is one group, BatchNorm parameters and statistics move with their
channels, the classifier's outputs stay). The checkpoint written computes exactly B's function: it
holds B's settings, the original's keys, and ``aligned_to`` (A's path, the method, the passes,
how many units moved). ``--point-a/--point-b`` pick a point of a line, curve or simplex checkpoint
(as ``subspaces-export --point``) and align the plain network there, e.g. the endpoint of one
learned line to the endpoint of another.

The straight line between A and the aligned B is Figure 4's third curve: ``--trainer linestats_aligned``.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Sequence

from subspaces.args import floats, program_name
from subspaces.utils.checkpoint import as_float, check_same_architecture, load_checkpoint, load_model_state, save_checkpoint
from subspaces.utils.errors import UserError, exit_status
from subspaces.utils.io import check_new_file
from subspaces.utils.seed import make_generator

from .convert import plain_state_dict
from .export import in_channels, parse_point, plain_settings
from .matching import ACTIVATION_BATCHES, METHODS, Alignment, align_networks, check_method
from .modules import coefficients_of, get_layer_type
from .subspace import set_point


def load_plain(path: "str | Path", point: Optional[Sequence[float]], flag: str) -> tuple:
    """``(plain network, its settings, the checkpoint)`` of a checkpoint of one network: a standard
    network as it is, or the point ``point`` of a line, curve or simplex (BatchNorm statistics as
    saved). ``flag`` names the option that picks the point in errors."""
    from subspaces import main
    from subspaces.args import Settings

    ckpt = load_checkpoint(path, "the align command")
    if not ckpt.get("settings"):
        raise UserError(f"{path} records no settings (not written by main.py --save?); alignment needs its model")
    if len(ckpt["state_dicts"]) != 1:
        raise UserError(f"{path} holds {len(ckpt['state_dicts'])} networks (an ensemble or SWA run); align checkpoints of one network")
    s = Settings.from_dict(ckpt["settings"])
    coefficients = coefficients_of(get_layer_type(s.conv_type, "Conv"))
    if coefficients is None and point is not None:
        raise UserError(f"{path} holds a standard network, which has no points; drop {flag}")
    if coefficients is not None and point is None:
        raise UserError(f"{path} holds a {coefficients.kind} (--conv-type {s.conv_type}); pass {flag} to pick the network to align")
    state = ckpt["state_dicts"][0]
    shape = SimpleNamespace(in_channels=in_channels(s, state))
    net = main.build_model(s, shape)
    load_model_state(net, state, str(path))
    plain_s = plain_settings(s)
    if coefficients is not None:
        set_point(net, parse_point(point, coefficients))
        plain = main.build_model(plain_s, shape)
        plain.load_state_dict(plain_state_dict(net))
        net = plain
    return net.eval(), plain_s, ckpt


def training_batches(settings, count: int, data: Optional[str] = None, device: str = "cpu") -> list:
    """The first ``count`` BatchNorm batches (the augmented training set, as an ``--update-bn``
    evaluation draws them) of the checkpoint's data set, as input tensors on ``device``."""
    from subspaces import data as datasets
    from subspaces.args import replace
    from subspaces.trainers.evaluate import EVAL_BN_EPOCH

    s = replace(settings, device=device, multigpu=None, label_noise=None, data=data or settings.data, resume=None, pretrained=False)
    bundle = datasets.get_dataset(s)
    bundle.set_epoch(EVAL_BN_EPOCH)
    return [x.to(device) for x, _ in itertools.islice(bundle.bn_loader, count)]


def align_checkpoints(a: "str | Path", b: "str | Path", out: "str | Path", point_a: Optional[Sequence[float]] = None,
                      point_b: Optional[Sequence[float]] = None, method: str = "weight", seed: Optional[int] = None,
                      batches: Optional[int] = None, data: Optional[str] = None, device: str = "cpu",
                      force: bool = False) -> tuple:
    """Write B (or its point ``point_b``) with its units permuted to match A (or A's point
    ``point_a``) to ``out``, atomically. Returns ``(out, alignment)``. ``seed`` (weight matching's
    group order, default 0) and ``batches``/``data`` (activation matching's, default
    :data:`ACTIVATION_BATCHES` batches of B's data set) belong to one method each. Bad input raises
    UserError before anything is written."""
    from subspaces import main

    check_method(method)
    _check_method_flags(method, seed, batches, data)
    seed, batches = seed or 0, batches or ACTIVATION_BATCHES
    out = check_new_file(out, [a, b], force)
    net_a, s_a, _ = load_plain(a, point_a, "--point-a")
    net_b, s_b, ckpt_b = load_plain(b, point_b, "--point-b")
    if s_a.model != s_b.model:
        raise UserError(f"{a} holds a {s_a.model} and {b} a {s_b.model}; align two networks of one --model")
    check_same_architecture([(str(a), net_a.state_dict()), (str(b), net_b.state_dict())])
    main._check_device(SimpleNamespace(device=device, multigpu=None))
    net_a.to(device), net_b.to(device)
    inputs = training_batches(s_b, batches, data, device) if method == "activation" else None
    alignment, state = align_networks(net_a, net_b, method, inputs, make_generator(seed, "align"))
    standard = point_b is None  # the same function: B's accuracies hold
    payload = {
        "epoch": 0, "iter": 0, "arch": s_b.model,
        "state_dicts": [{k: v.cpu() for k, v in state.items()}],
        "optimizers": [],  # B's optimizer state is for B's unit order
        "best_acc1": as_float(ckpt_b.get("best_acc1", 0.0)) if standard else 0.0,
        "curr_acc1": as_float(ckpt_b.get("curr_acc1", 0.0)) if standard else 0.0,
        "settings": s_b.to_dict() | {"name": f"{s_b.name}+aligned={method}", "epochs": 0},
        "aligned_to": {"checkpoint": str(a), "point": _listed(point_a), "source": str(b), "source_point": _listed(point_b),
                       **({"batches": batches} if method == "activation" else {"seed": seed}), **alignment.summary()},
    }
    save_checkpoint(out, payload)
    return out, alignment


def _check_method_flags(method: str, seed: Optional[int], batches: Optional[int], data: Optional[str]) -> None:
    """Each method's own flags: given to the other method they would be ignored, so they are refused."""
    if batches is not None and batches < 1:
        raise UserError(f"--batches {batches} must be at least 1")
    other = {"weight": [("--batches", batches), ("--data", data)], "activation": [("--seed", seed)]}[method]
    for flag, value in other:
        if value is not None:
            use = "activation" if method == "weight" else "weight"
            raise UserError(f"{flag} is read by --method {use}, not by --method {method}; drop {flag} or pass --method {use}")


def _listed(point: Optional[Sequence[float]]) -> Optional[list]:
    return None if point is None else [float(v) for v in point]


def describe(alignment: Alignment) -> str:
    """One line: the method and what it moved."""
    s = alignment.summary()
    passes = f", {s['passes']} passes" if alignment.method == "weight" else ""
    return f"{alignment.method} matching{passes}: {s['moved']} of {s['units']} units in {s['groups']} groups moved"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: one line on stderr and exit status 2 on bad input."""
    p = argparse.ArgumentParser(prog=program_name("python -m subspaces.modes.align"), description=__doc__.split("\n\n")[0])
    p.add_argument("a", metavar="A.pt", help="the network to align to (a checkpoint of main.py --save)")
    p.add_argument("b", metavar="B.pt", help="the network whose units are permuted")
    p.add_argument("--out", required=True, help="the checkpoint file to write (B, aligned)")
    p.add_argument("--point-a", type=floats, metavar="POINT", help="A is a line/curve (alpha) or simplex (coordinates): the point to align to")
    p.add_argument("--point-b", type=floats, metavar="POINT", help="B is a line/curve (alpha) or simplex (coordinates): the point to align")
    p.add_argument("--method", default="weight", choices=METHODS, help="weight matching (default) or activation matching")
    p.add_argument("--seed", type=int, help="weight matching: seed of the order the groups are visited in (default: 0)")
    p.add_argument("--batches", type=int, help=f"activation matching: training batches to correlate over (default: {ACTIVATION_BATCHES})")
    p.add_argument("--data", help="activation matching: folder holding the data sets (default: B's --data)")
    p.add_argument("--device", default="cpu", help="device for activation matching (default: cpu)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    ns = p.parse_args(argv)

    def command() -> str:
        out, alignment = align_checkpoints(ns.a, ns.b, ns.out, ns.point_a, ns.point_b, ns.method, ns.seed, ns.batches,
                                           ns.data, ns.device, ns.force)
        return f"=> wrote {out} ({describe(alignment)})"

    return exit_status(command)


if __name__ == "__main__":
    sys.exit(main())
