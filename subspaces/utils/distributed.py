"""Several processes, one run: DistributedDataParallel under ``torchrun`` (or ``--multigpu``).

``torchrun --nproc-per-node N main.py ...`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`init_from_env` joins them into one
process group (NCCL on GPUs, Gloo on CPUs). Everything here is a no-op in a one-process run, so
the trainers and the evaluation code call it unconditionally:

- the global batch (``--batch-size``) is split over the ranks: each takes its contiguous part of
  every batch of the one-process run, so N processes and one process run the same experiment;
- evaluation passes are sharded by whole batches and their results reduced exactly: logits are
  gathered in order, BatchNorm statistics (a cumulative average over batches) are averaged with
  each rank's batch count as weight;
- ``--sync-bn`` computes BatchNorm batch statistics over the global batch (plain and subspace
  BatchNorm alike: the class of each BatchNorm module gains a synchronised forward, its
  parameters and state-dict names unchanged), with autograd through the all-reduce.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import functools
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn

from subspaces.utils.processes import stop_with_parent


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` of ``size`` processes (``local_rank`` on its node)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes (the run folder, checkpoints, results, TensorBoard, output)."""
        return self.rank == 0


def env_world() -> World:
    """The world ``torchrun`` (or ``--multigpu``'s spawner, or Slurm via submitit) describes in the environment."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))


# How long a collective waits for the other processes before the run stops (``--dist-timeout``).
# Gloo (CPUs): 5 minutes, ample for rank 0 writing a checkpoint while the others wait. NCCL (GPUs):
# PyTorch's own NCCL default, 10 minutes: GPU runs wait at collectives while rank 0 writes
# checkpoints of large models (ImageNet ResNet50 lines: hundreds of MB, often to network storage)
# and while torch.compile or cudnn autotuning runs on each rank at different speeds.
GLOO_TIMEOUT_S = 300.0
NCCL_TIMEOUT_S = 600.0
# Joining the process group waits at least this long for every rank to start (a Slurm job's
# nodes, or processes importing PyTorch on a loaded machine, start minutes apart).
JOIN_TIMEOUT_S = 600.0


def collective_timeout(seconds: Optional[float], device: torch.device) -> float:
    """``--dist-timeout`` in seconds, or the backend's default when it is unset."""
    if seconds is not None:
        return float(seconds)
    return NCCL_TIMEOUT_S if device.type == "cuda" else GLOO_TIMEOUT_S


def init_process_group(world: World, device: torch.device, timeout_s: Optional[float] = None) -> None:
    """Join the process group of ``world`` (NCCL for CUDA, Gloo for CPU), once per process.

    Collectives wait ``timeout_s`` (``--dist-timeout``; the backend's default when None) for the
    other ranks; joining waits at least :data:`JOIN_TIMEOUT_S`. Every rank then beats a heartbeat
    into the rendezvous store, so a rank whose collective timed out can name the one that stopped
    (:func:`lost_peer`).
    """
    if world.size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=collective_timeout(timeout_s, device))
        join = max(timeout, datetime.timedelta(seconds=JOIN_TIMEOUT_S))
        store, _, _ = next(dist.rendezvous("env://", world.rank, world.size, timeout=join))  # honours torchrun's agent store
        dist.init_process_group(backend, store=store, rank=world.rank, world_size=world.size, timeout=timeout)
        _start_heartbeat(store, world, timeout.total_seconds())


def current() -> World:
    """The world of the process group this process is in (one process when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return World()


def part(n: int, world: World) -> slice:
    """This rank's contiguous part of a batch of ``n`` (``torch.tensor_split``'s boundaries)."""
    base, extra = divmod(n, world.size)
    start = world.rank * base + min(world.rank, extra)
    return slice(start, start + base + (1 if world.rank < extra else 0))


def shard(batches: Iterable, world: World | None = None) -> Iterator:
    """Every ``size``-th batch of ``batches``, starting at this rank's (evaluation passes)."""
    world = world or current()
    for k, batch in enumerate(batches):
        if k % world.size == world.rank:
            yield batch


def _device_of(tensor: torch.Tensor) -> torch.device:
    # NCCL reduces CUDA tensors, Gloo CPU ones.
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_sum(values: Sequence[float]) -> list:
    """The sums over all ranks of a few numbers (identity in a one-process run)."""
    if current().size == 1:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64)
    t = t.to(_device_of(t))
    dist.all_reduce(t)
    return t.cpu().tolist()


def any_rank(*flags: bool) -> list:
    """For each flag, whether it is set on any rank (every rank gets the same answer)."""
    if current().size == 1:
        return [bool(f) for f in flags]
    return [v > 0 for v in all_sum([float(bool(f)) for f in flags])]


def all_objects(obj: object) -> list:
    """``obj`` of every rank, by rank (a one-element list in a one-process run)."""
    if current().size == 1:
        return [obj]
    everyone: list = [None] * current().size
    dist.all_gather_object(everyone, obj)
    return everyone


def gather_batches(outputs: list, n_batches: int) -> list:
    """Put back in batch order the per-batch outputs that :func:`shard` spread over the ranks."""
    world = current()
    if world.size == 1:
        return outputs
    everyone: list = [None] * world.size
    dist.all_gather_object(everyone, [tuple(t.cpu() for t in out) for out in outputs])
    return [everyone[k % world.size][k // world.size] for k in range(n_batches)]


@torch.no_grad()
def average_bn_statistics(model: nn.Module, local_batches: int, local_weight: "float | None" = None) -> None:
    """Make every rank's BatchNorm running statistics the weighted average over all ranks (each
    rank averaged its own ``local_batches`` batches): weights = ``local_weight`` (the batch count,
    or the sample count for a per-sample average), default the batch count."""
    if current().size == 1:
        return
    weight = local_batches if local_weight is None else local_weight
    total_batches, total = all_sum([local_batches, weight])
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            for buf in (m.running_mean, m.running_var):
                buf.mul_(weight / total)
                dist.all_reduce(buf)
            m.num_batches_tracked.fill_(int(total_batches))


def wrap(models: list, device: torch.device, world: World) -> list:
    """DistributedDataParallel around each model that has something to train (the others, such
    as SWA's frozen average, are updated identically on every rank and stay as they are)."""
    if world.size == 1:
        return models
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return [DDP(m, device_ids=ids) if any(p.requires_grad for p in m.parameters()) else m for m in models]


# --- a rank that stops answering (--dist-timeout) -------------------------------------------------

HEARTBEAT_S = 0.5  # how often each rank shows, in the rendezvous store, that it still runs
_ALIVE, _WHO = "subspaces/alive/{}", "subspaces/who/{}"
# This process's heartbeat: the rendezvous store's address and the collectives' timeout. Set once,
# with the process group (which is process-wide state of torch.distributed too).
_heartbeat: dict = {}
# What a collective's RuntimeError says when a peer stopped or went away (Gloo raises plain
# RuntimeErrors; newer PyTorch raises DistError subclasses).
_LOST = ("timed out", "timeout", "connection closed", "connection reset", "broken pipe", "connection refused")


class PeerLost(Exception):
    """A collective failed because another rank stopped answering; the message names it."""


def _start_heartbeat(store, world: World, timeout_s: float) -> None:
    """Start this rank's heartbeat: a daemon thread that adds 1 to ``subspaces/alive/<rank>`` in the
    rendezvous store every :data:`HEARTBEAT_S`, through its own store client. A stopped (SIGSTOP),
    dead or frozen process stops counting; a live one counts on while it waits in a collective.

    The thread is stopped and joined at interpreter exit (atexit runs before finalisation): a
    daemon thread still inside a store call when Python finalises is unwound through C++ frames
    and aborts the process ("terminate called without an active exception", 2 exits in 20 of a
    two-rank Gloo run without this)."""
    _heartbeat.update(address=(store.host, store.port), timeout_s=timeout_s)
    stop = threading.Event()
    thread = threading.Thread(target=_beat, args=(store.host, store.port, world.rank, stop), name="subspaces-heartbeat", daemon=True)
    thread.start()
    atexit.register(_stop_heartbeat, stop, thread)


def _stop_heartbeat(stop: threading.Event, thread: threading.Thread) -> None:
    stop.set()
    thread.join(timeout=10 * HEARTBEAT_S)  # one store call at most; a store that hangs is not waited for


def _beat(host: str, port: int, rank: int, stop: threading.Event) -> None:
    try:
        client = dist.TCPStore(host, port, is_master=False, timeout=datetime.timedelta(seconds=JOIN_TIMEOUT_S))
        client.set(_WHO.format(rank), f"pid {os.getpid()} on {socket.gethostname()}")
        while not stop.is_set():
            client.add(_ALIVE.format(rank), 1)
            stop.wait(HEARTBEAT_S)
    except Exception:  # the store went away: the run ended (or its host did), nothing left to show
        return


def _silent_ranks(world: World, wait_s: float) -> Optional[dict]:
    """``{rank: "pid P on HOST"}`` of the other ranks whose heartbeat did not move for ``wait_s``;
    None when the rendezvous store itself does not answer."""
    host, port = _heartbeat["address"]
    others = [r for r in range(world.size) if r != world.rank]
    try:
        client = dist.TCPStore(host, port, is_master=False, timeout=datetime.timedelta(seconds=wait_s + 5))
        before = {r: client.add(_ALIVE.format(r), 0) for r in others}  # add 0: read without waiting for the key
        time.sleep(wait_s)
        silent = [r for r in others if client.add(_ALIVE.format(r), 0) == before[r]]
        return {r: client.get(_WHO.format(r)).decode() if client.check([_WHO.format(r)]) else "not started" for r in silent}
    except Exception:  # DistStoreError, DistNetworkError, RuntimeError: the store's host is gone too
        return None


def lost_peer(error: BaseException, wait_s: float = 5 * HEARTBEAT_S) -> Optional[PeerLost]:
    """The one-line :class:`PeerLost` that explains ``error``, a collective's timeout or lost
    connection, by naming the rank(s) whose heartbeat stopped; None for any other error.

    Gloo (CPUs) raises such errors in the waiting rank. NCCL's watchdog ends the process itself
    after the timeout (its log names the collective), so on GPUs this line may not come."""
    world = current()
    text = str(error).lower()
    if world.size == 1 or not _heartbeat or not isinstance(error, RuntimeError) or not any(m in text for m in _LOST):
        return None
    t = _heartbeat["timeout_s"]
    timed_out = "time" in text
    fix = f"if it is only slow (a long checkpoint write, compilation), raise --dist-timeout (now {t:g} s)"
    silent = _silent_ranks(world, wait_s)
    if silent is None:
        host, port = _heartbeat["address"]
        return PeerLost(f"rank {world.rank} of {world.size}: the rendezvous store at {host}:{port} does not answer "
                        f"either: its host (rank 0, or torchrun) stopped answering; {fix}")
    if not silent:
        return PeerLost(f"rank {world.rank} of {world.size}: a collective {'timed out' if timed_out else 'lost a connection'} "
                        f"while every rank still runs: one is stuck or slower elsewhere (data loading, a file system); {fix}")
    them = "it" if len(silent) == 1 else "them"
    what = f"a collective waited --dist-timeout {t:g} s for {them}" if timed_out else f"the connection to {them} closed"
    names = ", ".join(f"{r} ({who})" for r, who in silent.items())
    return PeerLost(f"rank{'s' if len(silent) > 1 else ''} {names} of {world.size} stopped answering: {what}; {fix}")


@contextlib.contextmanager
def peer_failures() -> Iterator[None]:
    """Turn a collective's failure inside the block into the one-line :class:`PeerLost` naming the
    rank that stopped answering (other errors pass unchanged)."""
    try:
        yield
    except RuntimeError as e:
        lost = lost_peer(e)
        if lost is None:
            raise
        raise lost from None


# --- --multigpu: one process per GPU, spawned as torchrun would start them ------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _child(index: int, entry, argv: list, size: int, port: int, parent: int) -> None:
    stop_with_parent(parent)  # a killed launcher's ranks checkpoint, then stop (replaces spawn's SIGINT, which saves nothing)
    os.environ.update(RANK=str(index), LOCAL_RANK=str(index), WORLD_SIZE=str(size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    code = entry(argv)
    if code:
        raise SystemExit(code)


def spawn(entry, argv: list, gpus: Sequence[int]) -> int:
    """Run ``entry(argv)`` in one spawned process per GPU of ``gpus`` (ranks 0..n-1 on one node, the
    environment torchrun sets); returns the first non-zero exit status, or 0."""
    import torch.multiprocessing as mp

    try:
        mp.start_processes(_child, args=(entry, argv, len(gpus), _free_port(), os.getpid()), nprocs=len(gpus), start_method="spawn")
    except mp.ProcessExitedException as e:
        return e.exit_code or 1
    return 0


# --- synchronised BatchNorm (--sync-bn) ---------------------------------------------------------


class _SyncForward:
    """Mixin: batch statistics over all ranks in training; the class's own forward otherwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        weight, bias = self.get_weight() if hasattr(self, "get_weight") else (self.weight, self.bias)
        dims = [d for d in range(x.dim()) if d != 1]
        local = torch.cat([x.sum(dims), x.pow(2).sum(dims), x.new_full((1,), x.numel() / x.shape[1])])
        from torch.distributed.nn.functional import all_reduce  # autograd flows through the reduction

        total = all_reduce(local)
        c = x.shape[1]
        count = total[-1]
        mean = total[:c] / count
        var = total[c:2 * c] / count - mean.pow(2)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (count / (count - 1).clamp(min=1))
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(unbiased.detach(), momentum)
        shape = [1, c] + [1] * (x.dim() - 2)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return out * weight.view(shape) + bias.view(shape) if weight is not None else out


@functools.lru_cache(maxsize=None)
def _sync_type(cls: type) -> type:
    return type(f"Sync{cls.__name__}", (_SyncForward, cls), {"__module__": cls.__module__})


def convert_sync_bn(model: nn.Module) -> nn.Module:
    """``--sync-bn``: every BatchNorm of ``model`` (plain or subspace) computes its batch statistics
    over the global batch. Same parameters, buffers and state-dict names; in place."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, _SyncForward):
            m.__class__ = _sync_type(type(m))
    return model
