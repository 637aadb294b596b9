"""Train or evaluate one run: ``python main.py --set Digits --conv-type LinesConv ...``.

``main(settings)`` takes its settings as an argument, so config scripts call it once per run with
a fresh :class:`args.Settings`; nothing global is read or mutated. Bad input raises
:class:`utils.errors.UserError` before anything is written, and the command line turns it into
one line on stderr and exit status 2.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn as nn

import data as datasets
import models
import trainers
from args import Settings, check_values, parse_args, replace
from modes.modules import coefficients_of, get_layer_type
from utils.checkpoint import as_float, load_checkpoint, load_model_state, save_checkpoint
from utils.errors import UserError
from utils.memory import keep_freed_memory
from utils.optim import get_optimizer
from utils.results import append_rows, check_log_dir
from utils.schedulers import assign_learning_rate, get_schedule
from utils.seed import derive_seed, seed_everything

# Settings written as results.csv columns beside the metrics (the run name carries them too).
RESULT_SETTINGS = (
    "set", "model", "model_name", "conv_type", "bn_type", "trainer", "n", "seed", "data_seed", "epochs",
    "lr", "batch_size", "beta", "layerwise", "num_samples", "label_noise", "label_smoothing",
    "alpha0", "alpha1", "update_bn", "train_update_bn", "width_mult", "num_models",
)


@dataclass
class RunSummary:
    """What a finished run returns to the caller (config scripts, tests)."""

    curr_acc1: float
    best_acc1: float
    train_loss: float
    metrics: dict
    run_dir: Optional[Path]
    name: str
    rows: list = field(default_factory=list)


# --- checks and defaults, before anything is written ----------------------------------------


def check_settings(s: Settings) -> Settings:
    """Validate flags that need no data or model; infer ``--n`` from ``SimplexConv<n>``."""
    check_values(s)
    if s.epochs < 0:
        raise UserError(f"--epochs {s.epochs} is negative; pass --epochs N with N >= 0")
    for flag, v in (("--batch-size", s.batch_size), ("--test-batch-size", s.test_batch_size), ("--num-samples", s.num_samples), ("--num-models", s.num_models), ("--log-interval", s.log_interval)):
        if v < 1:
            raise UserError(f"{flag} {v} must be at least 1")
    if s.num_samples > s.batch_size:
        raise UserError(f"--num-samples {s.num_samples} exceeds --batch-size {s.batch_size}; each sample needs part of the batch")
    if s.label_noise is not None and not 0.0 <= s.label_noise <= 1.0:
        raise UserError(f"--label-noise {s.label_noise} is not a fraction in [0, 1]")
    if s.label_smoothing is not None and not 0.0 <= s.label_smoothing < 1.0:
        raise UserError(f"--label-smoothing {s.label_smoothing} is not in [0, 1)")
    for flag, a in [("--alpha0", s.alpha0), ("--alpha1", s.alpha1)] + [("--alphas", a) for a in (s.alphas or ())]:
        if not 0.0 <= a <= 1.0:
            raise UserError(f"{flag} {a} is outside [0, 1]; points of a line or curve have alpha in [0, 1]")
    if s.pretrained and not s.resume:
        raise UserError("--pretrained loads weights from --resume; pass --resume CKPT too")
    if s.trainswa and s.trainer == "default":
        s = replace(s, trainer="swa")  # --trainswa alone selects the SWA baseline's trainer
    if s.trainer == "swa":
        s = replace(s, trainswa=True, num_models=max(2, s.num_models))  # models[1] holds the average
        if not (0.0 <= s.swa_start < 1.0 and s.swa_lr > 0):
            raise UserError(f"--swa-start {s.swa_start} must be a fraction of the epochs in [0, 1) and --swa-lr {s.swa_lr} positive")
    elif s.trainswa:
        raise UserError(f"--trainswa trains the SWA baseline of a standard network, not with --trainer {s.trainer}; drop --trainer or pass --trainer swa")
    trainer_cls = trainers.get_trainer(s.trainer)
    if s.epochs == 0 and trainer_cls.trains and not s.resume:
        raise UserError(f"--epochs 0 trains nothing; pass --epochs N >= 1 (or --resume CKPT to evaluate a checkpoint)")
    get_schedule(s.lr_policy, s)
    if s.optimizer not in ("sgd", "adam"):
        raise UserError(f"unknown optimizer {s.optimizer!r} (--optimizer); choose one of: adam, sgd")
    conv = get_layer_type(s.conv_type, "Conv")
    get_layer_type(s.bn_type, "BN")
    coeffs = coefficients_of(conv)
    if coeffs is not None and coeffs.kind == "simplex":
        if s.n == -1:
            s = replace(s, n=coeffs.num_tensors)
        elif s.n != coeffs.num_tensors:
            raise UserError(f"--n {s.n} does not match --conv-type {s.conv_type}; pass --n {coeffs.num_tensors} or --conv-type SimplexConv{s.n} --bn-type SimplexBN{s.n}")
    if s.device.startswith("cuda") or s.multigpu:
        if not torch.cuda.is_available():
            raise UserError("CUDA is not available on this machine; pass --device cpu (the default)")
    elif s.device != "cpu":
        raise UserError(f"--device {s.device!r} is not cpu, cuda or cuda:<i>")
    if (s.amp != "none" or s.compile or s.channels_last) and s.multigpu:
        raise UserError("--amp, --compile and --channels-last are for one device; drop --multigpu")
    if s.channels_last is None:
        # Evaluation-only runs on a CPU: channels-last convolutions are ~1.3x faster there and change
        # results only at float rounding. Training keeps the format it was tested with (NCHW).
        s = replace(s, channels_last=not trainer_cls.trains and s.device == "cpu" and not s.multigpu)
    return s


def resolve_device(s: Settings) -> torch.device:
    """The device the run uses (``--multigpu`` implies its first GPU)."""
    if s.multigpu:
        return torch.device(f"cuda:{s.multigpu[0]}")
    return torch.device(s.device)


def build_model(s: Settings, data) -> nn.Module:
    """The model ``--model`` names (default: the data set's), with the chosen layer types."""
    builder = models.Builder(s.conv_type, s.bn_type, s.conv_init, s.mode, s.nonlinearity)
    return models.get_model(
        s.model,
        builder,
        output_size=s.output_size,
        in_channels=data.in_channels,
        model_name=s.model_name,
        width_mult=s.width_mult,
        dropout=s.dropout,
    )


def load_resume(s: Settings) -> tuple:
    """Load the ``--resume`` checkpoints; returns ``(checkpoints, [(path, state_dict), ...])``.

    A checkpoint whose saved layer types differ from the flags fails here, naming the flags to use.
    """
    ckpts, state_dicts = [], []
    for path in s.resume or ():
        ckpt = load_checkpoint(path)
        saved = ckpt.get("settings") or {}
        for flag in ("conv_type", "bn_type"):
            if saved.get(flag) not in (None, getattr(s, flag)):
                raise UserError(
                    f"checkpoint {path} was trained with --{flag.replace('_', '-')} {saved[flag]}, not {getattr(s, flag)}; "
                    f"pass --conv-type {saved.get('conv_type')} --bn-type {saved.get('bn_type')}"
                )
        ckpts.append(ckpt)
        state_dicts += [(path, sd) for sd in ckpt["state_dicts"]]
    return ckpts, state_dicts


def make_run_dir(log_dir: str, name: str) -> tuple:
    """``<log_dir>/<name>+try=<i>/`` for the first free i; returns (path, name with +try=i)."""
    root = Path(log_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    i = 0
    while True:
        run_dir = root / f"{name}+try={i}"
        try:
            run_dir.mkdir()
            return run_dir, f"{name}+try={i}"
        except FileExistsError:
            i += 1


def _code_version() -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# --- the run ------------------------------------------------------------------------------------


def main(settings: Settings) -> RunSummary:
    """Run one training or evaluation as ``settings`` describe; return its results."""
    s = check_settings(settings)
    if s.save or s.save_data:
        check_log_dir(s.log_dir)  # a log folder that cannot take the run fails before anything is made
    trainer_cls = trainers.get_trainer(s.trainer)
    seed_everything(s.seed)
    device = resolve_device(s)
    if device.type == "cpu":
        keep_freed_memory()  # glibc: no page-faulting of freed activations back in at every step
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed-size batches: pick the fastest kernels once, as the original
    data = datasets.get_dataset(s)
    s = replace(
        s,
        model=s.model or data.default_model,
        model_name=s.model_name if s.model_name is not None or s.model else data.default_model_name,
        output_size=s.output_size or data.num_classes,
    )
    trainer = trainer_cls(s)

    # Models, checkpoints, checks: everything that can fail on bad input, before any file is made.
    ckpts, state_dicts = load_resume(s)
    if len(state_dicts) > s.num_models or (state_dicts and getattr(trainer_cls, "models_from_checkpoints", False)):
        if not getattr(trainer_cls, "models_from_checkpoints", False):
            raise UserError(f"--resume holds {len(state_dicts)} models but the run has {s.num_models}; pass --num-models {len(state_dicts)}")
        s = replace(s, num_models=len(state_dicts))
        trainer = trainer_cls(s)
    nets = [build_model(s, data) for _ in range(s.num_models)]
    if s.trainswa:
        for net in nets[1:]:
            net.requires_grad_(False)  # as the original: the SWA baseline trains models[0] only
    for net, (path, sd) in zip(nets, state_dicts):
        load_model_state(net, sd, path)
    trainer.check(nets)
    start_epoch, best_acc1, curr_acc1 = 0, 0.0, 0.0
    if ckpts and not s.pretrained:
        start_epoch = int(ckpts[0]["epoch"])
        curr_acc1 = as_float(ckpts[0].get("curr_acc1", 0.0))
        best_acc1 = max(0.0, as_float(ckpts[0].get("best_acc1", 0.0)))
        if start_epoch > s.epochs and trainer.trains:
            raise UserError(f"checkpoint is at epoch {start_epoch}, past --epochs {s.epochs}; pass --epochs >= {start_epoch} or --pretrained")

    for net in nets:
        net.to(device)
        if s.channels_last:
            net.to(memory_format=torch.channels_last)
    run_models = [nn.DataParallel(n, device_ids=list(s.multigpu)) for n in nets] if s.multigpu else nets
    if s.compile:
        run_models = [torch.compile(m) for m in run_models]
    optimizers = [get_optimizer(s, n) for n in nets] if trainer.trains else [None] * len(nets)
    if ckpts and not s.pretrained and trainer.trains:
        saved_opts = [o for c in ckpts for o in c.get("optimizers", [])]
        for opt, state in zip([o for o in optimizers if o is not None], saved_opts):
            opt.load_state_dict(state)
    schedule = get_schedule(s.lr_policy, s)
    criterion = nn.CrossEntropyLoss(label_smoothing=s.label_smoothing or 0.0)

    # From here on the run writes files.
    run_dir, name = None, s.name
    if s.save or s.save_data:
        run_dir, name = make_run_dir(s.log_dir, s.name)
        s = replace(s, name=name)
        trainer.settings = s
        (run_dir / "settings.txt").write_text(json.dumps(s.to_dict(), indent=2, sort_keys=True) + "\n")
        print(f"=> Saving data in {run_dir}", file=sys.stderr)
    writer = None
    if s.save and run_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(run_dir))
    n_batches = len(data.train_loader)

    def save(epoch: int, it: int) -> None:
        if not (s.save and run_dir is not None):
            return
        save_checkpoint(
            run_dir / f"epoch_{epoch}_iter_{it}.pt",
            {
                "epoch": epoch,
                "iter": it,
                "arch": s.model,
                "state_dicts": [n.state_dict() for n in nets],
                "optimizers": [o.state_dict() for o in optimizers if o is not None],
                "best_acc1": float(best_acc1),
                "curr_acc1": float(curr_acc1),
                "settings": s.to_dict(),
            },
        )

    scaler = torch.amp.GradScaler(device.type) if s.amp == "fp16" else None
    ctx = trainers.RunContext(s, run_models, optimizers, data, criterion, device, writer, save, scaler)
    trainer.init(ctx)
    train_loss, metrics, result = 0.0, {}, None
    try:
        if not trainer.trains or start_epoch == s.epochs:
            result = trainer.test(ctx, start_epoch)
            curr_acc1, metrics = result.acc1, dict(result.metrics)
            best_acc1 = max(best_acc1, curr_acc1)
            metrics["epoch"] = start_epoch
        else:
            if start_epoch == 0:
                save(0, 0)  # the initialisation, as the original
            for epoch in range(start_epoch, s.epochs):
                data.set_epoch(epoch)
                torch.manual_seed(derive_seed(s.seed, epoch, "torch"))  # dropout and friends
                lr = schedule(epoch)
                for opt in optimizers:
                    if opt is not None:
                        assign_learning_rate(opt, lr)
                ctx.log_scalar("train/lr", lr, epoch)
                train_loss = trainer.train(ctx, epoch)
                lr = next((o.param_groups[0]["lr"] for o in optimizers if o is not None), lr)  # a trainer may set its own (SWA)
                last = epoch == s.epochs - 1
                if s.test_freq is None or epoch % s.test_freq == 0 or last:
                    result = trainer.test(ctx, epoch)
                    curr_acc1, metrics = result.acc1, dict(result.metrics)
                    best_acc1 = max(best_acc1, curr_acc1)
                print(f"epoch {epoch + 1}/{s.epochs}: train_loss {train_loss:.4f} acc {curr_acc1:.4f} (best {best_acc1:.4f}) lr {lr:.4g}", file=sys.stderr)
                metrics["epoch"] = epoch + 1
                if s.save_epochs and (epoch + 1) in s.save_epochs and not last:
                    save(epoch + 1, (epoch + 1) * n_batches)
            save(s.epochs, s.epochs * n_batches)
    finally:
        if writer is not None:
            writer.close()

    rows = []
    if result is not None and (s.save or s.save_data):
        provenance = {"run_dir": str(run_dir), "code_version": _code_version(), "device": _device_name(device), "torch": torch.__version__}
        for r in result.result_rows():
            settings_cols = {k: getattr(s, k) for k in RESULT_SETTINGS}
            settings_cols.update(r.columns)
            row_metrics = dict(r.metrics)
            row_metrics.setdefault("epoch", metrics.get("epoch"))
            rows.append({
                "Name": name + r.name_suffix,
                "curr_acc1": r.acc1,
                "best_acc1": best_acc1 if result.rows is None else r.acc1,
                "train_loss": train_loss,
                **row_metrics,
                **{k: v for k, v in settings_cols.items() if k not in row_metrics},
                **provenance,
            })
        append_rows(Path(s.log_dir).expanduser() / "results.csv", rows)
    return RunSummary(curr_acc1, best_acc1, train_loss, metrics, run_dir, name, rows)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry: parse, run, and turn bad input into one line and exit status 2."""
    try:
        summary = main(parse_args(argv))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume <last checkpoint>", file=sys.stderr)
        return 130
    print(f"=> {summary.name}: curr_acc1 {summary.curr_acc1:.4f} best_acc1 {summary.best_acc1:.4f}" + (f" ({summary.run_dir})" if summary.run_dir else ""))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
