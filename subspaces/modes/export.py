"""Export the plain network at one point of a trained subspace.

    python -m subspaces.modes.export CKPT --point 0.3 [--update-bn [--bn-weighting sample]] [--data DIR] --out net.pt
    python -m subspaces.modes.export SIMPLEX_CKPT --point 0.2,0.3,0.5 --out net.pt   # barycentric coordinates

writes a checkpoint in the project's format (``state_dicts``, ``settings`` with ``--conv-type
StandardConv --bn-type StandardBN``, epoch 0) of the plain architecture with the weights of that
point. With ``--update-bn`` the BatchNorm statistics are recomputed there over the training set
(read from the checkpoint's saved settings; ``--data`` overrides the folder), with the batches
that ``--update-bn`` evaluation of the checkpoint uses (its training ``--seed``'s, epoch 0) and the
same ``--bn-weighting``, so that

    python main.py --conv-type StandardConv --bn-type StandardBN --resume net.pt --pretrained --epochs 0

gives the accuracy of the subspace evaluated at that point. Without it the checkpoint's
statistics are kept as they are (they fit no single point of a subspace trained at random points).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Sequence

import torch

from subspaces.args import DATA_HELP, floats, program_name
from subspaces.utils.checkpoint import count_non_finite, load_checkpoint, load_model_state, save_checkpoint
from subspaces.utils.errors import UserError
from subspaces.utils.io import check_new_file

from .coefficients import Coefficients, SimplexCoefficients
from .convert import plain_state_dict
from .modules import coefficients_of, get_layer_type
from .subspace import set_point


def parse_point(values: Sequence[float], coefficients: Coefficients) -> tuple:
    """The layer point of ``values``: one alpha in [0, 1] for a line or curve; for a simplex of n
    vertices n barycentric coordinates (each >= 0, summing to 1), mapped to ``(t1, ..., t{n-1})``."""
    values = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"--point {_fmt(values)} is not finite; pass numbers")
    if isinstance(coefficients, SimplexCoefficients):
        n = coefficients.num_tensors
        if len(values) != n or min(values) < 0 or abs(math.fsum(values) - 1.0) > 1e-6:
            raise UserError(f"--point {_fmt(values)} is not a point of a simplex of {n} vertices; pass {n} barycentric "
                            f"coordinates >= 0 that sum to 1 (e.g. --point {_fmt([1.0 / n] * n)})")
        return coefficients.from_barycentric(values)
    if len(values) != 1 or not 0.0 <= values[0] <= 1.0:
        raise UserError(f"--point {_fmt(values)} is not a point of a {coefficients.kind}; pass one alpha in [0, 1]")
    return values


def _fmt(values: Sequence[float]) -> str:
    return ",".join(format(v, ".4g") for v in values)


def plain_settings(s):
    """The settings of a standard network of the same model as the subspace settings ``s`` (the
    network at one point of it, as written by export and the align command)."""
    from subspaces.args import replace

    return replace(s, conv_type="StandardConv", bn_type="StandardBN", trainer="default", n=-1, init_endpoints=None,
                   fix_endpoints=False)


def in_channels(s, state_dict: dict) -> int:
    """The model's input channels, read from the checkpoint: the first convolution's weight."""
    from subspaces import main

    probe = main.build_model(s, SimpleNamespace(in_channels=1))
    for name, m in probe.named_modules():
        if isinstance(m, torch.nn.Conv2d) and f"{name}.weight" in state_dict:
            return int(state_dict[f"{name}.weight"].shape[1])
    return 3


def export_point(checkpoint: "str | Path", point: Sequence[float], out: "str | Path", update_bn: bool = False,
                 data: Optional[str] = None, device: str = "cpu", bn_weighting: str = "batch",
                 force: bool = False) -> Path:
    """Write the plain network at ``point`` of the subspace in ``checkpoint`` to ``out`` (atomically).

    ``point``: an alpha for a line or curve, barycentric coordinates for a simplex. ``update_bn``
    recomputes the BatchNorm statistics at the point over the training set of the checkpoint's
    data set (``data`` overrides its folder), each batch or each sample weighing the same
    (``bn_weighting``, as ``--bn-weighting``). Returns ``out``. Bad input raises UserError before
    anything is written: see :func:`subspaces.utils.io.check_new_file` for the ``out`` refused
    (``force`` replaces an existing file), and a point whose weights or statistics are not finite is not written.
    """
    from subspaces import data as datasets
    from subspaces import main
    from subspaces.args import Settings, replace
    from subspaces.trainers.evaluate import EVAL_BN_EPOCH
    from subspaces.utils.bn import update_bn as recompute

    out = Path(out).expanduser()
    check_new_file(out, [checkpoint], force)  # the input (a trained subspace) is never replaced
    ckpt = load_checkpoint(checkpoint, "subspaces-export CKPT")
    if not ckpt.get("settings"):
        raise UserError(f"{checkpoint} records no settings (not written by main.py --save?); export needs its model and layer types")
    s = Settings.from_dict(ckpt["settings"])
    coefficients = coefficients_of(get_layer_type(s.conv_type, "Conv"))
    if coefficients is None:
        raise UserError(f"{checkpoint} holds a standard network (--conv-type {s.conv_type}): it is already plain; use it directly")
    layer_point = parse_point(point, coefficients)
    s = replace(s, device=device, multigpu=None, label_noise=None, data=data or s.data, resume=None, pretrained=False, bn_weighting=bn_weighting)
    main._check_device(s)
    bundle = datasets.get_dataset(s) if update_bn else None
    state = ckpt["state_dicts"][0]
    net = main.build_model(s, bundle or SimpleNamespace(in_channels=in_channels(s, state)))
    load_model_state(net, state, str(checkpoint))
    set_point(net, layer_point)
    if update_bn:
        bundle.set_epoch(EVAL_BN_EPOCH)  # the batches an --update-bn evaluation recomputes over
        net.to(device)
        recompute(bundle.bn_loader, net, torch.device(device), bn_weighting)
    plain = {k: v.cpu() for k, v in plain_state_dict(net).items()}
    bad = count_non_finite(plain.values())
    if bad:
        raise UserError(f"the network at --point {_fmt(point)} of {checkpoint} has {bad} tensors with NaN or infinite values "
                        "(the checkpoint's weights, or its BatchNorm statistics there); export a checkpoint saved before training diverged")
    settings_at_point = replace(plain_settings(s), name=f"{s.name}+point={_fmt(point)}", epochs=0)
    payload = {
        "epoch": 0, "iter": 0, "arch": s.model,
        "state_dicts": [plain],
        "optimizers": [], "best_acc1": 0.0, "curr_acc1": 0.0,  # not evaluated, as an initialisation checkpoint
        "settings": settings_at_point.to_dict(),
        "exported_from": {"checkpoint": str(checkpoint), "point": [float(v) for v in point], "update_bn": bool(update_bn),
                          **({"bn_weighting": bn_weighting} if update_bn else {})},
    }
    save_checkpoint(out, payload)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: one line on stderr and exit status 2 on bad input."""
    p = argparse.ArgumentParser(prog=program_name("python -m subspaces.modes.export"), description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a checkpoint of a line, curve or simplex (main.py --save)")
    p.add_argument("--point", type=floats, required=True, metavar="POINT",
                   help="alpha in [0, 1] for a line or curve; n barycentric coordinates summing to 1 for a simplex")
    p.add_argument("--out", required=True, help="the checkpoint file to write (a new file; never the input)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists (never the input checkpoint)")
    p.add_argument("--update-bn", action="store_true", help="recompute BatchNorm statistics at the point over the training set")
    p.add_argument("--bn-weighting", choices=("batch", "sample"), default="batch",
                   help="with --update-bn: every batch (the original's, default) or every sample weighs the same, as --bn-weighting of main.py")
    p.add_argument("--data", metavar="DIR", help=DATA_HELP + " (default: the checkpoint's --data)")
    p.add_argument("--device", default="cpu", help="device for the BatchNorm recompute (default: cpu)")
    ns = p.parse_args(argv)
    try:
        if ns.bn_weighting != "batch" and not ns.update_bn:
            raise UserError(f"--bn-weighting {ns.bn_weighting} weighs the batches of --update-bn's recompute; pass --update-bn too")
        out = export_point(ns.checkpoint, ns.point, ns.out, ns.update_bn, ns.data, ns.device, ns.bn_weighting, ns.force)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"=> wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
