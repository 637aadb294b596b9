"""The cost of the finite-weights check that runs before every checkpoint, against the save itself.

Every checkpoint is checked for NaN or infinite tensors first (its state dicts and optimizer
state: ``utils.checkpoint.count_non_finite``, one fused ``torch._foreach_norm`` per device and dtype
and one host sync). This times that check and the atomic save it guards (``save_checkpoint``: the
state dicts as ``state_dict()`` returns them, written to a temp file, fsynced, renamed), side by
side, for a line of ``cifar_resnet_20`` (the paper's CIFAR model) and a standard ResNet50 (25.6M
parameters), each with SGD momentum buffers. The last line is ``ratio: <check / save>`` of the
larger model.

    python bench/checkpoint_check.py
    python bench/checkpoint_check.py --device cuda
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import common  # first: it puts the repository on sys.path
import torch

from subspaces import models
from subspaces.utils.checkpoint import count_non_finite, save_checkpoint, tensors_of

MODELS = {
    "cifar_resnet_20 line": ("CIFARResNet", "cifar_resnet_20", "LinesConv", "LinesBN", 32),
    "ResNet50": ("ResNet50", None, "StandardConv", "StandardBN", 64),
}


def prepared(name: str, device: torch.device) -> tuple:
    """The model and an SGD optimizer whose momentum buffers exist (one step on random data)."""
    model, model_name, conv, bn, size = MODELS[name]
    net = models.get_model(model, models.Builder(conv, bn), output_size=10, model_name=model_name).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    net(torch.randn(2, 3, size, size, device=device)).sum().backward()
    opt.step()
    return net, opt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args()
    device = torch.device(args.device)
    common.header("finite check before a checkpoint vs the checkpoint's save", device)
    rows, ratio = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            net, opt = prepared(name, device)
            payload = lambda: {"state_dicts": [net.state_dict()], "optimizers": [opt.state_dict()]}  # noqa: E731
            n_params = sum(t.numel() for t in tensors_of(payload()) if t.is_floating_point())
            times = common.interleaved({
                "check": lambda: count_non_finite(tensors_of(payload())),
                "save": lambda: save_checkpoint(Path(tmp) / "c.pt", payload()),
            }, args.reps, device)
            check, save = common.median(times["check"]), common.median(times["save"])
            ratio = common.paired_ratio(times["check"], times["save"])
            rows.append([name, f"{n_params / 1e6:.1f}M", f"{check * 1e3:.1f}", f"{save * 1e3:.1f}", f"{ratio:.3f}"])
    print(common.table(rows, ["model", "floats checked", "check ms (median)", "save ms (median)", "check / save (paired median)"]))
    print(f"ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
