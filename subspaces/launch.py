"""Where a sweep's runs execute: here one at a time, here ``--parallel K`` at once, or as Slurm jobs.

Whatever the launcher, a run executes under its lock, ``<log_dir>/.locks/<name>.lock`` (a
``filelock.FileLock``, taken without waiting): two invocations of one sweep (two terminals, an
array job submitted twice) never train the same run twice -- the second reports "running
elsewhere, skipped" -- and under the lock the run is planned again (:func:`sweep.plan`), so a run
finished by the other invocation meanwhile is skipped and an interrupted one resumes.

- ``--parallel K``: each run in its own spawned process with ``cores // K`` threads, its output in
  ``<results root>/logs/<family>/<name>.log``; the parent prints one line per finished run, and a
  failed run is reported (the sweep then exits 1) without stopping the others.
- ``--launcher slurm``: each unfinished run is one job of a submitit job array, logs in
  ``<results root>/slurm/<job id>_<task>_log.{out,err}``. A job preempted or out of time is requeued by submitit's
  checkpointing protocol (:meth:`RunJob.checkpoint`); the requeued job plans the run again and so
  resumes from its newest checkpoint. An evaluation submitted while the training jobs it needs
  are queued or running depends on them (``afterok``, from ``<results root>/slurm/jobs.json``)
  and, once started, waits for their final checkpoints while they are still in flight.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import multiprocessing.connection
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

from filelock import FileLock, Timeout

from subspaces.args import Settings, replace
from subspaces.data.base import usable_cores
from subspaces.sweep import (PACKAGE_ROOT, Config, Plan, Run, run_label, check_blocked, heading, plan,
                             run_planned)
from subspaces.utils.errors import UserError
from subspaces.utils.io import atomic_write_text
from subspaces.utils.processes import stop_with_parent

LOCKS = ".locks"
POLL_S = 5.0  # how often an evaluation job looks for the final checkpoints it waits for


class RunsFailed(Exception):
    """Some runs of a ``--parallel`` sweep failed (the others ran to the end)."""


# --- the per-run lock ----------------------------------------------------------------------------


def lock_path(s: Settings) -> Path:
    """``<log_dir>/.locks/<name>.lock``: one lock per run (an evaluation's log_dir is its own)."""
    return Path(s.log_dir).expanduser() / LOCKS / f"{s.name}.lock"


@contextlib.contextmanager
def run_lock(s: Settings) -> Iterator[bool]:
    """Hold the lock of run ``s`` inside the block; yields False at once when another process holds it.

    The operating system releases it when the process dies, so a killed or requeued run leaves no
    stale lock. In a DDP job only rank 0 takes it: the other ranks follow rank 0's decision
    (:func:`execute_one`).
    """
    if int(os.environ.get("RANK", "0")) != 0:
        yield True
        return
    path = lock_path(s)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def lock_held(s: Settings) -> bool:
    """Whether another process holds the lock of run ``s`` now."""
    if not lock_path(s).exists():
        return False
    with run_lock(s) as mine:
        return not mine


def execute_one(run: Run, cfg: Config, wait_s: float = 0.0) -> tuple:
    """Execute one run under its lock: ``(status, summary or None, detail)``, status ``done``,
    ``skipped`` (finished) or ``elsewhere`` (lock held). An evaluation whose training runs are
    still in flight (locked, or a Slurm job without a result yet) waits up to ``wait_s`` seconds.

    In a DDP job (a Slurm job of several tasks, torchrun) rank 0 takes the lock and plans; every
    rank then acts on rank 0's decision, sent over the run's process group, so no rank starts a
    run that rank 0 skips (it would wait for rank 0 until the join timeout) or plans it otherwise."""
    with run_lock(run.settings) as mine:
        rank = int(os.environ.get("RANK", "0"))
        decision = _decide(run, cfg, wait_s, mine) if rank == 0 else None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            decision = _rank0_decision(run, decision)
        status, detail, p = decision
        if status == "error":
            raise UserError(detail)
        if status != "run":
            return status, None, detail
        summary, took = run_planned(p, cfg)
        return "done", summary, f"done in {took:.1f}s, acc {summary.curr_acc1:.4f}"


def _decide(run: Run, cfg: Config, wait_s: float, mine: bool) -> tuple:
    """``(status, detail, plan)``: ``elsewhere``, ``skipped``, ``run`` or (the bad input's line) ``error``."""
    if not mine:
        return "elsewhere", "running elsewhere, skipped", None
    try:
        p = _plan_waiting(run, cfg, wait_s)
    except UserError as e:
        return "error", str(e), None
    if p.action == "skip":
        return "skipped", f"{p.detail}, skipped", None
    return "run", "", p


def _rank0_decision(run: Run, decision: Optional[tuple]) -> tuple:
    """Rank 0's ``decision``, on every rank: the run's process group is joined (``main.setup_process``,
    which the run then finds done) and the decision gathered from it."""
    from subspaces import main
    from subspaces.utils import distributed

    world = distributed.env_world()
    main.setup_process(run.settings, main.resolve_device(run.settings, world), world)  # the run joins the same group
    return distributed.all_objects(decision)[0]


def _plan_waiting(run: Run, cfg: Config, wait_s: float) -> Plan:
    p = plan(run, cfg)
    registry = JobRegistry(cfg)
    deadline = time.time() + wait_s
    while p.missing and time.time() < deadline and any(
            lock_held(t) or registry.in_flight(t) for t in run.needs if t.name in p.missing):
        time.sleep(POLL_S)
        p = plan(run, cfg)
    check_blocked([run], [p])
    return p


# --- --parallel K --------------------------------------------------------------------------------


def log_file(cfg: Config, s: Settings) -> Path:
    """``<results root>/logs/<family>/<name>.log``: the output of one run of a parallel sweep."""
    log_dir = Path(s.log_dir).expanduser()
    family = log_dir.relative_to(cfg.log_root) if log_dir.is_relative_to(cfg.log_root) else Path(log_dir.name)
    return cfg.log_root / "logs" / family / f"{s.name}.log"


def _child(run: Run, cfg: Config, threads: int, log: str, conn, parent: int) -> None:
    """A spawned process's run: its output appended to ``log``, its result sent through ``conn``;
    it stops when the sweep's process ``parent`` dies."""
    import torch

    from subspaces.trainers.base import Stopped

    stop_with_parent(parent)
    torch.set_num_threads(threads)
    with open(log, "a", encoding="utf-8") as f:  # C-level output (PyTorch warnings) too
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    sys.stdout.reconfigure(line_buffering=True)
    print(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {run.settings.log_dir}/{run.settings.name} "
          f"(pid {os.getpid()}, {threads} thread(s))", flush=True)
    try:
        conn.send(("ok", *execute_one(run, cfg.with_(quiet=False))))
    except UserError as e:
        print(f"error: {e}", flush=True)
        conn.send(("error", str(e)))
        sys.exit(2)
    except Stopped as e:  # SIGTERM: the sweep was interrupted or killed
        print(f"{e}; the sweep resumes it from {e.path}" if e.path else str(e), flush=True)
        sys.exit(143)


def run_parallel(runs: Sequence[Run], cfg: Config) -> list:
    """Run up to ``cfg.launch.parallel`` runs at once, each in a spawned process; returns the
    summaries of the runs made, in sweep order. Raises :class:`RunsFailed` after the others ended
    if any run failed."""
    k_max = cfg.launch.parallel
    plans = [plan(r, cfg) for r in runs]
    check_blocked(runs, plans)
    threads = max(1, usable_cores() // k_max)
    threads = min(threads, cfg.threads) if cfg.threads else threads
    todo = []
    for k, (r, p) in enumerate(zip(runs, plans), 1):
        head = heading(k, runs, r, p.settings, cfg)
        if p.action == "skip":
            print(f"{head}: {p.detail}, skipped", flush=True)
        else:
            todo.append((k, r, head))
    if todo:
        print(f"{len(todo)} run(s), up to {k_max} at a time with {threads} thread(s) each; "
              f"their output in {cfg.log_root / 'logs'}/", flush=True)
    summaries, failed = _pool(todo, cfg, threads)
    if failed:
        raise RunsFailed(f"{len(failed)} of {len(todo)} run(s) failed ({', '.join(failed)}); "
                         f"their logs are in {cfg.log_root / 'logs'}/")
    return [summaries[k] for k in sorted(summaries)]


def _pool(todo: list, cfg: Config, threads: int) -> tuple:
    ctx = mp.get_context("spawn")  # a fresh interpreter: no forked threads or CUDA state
    todo = list(todo)
    running: dict = {}  # receiving end of a child's pipe -> (k, head, process, log)
    summaries: dict = {}
    failed: list = []
    try:
        while todo or running:
            while todo and len(running) < cfg.launch.parallel:
                k, r, head = todo.pop(0)
                log = log_file(cfg, r.settings)
                log.parent.mkdir(parents=True, exist_ok=True)
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(r, cfg, threads, str(log), send, os.getpid()), name=f"run {k}")
                proc.start()
                send.close()
                running[recv] = (k, head, proc, log)
            for recv in mp.connection.wait(list(running)):
                k, head, proc, log = running.pop(recv)
                msg = _receive(recv)
                proc.join()
                if proc.exitcode == 0 and msg and msg[0] == "ok":
                    _, _status, summary, detail = msg
                    print(f"{head}: {detail}", flush=True)
                    if summary is not None:
                        summaries[k] = summary
                else:
                    why = f": {msg[1]}" if msg and msg[0] == "error" else ""
                    print(f"{head}: failed (exit status {proc.exitcode}){why}; see {log}", flush=True)
                    failed.append(f"run {k}")
    finally:  # interrupted: stop the children still running
        for _, _, proc, _ in running.values():
            proc.terminate()
        for _, _, proc, _ in running.values():
            proc.join()
    return summaries, failed


def _receive(conn) -> Optional[tuple]:
    try:
        return conn.recv()
    except EOFError:  # the child ended without a result (it crashed or was killed)
        return None
    finally:
        conn.close()


# --- --launcher slurm ----------------------------------------------------------------------------


class JobRegistry:
    """``<results root>/slurm/jobs.json``: the newest job submitted for each run (``family/name``),
    so that an evaluation submitted later can wait for the training jobs it needs."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.folder = cfg.log_root / "slurm"
        self.path = self.folder / "jobs.json"

    def read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def record(self, ids: dict) -> None:
        """Add ``{family/name: job id}`` (read-modify-write under a lock: sweeps submit concurrently)."""
        with FileLock(str(self.path) + ".lock"):
            atomic_write_text(self.path, json.dumps({**self.read(), **ids}, indent=1, sort_keys=True))

    def in_flight(self, s: Settings) -> Optional[str]:
        """The job id of run ``s`` when its newest job has not ended yet (submitit writes its result
        file when the job returns or fails; a requeued job keeps its id)."""
        from submitit.core.utils import JobPaths

        job_id = self.read().get(run_label(s, self.cfg))
        if job_id and not JobPaths(self.folder, job_id).result_pickle.exists():
            return job_id
        return None


def ddp_environment() -> Optional[dict]:
    """In a job of several tasks (``--gpus-per-node`` > 1 or ``--nodes`` > 1): export RANK,
    WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT from submitit's JobEnvironment, for
    ``torch.distributed``'s env:// initialisation in ``main``. None in a job of one task."""
    import submitit

    try:
        tasks = submitit.JobEnvironment().num_tasks
    except RuntimeError:  # not in a submitit job (a test calling the job itself)
        return None
    if tasks <= 1:
        return None
    # Every task sees all the node's GPUs; main picks cuda:LOCAL_RANK.
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}


class RunJob:
    """One run of a sweep as a Slurm job, in submitit's checkpointing protocol: each start plans the
    run again (skip, resume from its newest checkpoint, or start), so a requeued job continues."""

    def __init__(self, run: Run, cfg: Config) -> None:
        self.run, self.cfg = run, cfg

    def __call__(self) -> dict:
        import torch

        ddp_environment()
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        status, summary, detail = execute_one(self.run, self.cfg.with_(quiet=False),
                                              wait_s=60.0 * self.cfg.launch.timeout_min)
        print(f"{run_label(self.run.settings, self.cfg)}: {detail}", flush=True)
        return {"status": status, "name": summary.name if summary else self.run.settings.name,
                "curr_acc1": summary.curr_acc1 if summary else None}

    def checkpoint(self, *args, **kwargs):
        """Called by submitit when the job is preempted or reaches its time limit: requeue this same
        call (which resumes from the newest ``epoch_*_iter_*.pt``; ``--save-epochs`` makes them)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def on_this_node(run: Run) -> Run:
    """``run`` with the CPU as its device, to plan it on a login node without GPUs (the device is
    not part of a run's identity, so the plan is the job's)."""
    cpu = lambda s: replace(s, device="cpu", multigpu=None)  # noqa: E731
    return Run(cpu(run.settings), tuple(cpu(t) for t in run.needs), run.trained_by)


def submit(runs: Sequence[Run], cfg: Config) -> list:
    """Submit each run that is not finished or running elsewhere as one job of a job array;
    returns submitit's jobs (none when every run is done). With ``--dry-run``, says what it would
    submit and shows the sbatch script of the array instead (nothing is written or submitted)."""
    todo, after = _submission(runs, cfg)
    if cfg.dry_run:
        if todo:
            print(f"{len(todo)} job(s) would be submitted as one job array (--dry-run: nothing submitted); its sbatch script:")
            print(sbatch_script(cfg, after, len(todo)), flush=True)
        return []
    if not todo:
        return []
    registry = JobRegistry(cfg)
    executor = make_executor(cfg, after)
    with executor.batch():
        jobs = [executor.submit(RunJob(r, cfg)) for _, r in todo]
    registry.record({run_label(r.settings, cfg): job.job_id for (_, r), job in zip(todo, jobs)})
    for (head, _), job in zip(todo, jobs):
        print(f"{head}: submitted as job {job.job_id}", flush=True)
    wait = f", after job(s) {', '.join(sorted(after))}" if after else ""
    print(f"{len(jobs)} job(s) submitted{wait}; their logs in {registry.folder}/<job id>_<task>_log.{{out,err}}", flush=True)
    return jobs


def _submission(runs: Sequence[Run], cfg: Config) -> tuple:
    """``([(heading, run)], job ids)``: the runs to submit, and the training jobs they wait for.
    Prints the runs left out (finished, running elsewhere; with ``--dry-run`` also those whose
    training is neither finished nor submitted, which a submission refuses)."""
    local = [on_this_node(r) for r in runs]
    plans = [plan(r, cfg) for r in local]
    registry = JobRegistry(cfg)
    todo, after = [], set()
    for k, (r, lr, p) in enumerate(zip(runs, local, plans), 1):
        head = heading(k, runs, r, p.settings, cfg)
        if p.action == "skip":
            print(f"{head}: {p.detail}, skipped", flush=True)
            continue
        if lock_held(p.settings):
            print(f"{head}: running elsewhere, not submitted", flush=True)
            continue
        try:
            after |= _training_jobs(lr, p, registry)
        except UserError:
            if not cfg.dry_run:
                raise
            print(f"{head}: waits for `python {r.trained_by} --launcher slurm`, not submitted", flush=True)
            continue
        if cfg.dry_run:
            print(f"{head}: {p.detail}, would be submitted", flush=True)
        todo.append((head, r))
    return todo, after


def _training_jobs(run: Run, p: Plan, registry: JobRegistry) -> set:
    """Job ids of the unfinished training runs an evaluation needs; refuses when one of them is
    neither submitted nor running."""
    ids = set()
    for t in run.needs:
        if t.name not in p.missing or lock_held(t):
            continue
        job_id = registry.in_flight(t)
        if job_id is None:
            raise UserError(f"no finished training run {t.name} in {t.log_dir}, and no job of it queued or running; "
                            f"run `python {run.trained_by} --launcher slurm` first (the evaluation jobs then wait for it)")
        ids.add(job_id)
    return ids


def sbatch_parameters(cfg: Config, after: set) -> dict:
    """The job array's sbatch options, in the names of submitit's ``SlurmExecutor`` (``slurm_<name>``
    in :func:`make_executor`): the ``--launcher slurm`` flags, the dependency on the training jobs
    ``after``, and the setup lines each job runs first (``--slurm-setup``, then this package's PYTHONPATH)."""
    la = cfg.launch
    extra = dict(la.extra)
    if after:  # an evaluation's training jobs; if one fails, Slurm cancels the evaluation
        extra.setdefault("dependency", "afterok:" + ":".join(sorted(after)))
        extra.setdefault("kill-on-invalid-dep", "yes")
    # The job imports this same ``subspaces`` package wherever it is submitted from.
    setup = [*la.setup, f"export PYTHONPATH={shlex.quote(str(PACKAGE_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"]
    mem = None if la.mem_gb is None else (f"{int(la.mem_gb)}GB" if la.mem_gb == int(la.mem_gb) else f"{round(la.mem_gb * 1024)}MB")
    params = dict(job_name=f"subspaces-{cfg.key}", partition=la.partition, time=la.timeout_min, nodes=la.nodes,
                  ntasks_per_node=max(1, la.gpus_per_node), gpus_per_node=la.gpus_per_node or None,
                  cpus_per_task=la.cpus_per_task, mem=mem, array_parallelism=la.array_parallelism,
                  additional_parameters=extra or None, setup=setup)
    return {k: v for k, v in params.items() if v is not None}


def sbatch_script(cfg: Config, after: set, jobs: int) -> str:
    """The sbatch script submitit writes for an array of ``jobs`` jobs (``--dry-run`` shows it)."""
    from submitit.slurm.slurm import _make_sbatch_string  # submitit's own renderer: the script it submits

    command = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(str(cfg.log_root / 'slurm'))}"
    return _make_sbatch_string(command=command, folder=cfg.log_root / "slurm", map_count=jobs,
                               **sbatch_parameters(cfg, after)).strip()


def make_executor(cfg: Config, after: set):
    """A submitit executor with the ``--launcher slurm`` flags; jobs start ``afterok`` the ids ``after``."""
    import submitit

    la = cfg.launch
    if la.cluster == "slurm" and submitit.SlurmExecutor.affinity() < 0:
        raise UserError("--launcher slurm: no Slurm on this machine (sbatch not found); run on the cluster's login node")
    params = sbatch_parameters(cfg, after)
    # Slurm reads the slurm_ names; the generic ones serve submitit's local executor (tests).
    generic = dict(name=params["job_name"], timeout_min=la.timeout_min, nodes=la.nodes, tasks_per_node=params["ntasks_per_node"],
                   gpus_per_node=la.gpus_per_node or None, local_setup=params["setup"])
    executor = submitit.AutoExecutor(folder=cfg.log_root / "slurm", cluster=la.cluster)
    try:
        executor.update_parameters(**generic, **{f"slurm_{k}": v for k, v in params.items()})
    except (ValueError, NameError, AssertionError) as e:
        with contextlib.suppress(OSError):  # submitit made it; nothing was submitted
            (cfg.log_root / "slurm").rmdir()
        raise UserError(f"--launcher slurm: {str(e).splitlines()[0]}; check the --slurm-* flags") from None
    return executor
