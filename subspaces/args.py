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
import math
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional, Sequence

from subspaces.utils.errors import UserError


class ListError(ValueError, argparse.ArgumentTypeError):
    """A list flag's value that is not a list of its kind; argparse prints it as the flag's error."""


def _split(text: str, convert, kind: str, example: str) -> tuple:
    """The comma-separated items of a list flag; an empty item (``0.5,,1``, ``,``, ``""``) is a mistake."""
    items = text.split(",")
    if any(a.strip() == "" for a in items):
        raise ListError(f"has an empty item; separate the values by single commas, e.g. {example}")
    out = []
    for a in items:
        try:
            out.append(convert(a))
        except ValueError:
            raise ListError(f"has {a!r}, which is not {kind}; e.g. {example}") from None
    return tuple(out)


def ints(text: str) -> tuple:
    """``"1,2"`` -> ``(1, 2)``; a :class:`ListError` names the bad item."""
    return _split(text, int, "a whole number", "1,2")


def floats(text: str) -> tuple:
    """``"0,0.5"`` -> ``(0.0, 0.5)``; a :class:`ListError` names the bad item."""
    return _split(text, float, "a number", "0,0.5,1")


def strs(text: str) -> tuple:
    """``"a.pt,b.pt"`` -> ``("a.pt", "b.pt")``; an empty item is a :class:`ListError`."""
    return _split(text, str, "a name", "a.pt,b.pt")


def _list_flag(parse, flag: str):
    """``parse`` with its errors as one-line UserErrors naming ``flag`` (argparse would print its usage too)."""

    def parse_flag(text: str) -> tuple:
        try:
            return parse(text)
        except ValueError as e:
            raise UserError(f"{flag} {text!r} {e}") from None

    parse_flag.__name__ = parse.__name__
    return parse_flag


def _opt(default, help: str, type=None, action=None, metavar=None, aliases=(), choices=None):
    meta = {"help": help, "type": type, "action": action, "metavar": metavar, "aliases": aliases, "choices": choices}
    return field(default=default, metadata=meta)


# What --data means, in every command that has it (main.py, the config scripts, export, plane).
DATA_HELP = ("the folder that holds the data sets, e.g. ~/data holding cifar10/ (CIFAR-10 as its python batches "
             "cifar-10-batches-py/, or as images in train/<class>/ and test/<class>/), cifar100/ (likewise), "
             "tiny-imagenet-200/, imagenet/ and imagenet-c/; --set ImageFolder reads DIR/train/<class>/ and "
             "DIR/test/<class>/; Digits needs none")


@dataclass(frozen=True)
class Settings:
    """All settings of one run. Field ``foo_bar`` is the flag ``--foo-bar``."""

    # --- what to train -------------------------------------------------------------------------
    set: str = _opt("Digits", "data set: Digits (embedded, no download), CIFAR10, CIFAR100, TinyImageNet, ImageNet, ImageNetC, ImageFolder")
    data: str = _opt("~/data", DATA_HELP, metavar="DIR")
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
    trainer: str = _opt(
        "default",
        "trainer: default, train_one_dim_subspaces, train_simplexes, swa (training); eval_one_dim_subspaces, "
        "eval_simplexes, ensemble, average_weights, random_average_weights_global, random_average_weights_layerwise, "
        "random_average_weights_perweight, linestats_swa, linestats_aligned, swa_endpoint_ensembles, simplex_ensembles, swag (evaluation)",
    )
    num_models: int = _opt(1, "number of models held by the run (ensembles, SWA baselines)")

    # --- the subspace method ----------------------------------------------------------------
    beta: float = _opt(-1.0, "weight of the cosine regulariser (Eq. 3); <= 0 turns it off (the paper uses 1)")
    layerwise: bool = _opt(False, "draw one point per layer instead of one for the whole network", action="store_true")
    num_samples: int = _opt(1, "points drawn per batch, each on its own part of the batch (appendix B)")
    init_endpoints: Optional[tuple] = _opt(None, "mode connectivity: checkpoints of trained standard networks loaded as the endpoints (alpha = 0 and 1 of a line or curve, or a simplex's vertices), comma separated; a curve's control points or bends start on the straight line between them", type=strs, metavar="CKPT,...")
    fix_endpoints: bool = _opt(False, "with --init-endpoints: keep the loaded endpoints fixed (no gradient, no update, no weight decay) and train only the curve's inner tensors", action="store_true")
    alpha0: float = _opt(0.0, "evaluation: point of the second model of the pair (eval_one_dim_subspaces)")
    alpha1: float = _opt(1.0, "evaluation: point of the first model of the pair, written as curr_acc1")
    alphas: Optional[tuple] = _opt(None, "evaluation grid, e.g. 0,0.05,...,1: every pair (a, 1-a) evaluated in one run, one row each", type=floats, metavar="A,B,...")
    update_bn: bool = _opt(False, "evaluation: recompute BatchNorm statistics at each evaluated point", action="store_true")
    curve_stats: bool = _opt(False, "eval_one_dim_subspaces, linestats_swa: dnn-mode-connectivity's eval_curve summary along the evaluated points -- each point's train loss and error (one more pass over the training set per point) and test NLL and error, the path's length, and each one's min, max, mean and length-weighted mean (trapezoid) -- printed and written as curve_* results columns", action="store_true")
    train_update_bn: bool = _opt(False, "training: recompute BatchNorm statistics at the midpoint before each test", action="store_true")
    bn_weighting: str = _opt("batch", "every BatchNorm recompute (--update-bn, --train-update-bn, and the trainers that always recompute): batch weighs every batch the same (the original, torch.optim.swa_utils.update_bn), sample every sample (dnn-mode-connectivity, swa_gaussian); they differ when the last batch is partial", choices=("batch", "sample"))
    t: Optional[float] = _opt(None, "swa_endpoint_ensembles: network j is t * w_j + (1 - t) / (N - 1) * sum_{i != j} w_i, in [0, 1] (required there); linestats_swa: the point (1 - t) * w_a + t * w_b, i.e. --alpha1 (the original's t); default: unset", metavar="T")
    baset: Optional[float] = _opt(None, "linestats_swa: the second point (1 - baset) * w_a + baset * w_b, i.e. --alpha0 (the original's baset); default: unset (--alpha0)", metavar="T")
    align: Optional[str] = _opt(None, "linestats_aligned: how member B's units are permuted to match member A's before the line between them is evaluated: weight (weight matching, Git Re-Basin) or activation (correlations of their activations on 8 training batches); default: unset (weight there)", choices=("weight", "activation"))
    ensemble_mode: str = _opt("logits", "ensembles (of members, of a pair of points, of simplex vertices): summed logits (as the original) or averaged probabilities", choices=("logits", "probs"))

    # --- optimisation ---------------------------------------------------------------------------
    epochs: int = _opt(160, "number of epochs to train", metavar="N")
    batch_size: int = _opt(128, "training batch size; under torchrun/--multigpu the global batch, split over the processes (so 1 and N GPUs run the same experiment)", metavar="N")
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
    swag_rank: Optional[int] = _opt(None, "SWA training: also collect SWAG statistics (Maddox et al. 2019) at every averaging epoch -- the second moment and the last K deviations from the running mean -- for --trainer swag; K >= 2 (the SWAG paper uses 20); default: unset (no SWAG statistics)", metavar="K")
    swag_samples: int = _opt(30, "swag: networks drawn from the SWAG Gaussian, whose predicted probabilities are averaged (the SWAG paper's 30)", metavar="S")
    swag_scale: float = _opt(0.5, "swag: variance scale of the draws, w = mean + sqrt(scale) * (sqrt(diag var) * z1 + D z2 / sqrt(K - 1)), K the --swag-rank of the training run, as SWAG's code; 0.5 is the SWAG paper's 1/sqrt(2)", metavar="SCALE")
    swag_cov: str = _opt("lowrank", "swag: lowrank (SWAG: diagonal plus the low-rank term of the deviations) or diag (SWAG-diagonal, swa_gaussian's sample(cov=False): w = mean + sqrt(scale) * sqrt(diag var) * z1)", choices=("lowrank", "diag"))
    swa_save_epochs: Optional[tuple] = _opt(None, "SWA baseline: keep a copy of the trained network after each of these epochs (in models[2:], as the original's snapshots)", type=ints, metavar="E,E,...")

    # --- runs, logging, checkpoints ---------------------------------------------------------------
    name: str = _opt("default", "run name, key=value pairs joined by '+' (e.g. id=lines+seed=0)")
    log_dir: str = _opt("runs", "folder for run folders and results.csv")
    seed: int = _opt(1, "random seed (an evaluation trainer of one checkpoint recomputes BatchNorm over the batches of the seed the checkpoint was trained with; its own draws follow this one)", metavar="S")
    save: bool = _opt(False, "save checkpoints, TensorBoard logs and settings in <log-dir>/<name>+try=<i>/", action="store_true")
    save_data: bool = _opt(False, "save the results row (and run folder) without checkpoints", action="store_true")
    save_epochs: Optional[tuple] = _opt(None, "epochs after which to save a checkpoint", type=ints, metavar="E,E,...")
    save_iters: Optional[tuple] = _opt(None, "iterations (steps, counted from 0 over the run) after which to save a checkpoint; a run resumed from one continues mid-epoch exactly", type=ints, metavar="I,I,...")
    checkpoint_every_minutes: Optional[float] = _opt(None, "with --save: also checkpoint mid-epoch every this many minutes (resumable exactly)", metavar="M")
    resume: Optional[tuple] = _opt(None, "checkpoint(s) to resume from, comma separated (ensembles: one per member)", type=strs, metavar="CKPT,...")
    pretrained: bool = _opt(False, "with --resume: load the weights only and start from epoch 0", action="store_true")
    test_freq: Optional[int] = _opt(None, "test every this many epochs (and at the last)")
    log_interval: int = _opt(10, "batches between logged training losses", metavar="N")

    # --- hardware -------------------------------------------------------------------------------
    device: str = _opt("cpu", "device: cpu, cuda or cuda:<i>")
    multigpu: Optional[tuple] = _opt(None, "GPU ids, e.g. 0,1: one DistributedDataParallel process per GPU, spawned here (as torchrun would; implies --device cuda)", type=ints, metavar="G,G,...")
    sync_bn: bool = _opt(False, "DDP (torchrun/--multigpu): BatchNorm statistics over the global batch, subspace BatchNorm included", action="store_true")
    dist_timeout: Optional[float] = _opt(None, "DDP (torchrun/--multigpu): seconds a collective waits for the other processes; a rank that stops answering for that long stops the run with one line naming it; default: unset, 300 on CPUs (Gloo), 600 on GPUs (NCCL, PyTorch's own default there)", metavar="SECONDS")
    point_per_rank: bool = _opt(False, "DDP: each process trains its own random point of the subspace at each step (appendix B's samples per batch, at no extra cost); default: all train the same point", action="store_true")
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
    compile_mode: str = _opt("default", "with --compile: torch.compile's mode; reduce-overhead replays the model's forward and backward as CUDA graphs (the point is a device tensor: a new point per step needs no recapture)", choices=("default", "reduce-overhead", "max-autotune"))

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


def program_name(clone_script: str) -> str:
    """The command as the user typed it: a console script's name (``subspaces-train``) when run
    through one, else the clone's script (``main.py``), so help and errors name what was run."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name.startswith("subspaces-") else clone_script


def build_parser() -> argparse.ArgumentParser:
    """The command line, generated from :class:`Settings` (one flag per field)."""
    p = argparse.ArgumentParser(
        prog=program_name("main.py"),
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
            kw["type"] = _list_flag(m["type"], flags[0]) if m.get("type") else _scalar_type(f)
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


# --- values no run can use, checked before anything is read or written ---------------------------

# Longest run name: a file name holds 255 bytes, and the run folder adds "+try=<i>".
MAX_NAME_BYTES = 240


def _finite(flag: str, v: float, ok: bool, need: str) -> None:
    if not (math.isfinite(v) and ok):
        raise UserError(f"{flag} {v} {need}")


def _check_finite(s: Settings) -> None:
    """Every float flag (and every item of a list of floats) is a finite number: ``nan`` and ``inf``
    compare false with every bound, so the range checks below would let them through or misname them."""
    for f in fields(Settings):
        value = getattr(s, f.name)
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                default = "" if f.default is None else f" (default: {f.default})"
                raise UserError(f"--{f.name.replace('_', '-')} {v} is not a finite number; pass a number{default}")


def _check_name(name: str) -> None:
    """The run folder ``<log-dir>/<name>+try=<i>`` must be one folder inside the log folder."""
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    if name in ("", ".", "..") or "\0" in name or any(c in name for c in seps):
        raise UserError(f"--name {name!r} is not a single folder name (no '/', NUL, '.' or '..'); "
                        "pass key=value pairs joined by '+', e.g. --name id=lines+seed=0")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise UserError(f"--name is {len(name.encode('utf-8', 'surrogateescape'))} bytes long; "
                        f"pass a name of at most {MAX_NAME_BYTES} bytes")


def check_values(s: Settings) -> None:
    """Refuse flag values that no run can use, with a one-line UserError naming the fix.

    Needs neither data nor a model: checks that depend on the data set (``--output-size`` against
    its number of classes) or on the trainer live in ``main.check_settings``.
    """
    _check_finite(s)
    _finite("--width-mult", s.width_mult, s.width_mult > 0, "must be positive (1 is the model's own width)")
    if s.compile_mode != "default" and not s.compile:
        raise UserError(f"--compile-mode {s.compile_mode} sets how --compile compiles; pass --compile too")
    for flag, a in (("--t", s.t), ("--baset", s.baset)):
        if a is not None and not 0.0 <= a <= 1.0:
            raise UserError(f"{flag} {a} is outside [0, 1]; pass a weight in [0, 1]")
    if s.swag_samples < 1 or s.swag_scale < 0:
        raise UserError(f"--swag-samples {s.swag_samples} must be at least 1 and --swag-scale {s.swag_scale} at least 0")
    _finite("--lr", s.lr, s.lr >= 0, "is negative; pass a learning rate >= 0 (the paper uses 0.1)")
    _finite("--momentum", s.momentum, 0 <= s.momentum < 1, "is not in [0, 1) (the paper uses 0.9)")
    _finite("--wd", s.wd, s.wd >= 0, "is negative; pass a weight decay >= 0 (the paper uses 1e-4 or 5e-5)")
    _finite("--dropout", s.dropout, 0 <= s.dropout <= 1, "is not a probability in [0, 1]")
    _finite("--lr-gamma", s.lr_gamma, s.lr_gamma > 0, "must be positive (multistep_lr multiplies the rate by it)")
    for flag, v, least in (("--batch-size", s.batch_size, 1), ("--test-batch-size", s.test_batch_size, 1),
                           ("--warmup-length", s.warmup_length, 0), ("--lr-adjust", s.lr_adjust, 1),
                           ("--workers", s.workers, 0), ("--data-seed", s.data_seed, 0)):
        if v < least:
            raise UserError(f"{flag} {v} must be at least {least}")
    if s.dist_timeout is not None:
        _finite("--dist-timeout", s.dist_timeout, s.dist_timeout > 0, "must be a positive number of seconds")
    if s.test_freq is not None and s.test_freq < 1:
        raise UserError(f"--test-freq {s.test_freq} must be at least 1 (test every N epochs)")
    if s.output_size is not None and s.output_size < 1:
        raise UserError(f"--output-size {s.output_size} must be at least 1; leave it out to use the data set's number of classes")
    if not 1 <= s.sev <= 5:
        raise UserError(f"--sev {s.sev} is not an ImageNet-C severity; pass 1, 2, 3, 4 or 5")
    for flag, values, least in (("--save-epochs", s.save_epochs, 1), ("--save-iters", s.save_iters, 0)):
        if values and min(values) < least:
            raise UserError(f"{flag} {min(values)} never comes; pass values >= {least}")
    _check_name(s.name)
