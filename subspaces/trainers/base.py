"""The uniform trainer interface and the training epoch every training trainer shares.

A trainer is one file under ``trainers/`` with a class decorated ``@TRAINERS.register``. It
receives its settings once, at construction (``self.settings``), and everything else a run has
(models, optimisers, data, loss, device, TensorBoard writer, checkpointing) in a
:class:`RunContext`. What differs between trainers is declared by the hooks of :class:`Trainer`;
the run loop (``trainers/loop.py``) and ``main.py`` name no trainer.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn as nn

from subspaces.modes import subspace_coefficients
from subspaces.utils import distributed
from subspaces.utils.distributed import World
from subspaces.utils.errors import Diverged, UserError
from subspaces.utils.evaluation import autocast, to_device
from subspaces.utils.modules import unwrap
from subspaces.utils.progress import progress_bar
from subspaces.utils.registry import Registry

TRAINERS: Registry = Registry("trainer", "--trainer")


@dataclass
class ResultRow:
    """One results.csv row a test produced: accuracy, metrics, and what tells it apart."""

    acc1: float
    metrics: dict
    name_suffix: str = ""  # appended to the run name, e.g. "+alpha0=0.25+alpha1=0.75"
    columns: dict = field(default_factory=dict)  # settings this row overrides (alpha0, alpha1)


@dataclass
class TestResult:
    """What ``Trainer.test`` returns: the run's accuracy and metrics; ``rows`` when it yields
    several results rows (a grid evaluation), otherwise one row is made from acc1 and metrics."""

    acc1: float
    metrics: dict
    rows: Optional[list] = None

    def result_rows(self) -> list:
        """The rows to write to results.csv."""
        return self.rows if self.rows is not None else [ResultRow(self.acc1, self.metrics)]


@dataclass
class Position:
    """Where a run is: ``batch`` steps into epoch ``epoch`` (0 at an epoch boundary).

    ``loss_sum`` is the epoch's summed training loss so far and ``rng`` the random generators'
    states, so that a run resumed mid-epoch continues exactly (issue: never lose a run).
    """

    epoch: int
    batch: int = 0
    loss_sum: float = 0.0
    rng: dict = field(default_factory=dict)


class Stopped(Exception):
    """A stop was requested (SIGTERM, e.g. Slurm preemption): a checkpoint was written at ``path``."""

    def __init__(self, path: Optional[str], position: Position):
        super().__init__(f"stopped at epoch {position.epoch + 1}, step {position.batch}")
        self.path, self.position = path, position


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``note``: where to continue from (the newest whole checkpoint), or that nothing was saved."""

    def __init__(self, note: str):
        super().__init__(note)
        self.note = note


@dataclass
class RunContext:
    """Everything one run has besides its settings, handed to the trainer explicitly."""

    models: list
    optimizers: list
    data: object
    criterion: nn.Module
    device: torch.device
    writer: object = None  # a SummaryWriter, or None when not saving
    # save_checkpoint(position): write a checkpoint of the run at ``position`` (no-op when not saving).
    save_checkpoint: Callable[[Position], Optional[str]] = lambda position: None
    scaler: object = None  # torch.amp.GradScaler for --amp fp16
    resume_at: Optional[Position] = None  # a mid-epoch position to continue from, taken once
    should_stop: Callable[[], bool] = lambda: False  # a stop was asked for (a plain flag: no sync)
    # Mid-epoch checkpoints: after the steps of --save-iters, and every --checkpoint-every-minutes.
    checkpoint_due: Callable[[int], bool] = lambda it: False
    timer_due: Callable[[], bool] = lambda: False
    world: World = World()
    # The global training step the run has reached (steps done; the run loop sets it): the x of the
    # TensorBoard scalars a trainer logs without a step of its own, so that training and test
    # scalars share one axis, that of the checkpoints' ``iter``.
    step: int = 0

    def log_scalar(self, tag: str, value: float, step: Optional[int] = None) -> None:
        """Write a TensorBoard scalar when the run is saved, at ``step`` (default: :attr:`step`)."""
        if self.writer is not None:
            self.writer.add_scalar(tag, value, self.step if step is None else step)

    def take_resume(self, epoch: int) -> Position:
        """The position to start ``epoch`` at: the mid-epoch resume point once, then batch 0."""
        at, self.resume_at = self.resume_at, None
        return at if at is not None and at.epoch == epoch else Position(epoch)


@dataclass
class EpochState:
    """Per-epoch state of the training step; ``generator`` (if any) is saved in mid-epoch checkpoints."""

    generator: Optional[torch.Generator] = None


class Trainer:
    """Base trainer. Subclasses set ``name``, ``kinds`` (the subspace kinds they accept: "standard",
    "line", "curve", "simplex") and implement ``test`` and, to train, ``loss`` or ``train``.

    Hooks the run loop calls, in order: :meth:`adjust_settings` (class method, on the parsed
    settings), the constructor, :meth:`load_checkpoints`, :meth:`models_to_build`,
    :meth:`prepare_models`, :meth:`check`, :meth:`assemble`, :meth:`init`, then per epoch
    :meth:`learning_rate`, :meth:`train`, :meth:`test`; :meth:`state_dict` /
    :meth:`load_state_dict` carry any state of the trainer's own through checkpoints.
    """

    name = "base"
    kinds: tuple = ("standard",)
    trains = True  # False: an evaluation-only trainer (no epochs, no checkpoints)
    models_from_checkpoints = False  # True: one model per state dict in --resume (ensembles)
    # Settings only some trainers read (e.g. "t", "swag_samples"): every trainer that does not
    # name one here refuses it when it is set, so no flag is accepted and ignored.
    own_settings: tuple = ()
    takes_endpoints = False  # True: honours --init-endpoints (trained networks as a subspace's endpoints)

    def __init__(self, settings):
        self.settings = settings

    # -- before anything is built or written -----------------------------------------------------
    @classmethod
    def adjust_settings(cls, settings):
        """The settings this trainer runs with: what it implies, or a UserError for what it refuses."""
        return settings

    @classmethod
    def recomputes_bn(cls, settings) -> bool:
        """Whether a run with ``settings`` recomputes BatchNorm statistics (what ``--bn-weighting``
        weighs): evaluations with ``--update-bn`` (default), or always, or never."""
        return settings.update_bn

    def check(self, models: list) -> None:
        """Raise UserError when the models do not fit this trainer (e.g. a line for train_simplexes)."""
        coeffs = subspace_coefficients(unwrap(models[0]))
        kind = coeffs.kind if coeffs is not None else "standard"
        if kind not in self.kinds:
            raise UserError(
                f"trainer {self.name} works on {' / '.join(self.kinds)} models, but --conv-type "
                f"{self.settings.conv_type} makes a {kind} model; {_fix_hint(kind)}"
            )

    def load_checkpoints(self, checkpoints: list) -> None:
        """Read what the trainer needs from the ``--resume`` checkpoints besides the weights (e.g.
        SWAG statistics), with or without ``--pretrained``; called before the models are built."""

    def models_to_build(self) -> int:
        """How many networks the run builds: ``--num-models`` (an evaluation that sets one network
        to several points builds one)."""
        return self.settings.num_models

    def prepare_models(self, models: list) -> None:
        """Adjust the freshly built models before their ``--resume`` weights are loaded."""

    def assemble(self, models: list, build: Callable[..., nn.Module]) -> list:
        """The models the run uses, made from the loaded and checked ``models`` (default: those).

        Evaluation trainers that evaluate networks made from the loaded ones (a weight average, the
        line between two networks) return them here, before they move to the device. ``build(**changes)``
        makes a fresh model of the run's architecture with those settings changed (e.g. ``conv_type``).
        """
        return models

    # -- the original's three roles ----------------------------------------------------------
    def init(self, ctx: RunContext) -> None:
        """Called once before the first epoch."""

    def learning_rate(self, epoch: int, schedule: Callable[[int], float]) -> float:
        """The learning rate of ``epoch`` (default: the ``--lr-policy`` schedule's)."""
        return schedule(epoch)

    def train(self, ctx: RunContext, epoch: int) -> float:
        """Train one epoch; return the mean training loss."""
        return self.train_epoch(ctx, epoch, self.begin_epoch(ctx, epoch))

    def test(self, ctx: RunContext, epoch: int) -> TestResult:
        """Evaluate; return accuracy and metrics."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """The trainer's own state to keep in checkpoints (tensors and builtins only)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""

    # -- the training step -------------------------------------------------------------------
    def begin_epoch(self, ctx: RunContext, epoch: int) -> EpochState:
        """Per-epoch state for ``loss`` (e.g. the point generator)."""
        return EpochState()

    def loss(self, ctx: RunContext, state: EpochState, x: torch.Tensor, y: torch.Tensor) -> tuple:
        """Loss and logits of one batch (the forward pass of the training step)."""
        out = ctx.models[0](x)
        return ctx.criterion(out, y), out

    def train_step(self, ctx: RunContext, state: EpochState, x: torch.Tensor, y: torch.Tensor, weight: float = 1.0) -> tuple:
        """One step of the first model: ``loss`` forward (under ``--amp`` autocast), backward,
        optimizer step. Returns ``(loss, logits)`` on the device: nothing here waits for it.
        ``weight`` scales the loss that is backpropagated (a DDP rank's share of an uneven batch)."""
        optimizer = ctx.optimizers[0]
        optimizer.zero_grad(set_to_none=True)
        with autocast(ctx.device, self.settings.amp):
            loss, out = self.loss(ctx, state, x, y)
        scaled = loss * weight if weight != 1.0 else loss
        if ctx.scaler is not None:
            ctx.scaler.scale(scaled).backward()
            ctx.scaler.step(optimizer)
            ctx.scaler.update()
        else:
            scaled.backward()
            optimizer.step()
        return loss, out

    def train_epoch(self, ctx: RunContext, epoch: int, state: EpochState) -> float:
        """One epoch of :meth:`train_step` over the training batches; the mean loss.

        No host-device sync and no extra kernel per step: the running loss sum stays on the device and
        is read every ``--log-interval`` batches and at the end, which is also where a NaN or
        infinite loss is caught (a non-finite loss makes the sum non-finite, so the steps since the
        last read are the culprits) and, under DDP, where the ranks agree on stopping. A run resumed mid-epoch (``ctx.resume_at``) skips the batches
        already trained and restores the generators.
        """
        s, model, world = self.settings, ctx.models[0], ctx.world
        model.train()
        at = ctx.take_resume(epoch)
        ctx.data.set_epoch(epoch, start_batch=at.batch)
        if at.rng:
            restore_rng(at.rng, state, world)
        n_batches, n_samples = len(ctx.data.train_loader), len(ctx.data.train_loader.dataset)
        # The epoch's summed loss, as the one-process run's: each rank adds its weighted share, the
        # ranks' sums are added at the end (a resumed sum restarts on rank 0).
        total = torch.full((), at.loss_sum * world.size if world.main else 0.0, device=ctx.device)
        checked = at.batch  # the steps before this one are known to have a finite loss
        bar = progress_bar(ctx.data.train_loader, f"epoch {epoch + 1}/{s.epochs}", total=n_batches - at.batch, main=world.main)
        for batch_idx, (x, y) in enumerate(bar, start=at.batch):
            x, y = to_device(x, ctx.device, s.channels_last), y.to(ctx.device, non_blocking=True)
            # DDP: each rank's loss weighs its share of the global batch (exact for an uneven last one).
            weight = len(y) * world.size / min(s.batch_size, n_samples - batch_idx * s.batch_size) if world.size > 1 else 1.0
            loss, _ = self.train_step(ctx, state, x, y, weight)
            loss = loss.detach()
            total += loss if weight == 1.0 else loss * weight
            it = n_batches * epoch + batch_idx
            stop = timed = False
            if batch_idx % s.log_interval == 0:
                value, running = torch.stack((loss.float(), total)).tolist()  # one sync
                check_finite(running, epoch, checked, batch_idx)
                checked = batch_idx + 1
                stop, timed = distributed.any_rank(ctx.should_stop(), ctx.timer_due())
                bar.set_postfix(loss=f"{value:.4f}")
                ctx.log_scalar("train/loss", value, it)
            elif world.size == 1:
                stop, timed = ctx.should_stop(), ctx.timer_due()
            if (stop or timed or ctx.checkpoint_due(it)) and batch_idx + 1 < n_batches:
                self._save_mid_epoch(ctx, state, Position(epoch, batch_idx + 1), total, checked, stop)
                checked = batch_idx + 1
        bar.close()
        mean = distributed.all_sum([total.item()])[0] / world.size / max(1, n_batches)
        check_finite(mean, epoch, checked, n_batches - 1)
        return mean

    def _save_mid_epoch(self, ctx: RunContext, state: EpochState, done: Position, total: torch.Tensor,
                        checked: int, stop: bool) -> None:
        """A mid-epoch checkpoint at ``done`` (never of diverged weights: the steps from ``checked``
        on are checked first); raise Stopped if asked."""
        done.loss_sum = distributed.all_sum([total.item()])[0] / ctx.world.size
        check_finite(done.loss_sum, done.epoch, checked, done.batch - 1)
        mine = rng_state(state)
        done.rng = mine if ctx.world.size == 1 else {"ranks": distributed.all_objects(mine)}
        path = ctx.save_checkpoint(done)
        if stop:
            raise Stopped(path, done)


def check_own_settings(trainer_cls: type, settings) -> None:
    """Refuse a setting that only other trainers read (``own_settings``), when it differs from its
    default: the chosen trainer would ignore it."""
    defaults = {f.name: f.default for f in dataclasses.fields(settings)}
    readers: dict = {}
    for name, cls in TRAINERS.items():
        for key in cls.own_settings:
            readers.setdefault(key, []).append(name)
    for key, names in readers.items():
        if key not in trainer_cls.own_settings and getattr(settings, key) != defaults[key]:
            flag = "--" + key.replace("_", "-")
            raise UserError(f"{flag} is read by --trainer {' / '.join(sorted(names))}, not by {trainer_cls.name}; drop {flag} or pass --trainer {sorted(names)[0]}")


def check_bn_weighting(trainer_cls: type, settings) -> None:
    """Refuse ``--bn-weighting`` other than the default where the run recomputes no BatchNorm
    statistics (it would be accepted and ignored)."""
    if settings.bn_weighting != "batch" and not trainer_cls.recomputes_bn(settings):
        raise UserError(f"--bn-weighting {settings.bn_weighting} weighs the batches of a BatchNorm recompute, and --trainer {trainer_cls.name} "
                        f"recomputes none with these flags; pass --update-bn (evaluation) or --train-update-bn (training), or drop --bn-weighting")


def check_finite(value: float, epoch: int, first: int, last: int) -> None:
    """Raise :class:`Diverged` when the training loss (sum) ``value`` is not finite on any rank
    (under DDP all ranks stop together), naming the epoch and the steps ``first..last`` since the
    last check, where the first non-finite loss is."""
    if not distributed.any_rank(not math.isfinite(value))[0]:
        return
    steps = f"step {last + 1}" if first >= last else f"steps {first + 1}-{last + 1}"
    raise Diverged(
        f"the training loss became {value} at epoch {epoch + 1}, {steps}; "
        f"the run stopped: lower --lr (or add --warmup-length, or --amp none)"
    )


def rng_state(state: EpochState) -> dict:
    """The generators a mid-epoch checkpoint must hold: torch's (dropout), CUDA's, the epoch's."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    if state.generator is not None:
        rng["epoch"] = state.generator.get_state()
    return rng


def restore_rng(rng: dict, state: EpochState, world: World = World()) -> None:
    """Put back what :func:`rng_state` saved (under DDP, this rank's entry of ``rng["ranks"]``)."""
    if "ranks" in rng:
        rng = rng["ranks"][world.rank]
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    if "epoch" in rng and state.generator is not None:
        state.generator.set_state(rng["epoch"])


def _fix_hint(kind: str) -> str:
    return {
        "standard": "use --trainer default (or ensemble/swa) for StandardConv models",
        "line": "use --trainer train_one_dim_subspaces or eval_one_dim_subspaces for lines",
        "curve": "use --trainer train_one_dim_subspaces or eval_one_dim_subspaces for curves",
        "bezier": "use --trainer train_one_dim_subspaces or eval_one_dim_subspaces for BezierConv<k> curves",
        "polychain": "use --trainer train_one_dim_subspaces or eval_one_dim_subspaces for PolyChainConv<k> chains",
        "simplex": "use --trainer train_simplexes or eval_simplexes for SimplexConv<n> models",
    }[kind]
