"""Train or evaluate one run: ``python main.py --set Digits --conv-type LinesConv ...``.

``main(settings)`` takes its settings as an argument, so config scripts call it once per run with
a fresh :class:`subspaces.args.Settings`; nothing global is read or mutated. Bad input raises
:class:`subspaces.utils.errors.UserError` before anything is written, and the command line turns it into
one line on stderr and exit status 2.
"""
from __future__ import annotations

import contextlib
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn as nn

from subspaces import data as datasets
from subspaces import models
from subspaces.args import Settings, apply_aliases, check_values, parse_args, replace
from subspaces.modes.modules import coefficients_of, get_layer_type
from subspaces.trainers import TRAINERS, Position, RunContext, Trainer
from subspaces.trainers.base import Interrupted, Stopped, check_bn_weighting, check_own_settings
from subspaces.trainers.evaluate import bn_batches_seed
from subspaces.trainers.loop import Progress, fit
from subspaces.trainers.report import grid_table
from subspaces.utils import distributed
from subspaces.utils.checkpoint import as_float, check_same_architecture, count_non_finite, load_checkpoint, load_model_state, tensors_of
from subspaces.utils.errors import Diverged, UserError
from subspaces.utils.memory import keep_freed_memory
from subspaces.utils.optim import OPTIMIZERS, get_optimizer
from subspaces.utils.results import append_rows, check_log_dir
from subspaces.utils.resume import DATA_DEFAULTS, Resumed, check_architecture
from subspaces.utils.run_folder import RunFolder, continued_folder, resume_file
from subspaces.utils.schedulers import get_schedule
from subspaces.utils.seed import seed_everything

# Settings written as results.csv columns beside the metrics (the run name carries them too).
RESULT_SETTINGS = (
    "set", "model", "model_name", "conv_type", "bn_type", "trainer", "n", "seed", "data_seed", "epochs",
    "lr", "batch_size", "beta", "layerwise", "num_samples", "label_noise", "label_smoothing",
    "alpha0", "alpha1", "update_bn", "train_update_bn", "bn_weighting", "width_mult", "num_models", "init_endpoints", "fix_endpoints",
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
    """Validate the flags (no data or model needed) and resolve what they imply: ``--n`` from
    ``SimplexConv<n>``, the trainer's own adjustments, the channels-last default.

    :func:`subspaces.main` calls it once; a config script's sweep calls its two parts itself (it fills in the
    checkpoints a run needs between them), then :func:`run_checked`.
    """
    s = check_flags(s)
    check_checkpoint_flags(s)
    return s


def check_checkpoint_flags(s: Settings) -> None:
    """The flags that go with checkpoints: ``--pretrained`` and ``--epochs 0`` need ``--resume``,
    ``--fix-endpoints`` needs ``--init-endpoints``, which the trainer must take."""
    trainer_cls = TRAINERS.get(s.trainer)
    if s.pretrained and not s.resume:
        raise UserError("--pretrained loads weights from --resume; pass --resume CKPT too")
    if s.fix_endpoints and not s.init_endpoints:
        raise UserError("--fix-endpoints fixes the endpoints that --init-endpoints loads; pass --init-endpoints A.pt,B.pt too")
    if s.init_endpoints and not trainer_cls.takes_endpoints:
        takes = ", ".join(name for name, cls in TRAINERS.items() if cls.takes_endpoints)
        raise UserError(f"--trainer {s.trainer} does not take --init-endpoints; pass --trainer {takes}")
    if s.epochs == 0 and trainer_cls.trains and not s.resume:
        raise UserError("--epochs 0 trains nothing; pass --epochs N >= 1 (or --resume CKPT to evaluate a checkpoint)")


def check_flags(s: Settings) -> Settings:
    """:func:`check_settings` less :func:`check_checkpoint_flags`: what a sweep checks of a run
    before it looks for the checkpoints the run needs."""
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
    if s.checkpoint_every_minutes is not None and s.checkpoint_every_minutes <= 0:
        raise UserError(f"--checkpoint-every-minutes {s.checkpoint_every_minutes} must be positive")
    s = apply_aliases(s)
    trainer_cls = TRAINERS.get(s.trainer)
    check_own_settings(trainer_cls, s)
    s = trainer_cls.adjust_settings(s)
    check_bn_weighting(trainer_cls, s)
    get_schedule(s.lr_policy, s)
    OPTIMIZERS.get(s.optimizer)
    s = _check_layer_types(s)
    _check_device(s)
    _check_world(s, distributed.env_world().size)
    if s.channels_last is None:
        # Evaluation-only runs on a CPU: channels-last convolutions are ~1.3x faster there and change
        # results only at float rounding. Training keeps the format it was tested with (NCHW).
        s = replace(s, channels_last=not trainer_cls.trains and s.device == "cpu" and not s.multigpu)
    return s


def _check_world(s: Settings, processes: int) -> None:
    """What a run of several processes (torchrun, --multigpu) needs of the flags."""
    processes = max(processes, len(s.multigpu or ()))
    if processes <= 1:
        if s.point_per_rank:
            raise UserError("--point-per-rank gives each DDP process its own point, but this run has one process; "
                            "start it with torchrun --nproc-per-node N (or --multigpu 0,1), or drop --point-per-rank")
        return
    if s.batch_size % processes:
        raise UserError(f"--batch-size {s.batch_size} is the global batch, split over {processes} processes; pass a multiple of {processes}")
    if s.num_samples > 1:
        raise UserError(f"--num-samples {s.num_samples} splits one process's batch; with {processes} processes pass --point-per-rank instead (each process its own point)")


def _check_layer_types(s: Settings) -> Settings:
    """The layer types exist; ``--n`` agrees with (or is inferred from) ``SimplexConv<n>``."""
    coeffs = coefficients_of(get_layer_type(s.conv_type, "Conv"))
    get_layer_type(s.bn_type, "BN")
    if coeffs is not None and coeffs.kind == "simplex":
        if s.n == -1:
            return replace(s, n=coeffs.num_tensors)
        if s.n != coeffs.num_tensors:
            raise UserError(f"--n {s.n} does not match --conv-type {s.conv_type}; pass --n {coeffs.num_tensors} or --conv-type SimplexConv{s.n} --bn-type SimplexBN{s.n}")
    return s


def _check_device(s: Settings) -> None:
    if s.device.startswith("cuda") or s.multigpu:
        if not torch.cuda.is_available():
            raise UserError("CUDA is not available on this machine; pass --device cpu (the default)")
    elif s.device != "cpu":
        raise UserError(f"--device {s.device!r} is not cpu, cuda or cuda:<i>")


def resolve_device(s: Settings, world: distributed.World) -> torch.device:
    """The device this process uses: ``--multigpu``'s GPU of this rank, or under torchrun
    ``cuda:<local rank>`` for ``--device cuda``."""
    if s.multigpu:
        return torch.device(f"cuda:{s.multigpu[world.local_rank]}")
    device = torch.device(s.device)
    if device.type == "cuda" and world.size > 1 and device.index is None:
        return torch.device(f"cuda:{world.local_rank}")
    return device


def setup_process(s: Settings, device: torch.device, world: distributed.World) -> None:
    """Seeds, per-device tuning and the process group of a DDP run, once per run."""
    seed_everything(s.seed)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    distributed.init_process_group(world, device, s.dist_timeout)
    if device.type == "cpu":
        keep_freed_memory()  # glibc: no page-faulting of freed activations back in at every step
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed-size batches: pick the fastest kernels once, as the original


def with_data_defaults(s: Settings, data) -> Settings:
    """Fill in what the data set decides when the flags leave it open (model, classes)."""
    if s.output_size is not None and s.output_size < data.num_classes:
        raise UserError(f"--output-size {s.output_size} is smaller than the {data.num_classes} classes of {s.set}; "
                        f"pass --output-size {data.num_classes} or more (or leave it out)")
    return replace(
        s,
        model=s.model or data.default_model,
        model_name=s.model_name if s.model_name is not None or s.model else data.default_model_name,
        output_size=s.output_size or data.num_classes,
    )


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


def load_resume(s: Settings, check_layers: bool = True) -> tuple:
    """Load the ``--resume`` checkpoints; returns ``(checkpoints, [(path, state_dict), ...])``.

    A checkpoint whose saved layer types differ from the flags fails here (``check_layers``; a
    resumed run checks all its architecture flags instead, see :func:`resume_settings`), naming the
    flags to use. A training run refuses a checkpoint of NaN or infinite weights.
    """
    ckpts, state_dicts = [], []
    trains = TRAINERS.get(s.trainer).trains
    for path in s.resume or ():
        ckpt = load_checkpoint(path)
        saved = ckpt.get("settings") or {}
        bad = count_non_finite(tensors_of(ckpt["state_dicts"])) if trains else 0
        if bad:
            raise UserError(f"checkpoint {path} holds {bad} tensors with NaN or infinite values (saved after training diverged); "
                            "resume from an earlier checkpoint of the run, with a lower --lr")
        for flag in ("conv_type", "bn_type") if check_layers else ():
            if saved.get(flag) not in (None, getattr(s, flag)):
                raise UserError(
                    f"checkpoint {path} was trained with --{flag.replace('_', '-')} {saved[flag]}, not {getattr(s, flag)}; "
                    f"pass --conv-type {saved.get('conv_type')} --bn-type {saved.get('bn_type')}"
                )
        ckpts.append(ckpt)
        state_dicts += [(path, sd) for sd in ckpt["state_dicts"]]
    return ckpts, state_dicts


def resume_settings(s: Settings) -> tuple:
    """``(settings, checkpoints, state dicts, Resumed or None)``: the ``--resume`` checkpoints loaded
    (a run folder stands for its ``last.pt``) and, when the run continues a training run, the
    architecture flags checked against (or taken from) the checkpoint's settings."""
    if s.resume:
        s = replace(s, resume=tuple(resume_file(p) for p in s.resume))
    if not (s.resume and not s.pretrained and TRAINERS.get(s.trainer).trains):
        return (s, *load_resume(s), None)
    ckpts, state_dicts = load_resume(s, check_layers=False)
    s, resumed = check_architecture(s, ckpts[0], s.resume[0])
    if set(resumed.adopted) - set(DATA_DEFAULTS):
        s = check_flags(s)  # what the adopted flags imply (--n, the trainer's settings)
    return s, ckpts, state_dicts, resumed


def fit_model_count(s: Settings, trainer_cls: type, state_dicts: list) -> Settings:
    """``--num-models`` from the checkpoints for trainers that take one model per state dict."""
    if trainer_cls.models_from_checkpoints and state_dicts:
        return replace(s, num_models=len(state_dicts))
    if len(state_dicts) > s.num_models:
        raise UserError(f"--resume holds {len(state_dicts)} models but the run has {s.num_models}; pass --num-models {len(state_dicts)}")
    return s


def build_models(s: Settings, data, trainer: Trainer, state_dicts: list) -> list:
    """The run's models, loaded from ``--resume``, checked and assembled by the trainer (still on the CPU)."""
    if trainer.models_from_checkpoints:
        check_same_architecture(state_dicts)
    nets = [build_model(s, data) for _ in range(trainer.models_to_build())]
    trainer.prepare_models(nets)
    for net, (path, sd) in zip(nets, state_dicts):
        load_model_state(net, sd, path)
    trainer.check(nets)
    return trainer.assemble(nets, lambda **changes: build_model(replace(s, **changes), data))


def start_position(s: Settings, trainer: Trainer, ckpts: list, progress: Progress) -> Position:
    """Where the run starts: epoch 0, or where the ``--resume`` checkpoint stopped (mid-epoch too)."""
    if not ckpts or s.pretrained:
        return Position(0)
    ck = ckpts[0]
    if "epoch" not in ck:
        raise UserError(f"checkpoint {s.resume[0]} records no epoch to continue from; pass --pretrained to load its weights only")
    progress.curr_acc1 = as_float(ck.get("curr_acc1", 0.0))
    progress.best_acc1 = max(0.0, as_float(ck.get("best_acc1", 0.0)))
    trainer.load_state_dict(ck.get("trainer") or {})
    start = Position(int(ck["epoch"]), int(ck.get("batch", 0)), float(ck.get("loss_sum", 0.0)), ck.get("rng") or {})
    ranks = len(start.rng.get("ranks", [None]))
    if start.batch and ranks != distributed.env_world().size:
        raise UserError(f"checkpoint {s.resume[0]} was saved mid-epoch by {ranks} process(es); resume it with as many, or from an epoch checkpoint (epoch_<e>_iter_<e * batches>.pt)")
    if start.epoch > s.epochs and trainer.trains:
        raise UserError(f"checkpoint is at epoch {start.epoch}, past --epochs {s.epochs}; pass --epochs >= {start.epoch} or --pretrained")
    return start


def make_optimizers(s: Settings, nets: list, trainer: Trainer, ckpts: list) -> list:
    """One optimizer per trainable model, with its state (momentum buffers...) from the ``--resume``
    checkpoint, and the hyperparameters of this run's flags (``--wd``, ``--momentum``: what
    settings.txt records is what the run uses)."""
    optimizers = [get_optimizer(s, n) for n in nets] if trainer.trains else [None] * len(nets)
    if not (ckpts and not s.pretrained and trainer.trains):
        return optimizers
    trained_with = (ckpts[0].get("settings") or {}).get("optimizer")
    if trained_with not in (None, s.optimizer):
        raise UserError(f"checkpoint {s.resume[0]} was trained with --optimizer {trained_with}, not {s.optimizer}; "
                        f"pass --optimizer {trained_with} (or --pretrained to start a fresh optimizer)")
    saved = [o for c in ckpts for o in c.get("optimizers", [])]
    for opt, state in zip([o for o in optimizers if o is not None], saved):
        fresh = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        try:
            if ("betas" in state["param_groups"][0]) != ("betas" in fresh[0]):  # Adam's state, SGD's run or the reverse
                raise ValueError("another optimizer's state")
            opt.load_state_dict(state)
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise UserError(f"the optimizer state in {s.resume[0]} does not fit this run ({e}); "
                            "pass the --optimizer and model flags it was trained with, or --pretrained") from None
        for group, hyper in zip(opt.param_groups, fresh):
            group.update(hyper)
    return optimizers


def place_models(s: Settings, nets: list, device: torch.device, world: distributed.World) -> list:
    """Move the models to the device; the modules the run calls (DDP-wrapped, compiled)."""
    for net in nets:
        if s.sync_bn:
            distributed.convert_sync_bn(net)
        net.to(device)
        if s.channels_last:
            net.to(memory_format=torch.channels_last)
    run_models = distributed.wrap(nets, device, world)
    return [torch.compile(m, mode=s.compile_mode) for m in run_models] if s.compile else run_models


# --- the run ------------------------------------------------------------------------------------


def main(settings: Settings) -> RunSummary:
    """Run one training or evaluation as ``settings`` describe; return its results."""
    return run_checked(check_settings(settings))


def run_checked(s: Settings) -> RunSummary:
    """Run settings that :func:`check_settings` returned, once the log folder is found fit for them."""
    if s.save or s.save_data:
        check_log_dir(s.log_dir)  # a log folder that cannot take the run fails before anything is made
    with distributed.peer_failures():  # DDP: a rank that stopped answering, named in one line
        return run(s)


def run(s: Settings) -> RunSummary:
    """Run settings that :func:`check_settings` returned: data, models, trainer, loop, results."""
    world = distributed.env_world()
    device = resolve_device(s, world)
    setup_process(s, device, world)
    s = replace(s, device=str(device))  # the data sets that live on the device follow this rank's
    s, ckpts, state_dicts, resumed = resume_settings(s)
    trainer_cls = TRAINERS.get(s.trainer)
    data = datasets.get_dataset(replace(s, seed=bn_batches_seed(s, trainer_cls, ckpts)))
    s = with_data_defaults(s, data)
    s = fit_model_count(s, trainer_cls, state_dicts)
    trainer = trainer_cls(s)
    # Everything that can fail on bad input happens before the run folder is made.
    trainer.load_checkpoints(ckpts)
    nets = build_models(s, data, trainer, state_dicts)
    progress = Progress()
    start = start_position(s, trainer, ckpts, progress)
    optimizers = make_optimizers(s, nets, trainer, ckpts)
    run_models = place_models(s, nets, device, world)
    folder_of_run, record = continuation(s, resumed, data, world.main)
    with RunFolder(s, world.main, folder_of_run, record) as folder, stop_on_sigterm(trainer.trains) as stop, warn_unsaved(s, world.main):
        save = folder.checkpointer(nets, optimizers, trainer, progress, len(data.train_loader), resumed.path if resumed else None)
        ctx = RunContext(
            run_models, optimizers, data, nn.CrossEntropyLoss(label_smoothing=s.label_smoothing or 0.0), device,
            folder.writer, save, torch.amp.GradScaler(device.type) if s.amp == "fp16" else None,
            should_stop=stop, checkpoint_due=lambda it: s.save and it in (s.save_iters or ()),
            timer_due=checkpoint_timer(s), world=world,
        )
        trainer.init(ctx)
        try:
            fit(trainer, ctx, start, get_schedule(s.lr_policy, s), progress, save)
        except Diverged as e:
            raise Diverged(f"{e}; {save.good_hint()}") from None
        except KeyboardInterrupt:
            newest = save.newest_whole()
            raise Interrupted(f"continue with --resume {newest}" if newest else save.good_hint()) from None
    rows = write_results(s, folder, progress, device)
    if world.main and progress.result is not None and progress.result.rows:
        print(grid_table(progress.result.rows))  # an evaluation grid: one line per row, as results.csv holds it
    return RunSummary(progress.curr_acc1, progress.best_acc1, progress.train_loss, progress.metrics, folder.path, folder.name, rows)


def continuation(s: Settings, resumed: Optional[Resumed], data, main_rank: bool) -> tuple:
    """``(folder or None, record)``: the run folder a resumed run continues in (None: a new one) and
    what its settings.txt records of the resume; prints the resume's notes once."""
    if resumed is None:
        return None, {}
    folder, why = continued_folder(s, resumed.path) if main_rank else (None, "")
    if main_rank:
        for line in resumed.notes(s, data) + ([f"resume: {why}"] if why else []):
            print(line, file=sys.stderr)
    return folder, resumed.record(s)


# A run that writes nothing (no --save, no --save-data) says so once it has run this long.
UNSAVED_WARNING_S = 180.0


@contextlib.contextmanager
def warn_unsaved(s: Settings, main_rank: bool = True):
    """Warn once, on a timer (no cost to the steps), when a run that keeps nothing runs for minutes."""
    if s.save or s.save_data or not main_rank:
        yield
        return
    timer = threading.Timer(UNSAVED_WARNING_S, lambda: print(
        f"warning: this run has gone {UNSAVED_WARNING_S / 60:g} minutes and will write nothing (no --save or --save-data): "
        "no checkpoint, no results row; stop it and rerun with --save to keep them", file=sys.stderr, flush=True))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def checkpoint_timer(s: Settings):
    """``due()``: whether ``--checkpoint-every-minutes`` have passed since the last time it said so."""
    every = s.checkpoint_every_minutes * 60 if s.save and s.checkpoint_every_minutes else None
    last = [time.monotonic()]

    def due() -> bool:
        if every is None or time.monotonic() - last[0] < every:
            return False
        last[0] = time.monotonic()
        return True

    return due


@contextlib.contextmanager
def stop_on_sigterm(enabled: bool = True):
    """Turn SIGTERM (Slurm's preemption, ``kill``) into a stop at the next training step, which
    writes a checkpoint and raises :class:`subspaces.trainers.base.Stopped`. Yields the flag's reader.
    Evaluation-only runs keep the default action (nothing to checkpoint)."""
    flag = threading.Event()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag.is_set
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: flag.set())
    try:
        yield flag.is_set
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_results(s: Settings, folder: RunFolder, progress: Progress, device: torch.device) -> list:
    """Append the run's rows to ``<log_dir>/results.csv`` (when saving); returns them."""
    if progress.result is None or folder.path is None:
        return []
    provenance = {"run_dir": str(folder.path), "code_version": _code_version(), "device": _device_name(device), "torch": torch.__version__}
    rows = []
    for r in progress.result.result_rows():
        settings_cols = {k: getattr(s, k) for k in RESULT_SETTINGS}
        settings_cols.update(r.columns)
        row_metrics = dict(r.metrics)
        row_metrics.setdefault("epoch", progress.metrics.get("epoch"))
        rows.append({
            "Name": folder.name + r.name_suffix,
            "curr_acc1": r.acc1,
            "best_acc1": progress.best_acc1 if progress.result.rows is None else r.acc1,
            "train_loss": progress.train_loss,
            **row_metrics,
            **{k: v for k, v in settings_cols.items() if k not in row_metrics},
            **provenance,
        })
    path = Path(s.log_dir).expanduser() / "results.csv"
    try:
        append_rows(path, rows)
    except OSError as e:
        raise UserError(f"the results row could not be written to {path} ({e.strerror or e}); the run's checkpoints and "
                        f"settings are in {folder.path}: free space and rerun with --resume <its last checkpoint>") from None
    return rows


def _code_version() -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry: parse, run, and turn bad input into one line and exit status 2."""
    try:
        settings = parse_args(argv)
        if settings.multigpu and distributed.env_world().size == 1:
            return distributed.spawn(cli, list(argv if argv is not None else sys.argv[1:]), settings.multigpu)
        summary = main(settings)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except distributed.PeerLost as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Stopped as e:
        where = f"; continue with --resume {e.path}" if e.path else " (nothing saved: pass --save to checkpoint)"
        print(f"{e}{where}", file=sys.stderr)
        return 143
    except KeyboardInterrupt as e:  # an Interrupted run says where to continue; before it started, nothing to say
        print(f"interrupted; {e.note}" if isinstance(e, Interrupted) else "interrupted", file=sys.stderr)
        return 130
    print(f"=> {summary.name}: curr_acc1 {summary.curr_acc1:.4f} best_acc1 {summary.best_acc1:.4f}" + (f" ({summary.run_dir})" if summary.run_dir else ""))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
