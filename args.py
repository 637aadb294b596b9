"""Settings of a run: one typed, immutable dataclass that also generates the command line.

Every flag of the original code exists here under its name (dashes; ``--conv_type`` and
``--bn_type`` also keep the original's underscore spelling), plus the attributes the original
set only from config scripts (``--layerwise``, ``--data-seed``, ``--alpha0``, ``--alpha1``).
Nothing is parsed at import time: ``parse_args(argv)`` returns a :class:`Settings`, and config
scripts build one per run with ``dataclasses.replace(base, seed=s)``.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field, fields
from typing import Optional, Sequence

from utils.errors import UserError


def _ints(text: str) -> tuple:
    return tuple(int(a) for a in text.split(",") if a.strip() != "")


def _floats(text: str) -> tuple:
    return tuple(float(a) for a in text.split(",") if a.strip() != "")


def _strs(text: str) -> tuple:
    return tuple(a for a in text.split(",") if a != "")


def _opt(default, help: str, type=None, action=None, metavar=None, aliases=(), choices=None):
    meta = {"help": help, "type": type, "action": action, "metavar": metavar, "aliases": aliases, "choices": choices}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """All settings of one run. Field ``foo_bar`` is the flag ``--foo-bar``."""

    # --- what to train -------------------------------------------------------------------------
    set: str = _opt("Digits", "data set: Digits (embedded, no download), CIFAR10, CIFAR100, TinyImageNet, ImageNet, ImageNetC, ImageFolder")
    data: str = _opt("~/data", "folder holding the data sets (e.g. <data>/cifar10, <data>/tiny-imagenet-200)")
    model: Optional[str] = _opt(None, "model class (e.g. CIFARResNet); default: the data set's default model")
    model_name: Optional[str] = _opt(None, "model variant where the class needs one, e.g. cifar_resnet_20 or cifar_resnet_20_32")
    conv_type: str = _opt("StandardConv", "conv layer type: StandardConv, LinesConv, CurvesConv, SimplexConv<n>, BezierConv<k> (Bezier curve of degree k), PolyChainConv<k> (polygonal chain with k bends)", aliases=("--conv_type",))
    bn_type: str = _opt("StandardBN", "BatchNorm layer type: StandardBN, LinesBN, CurvesBN, SimplexBN<n>, BezierBN<k>, PolyChainBN<k>", aliases=("--bn_type",))
    conv_init: str = _opt("kaiming_normal", "initialisation of every conv endpoint")
    mode: str = _opt("fan_in", "fan mode of the kaiming initialisation")
    nonlinearity: str = _opt("relu", "nonlinearity the kaiming initialisation assumes")
    width_mult: float = _opt(1.0, "width multiplier of the model")
    output_size: Optional[int] = _opt(None, "number of outputs of the last layer; default: the data set's number of classes")
    dropout: float = _opt(0.5, "dropout probability of the models that have dropout")
    n: int = _opt(-1, "number of simplex vertices (SimplexConv<n>); inferred from --conv-type when left at -1")
    trainer: str = _opt("default", "trainer: default, train_one_dim_subspaces, train_simplexes, eval_one_dim_subspaces, eval_simplexes, ensemble, swa")
    num_models: int = _opt(1, "number of models held by the run (ensembles, SWA baselines)")

    # --- the subspace method ----------------------------------------------------------------
    beta: float = _opt(-1.0, "weight of the cosine regulariser (Eq. 3); <= 0 turns it off (the paper uses 1)")
    layerwise: bool = _opt(False, "draw one point per layer instead of one for the whole network", action="store_true")
    num_samples: int = _opt(1, "points drawn per batch, each on its own part of the batch (appendix B)")
    init_endpoints: Optional[tuple] = _opt(None, "mode connectivity: checkpoints of trained standard networks loaded as the endpoints (alpha = 0 and 1 of a line or curve, or a simplex's vertices), comma separated; a curve's control points or bends start on the straight line between them", type=_strs, metavar="CKPT,...")
    fix_endpoints: bool = _opt(False, "with --init-endpoints: keep the loaded endpoints fixed (no gradient, no update, no weight decay) and train only the curve's inner tensors", action="store_true")
    alpha0: float = _opt(0.0, "evaluation: point of the second model of the pair (eval_one_dim_subspaces)")
    alpha1: float = _opt(1.0, "evaluation: point of the first model of the pair, written as curr_acc1")
    alphas: Optional[tuple] = _opt(None, "evaluation grid, e.g. 0,0.05,...,1: every pair (a, 1-a) evaluated in one run, one row each", type=_floats, metavar="A,B,...")
    update_bn: bool = _opt(False, "evaluation: recompute BatchNorm statistics at each evaluated point", action="store_true")
    train_update_bn: bool = _opt(False, "training: recompute BatchNorm statistics at the midpoint before each test", action="store_true")
    ensemble_mode: str = _opt("logits", "ensembles (of members, of a pair of points, of simplex vertices): summed logits (as the original) or averaged probabilities", choices=("logits", "probs"))

    # --- optimisation ---------------------------------------------------------------------------
    epochs: int = _opt(160, "number of epochs to train", metavar="N")
    batch_size: int = _opt(128, "training batch size", metavar="N")
    test_batch_size: int = _opt(128, "test batch size", metavar="N")
    optimizer: str = _opt("sgd", "optimizer: sgd or adam")
    lr: float = _opt(0.1, "learning rate", metavar="LR")
    momentum: float = _opt(0.9, "SGD momentum", metavar="M")
    wd: float = _opt(1e-4, "weight decay", metavar="WD")
    lr_policy: str = _opt("cosine_lr", "learning-rate schedule: cosine_lr, constant_lr, multistep_lr, linear, swa_constant_lr, swa_cyc_lr, cyc_lr, snapshot_cyc_lr, lth_lr")
    warmup_length: int = _opt(0, "epochs of linear warm-up", metavar="E")
    lr_gamma: float = _opt(0.1, "multistep_lr: decay factor")
    lr_adjust: int = _opt(30, "multistep_lr: epochs between decays")
    label_smoothing: Optional[float] = _opt(None, "label smoothing of the training loss")
    label_noise: Optional[float] = _opt(None, "fraction of training labels replaced by random labels (fixed by --data-seed)")
    data_seed: int = _opt(0, "seed of the label-noise permutation: the same noisy labels for every run with this seed")

    # --- SWA baseline -----------------------------------------------------------------------------
    trainswa: bool = _opt(False, "train the stochastic weight averaging baseline", action="store_true")
    swa_start: float = _opt(0.75, "fraction of the epochs after which weights are averaged")
    swa_lr: float = _opt(0.05, "learning rate during weight averaging")
    swa_save_epochs: Optional[tuple] = _opt(None, "SWA baseline: keep a copy of the trained network after each of these epochs (in models[2:], as the original's snapshots)", type=_ints, metavar="E,E,...")

    # --- runs, logging, checkpoints ---------------------------------------------------------------
    name: str = _opt("default", "run name, key=value pairs joined by '+' (e.g. id=lines+seed=0)")
    log_dir: str = _opt("runs", "folder for run folders and results.csv")
    seed: int = _opt(1, "random seed", metavar="S")
    save: bool = _opt(False, "save checkpoints, TensorBoard logs and settings in <log-dir>/<name>+try=<i>/", action="store_true")
    save_data: bool = _opt(False, "save the results row (and run folder) without checkpoints", action="store_true")
    save_epochs: Optional[tuple] = _opt(None, "epochs after which to save a checkpoint", type=_ints, metavar="E,E,...")
    save_iters: Optional[tuple] = _opt(None, "iterations (steps, counted from 0 over the run) after which to save a checkpoint; a run resumed from one continues mid-epoch exactly", type=_ints, metavar="I,I,...")
    checkpoint_every_minutes: Optional[float] = _opt(None, "with --save: also checkpoint mid-epoch every this many minutes (resumable exactly)", metavar="M")
    resume: Optional[tuple] = _opt(None, "checkpoint(s) to resume from, comma separated (ensembles: one per member)", type=_strs, metavar="CKPT,...")
    pretrained: bool = _opt(False, "with --resume: load the weights only and start from epoch 0", action="store_true")
    test_freq: Optional[int] = _opt(None, "test every this many epochs (and at the last)")
    log_interval: int = _opt(10, "batches between logged training losses", metavar="N")

    # --- hardware -------------------------------------------------------------------------------
    device: str = _opt("cpu", "device: cpu, cuda or cuda:<i>")
    multigpu: Optional[tuple] = _opt(None, "GPU ids for DataParallel, e.g. 0,1 (implies --device cuda)", type=_ints, metavar="G,G,...")
    workers: int = _opt(4, "data loading worker processes (image folders)")
    data_on_device: bool = _opt(False, "hold a data set that fits (Digits, CIFAR) on the device and augment it there in batches", action="store_true")
    channels_last: Optional[bool] = _opt(
        None,
        "channels-last memory format (faster convolutions on CPUs, and on GPUs with --amp); default: on for "
        "evaluation-only runs (eval_one_dim_subspaces, eval_simplexes, ensemble) on a CPU, off otherwise; "
        "--no-channels-last turns it off",
        action=argparse.BooleanOptionalAction,
    )
    amp: str = _opt("none", "mixed precision: none (fp32, the paper's numerics), bf16 or fp16", choices=("none", "bf16", "fp16"))
    compile: bool = _opt(False, "torch.compile the model", action="store_true")

    # --- ImageNet-C -----------------------------------------------------------------------------
    ct: str = _opt("snow", "ImageNet-C corruption type")
    sev: int = _opt(1, "ImageNet-C corruption severity (1-5)")

    def to_dict(self) -> dict:
        """The settings as a plain dict of builtins (stored in checkpoints and settings.txt)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Settings":
        """Rebuild settings saved by :meth:`to_dict`, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known})


def build_parser() -> argparse.ArgumentParser:
    """The command line, generated from :class:`Settings` (one flag per field)."""
    p = argparse.ArgumentParser(
        prog="main.py",
        description="Learning Neural Network Subspaces: train and evaluate lines, curves and simplexes of networks.",
        argument_default=argparse.SUPPRESS,
    )
    for f in fields(Settings):
        m = f.metadata
        flags = ["--" + f.name.replace("_", "-"), *m.get("aliases", ())]
        if "_" not in f.name:
            flags = flags[:1] + [a for a in flags[1:] if a != flags[0]]
        says_default = "default:" in m["help"]  # the help explains a default that depends on the run
        kw = {"help": m["help"] if says_default else f"{m['help']} (default: {f.default})", "dest": f.name}
        if m.get("action"):
            kw["action"] = m["action"]
        else:
            kw["type"] = m.get("type") or _scalar_type(f)
            if m.get("metavar"):
                kw["metavar"] = m["metavar"]
            if m.get("choices"):
                kw["choices"] = m["choices"]
        p.add_argument(*flags, **kw)
    return p


def _scalar_type(f: dataclasses.Field):
    t = str(f.type)
    if "int" in t:
        return int
    if "float" in t:
        return float
    return str


def parse_args(argv: Optional[Sequence[str]] = None) -> Settings:
    """Parse a command line into :class:`Settings` (argparse exits with a one-line usage error)."""
    ns = build_parser().parse_args(argv)
    return Settings(**vars(ns))


def apply_aliases(s: Settings) -> Settings:
    """The original's ``--trainswa`` chooses the SWA baseline: ``--trainer swa``."""
    if s.trainswa and s.trainer == "default":
        return replace(s, trainer="swa")
    if s.trainswa and s.trainer != "swa":
        raise UserError(f"--trainswa trains the SWA baseline of a standard network, not with --trainer {s.trainer}; drop --trainer or pass --trainer swa")
    return s


def replace(settings: Settings, **changes) -> Settings:
    """``dataclasses.replace`` that names the misspelt field instead of a TypeError traceback."""
    known = {f.name for f in fields(Settings)}
    bad = sorted(set(changes) - known)
    if bad:
        raise UserError(f"unknown setting(s) {', '.join(bad)}; see `python main.py --help` for the valid names")
    return dataclasses.replace(settings, **changes)
