"""What every experiment config shares: the command line, run names, and a resumable runner.

A config script (e.g. ``cifar10/one_dimensional_subspaces/train_lines.py``) defines
``runs(cfg)``, which yields one :class:`Run` per seed (and n, and label-noise level), each with a
fresh :class:`subspaces.args.Settings` built from its data set's base settings (``<dataset>/common.py``).
:func:`run_cli` parses the overrides (``--data --log-dir --seeds --epochs ...``) and hands the runs
to :func:`execute`, which

- skips a run that already finished (its results.csv row and final checkpoint exist),
- continues an interrupted training run from its newest checkpoint (``--save-epochs`` every few
  epochs make them), and
- for an evaluation, finds the final checkpoints of the training runs it needs, or stops with
  one line naming the training config to run first.

A run is matched to its earlier attempts (``<name>+try=<i>/``) by name and by the settings in
their ``settings.txt`` (or, where that cannot be read, in their checkpoints; a folder that cannot
be read at all stops the sweep), so a config edited to change, say, the epochs starts a new run
instead of skipping or resuming the old one. An interrupted run continues in its own folder.
``--force`` reruns everything.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from subspaces.args import DATA_HELP, Settings, floats, ints, replace  # the list parsers of main.py's flags
from subspaces.utils.errors import UserError
from subspaces.utils.results import read_results
from subspaces.utils.run_folder import CHECKPOINT_RE, checkpoint_files, refresh_last

# The folder that holds the ``subspaces`` package: a Slurm job puts it on its PYTHONPATH, so a job
# imports this same code whether the package is installed or run from a clone.
PACKAGE_ROOT = Path(__file__).resolve().parents[1]

# One folder per family under a data set's results root, as the original's log dirs.
MEMBERS = "train-ensemble-members"
ENSEMBLES = "eval-ensemble"
ONE_DIM = "one-dimensional-subspaces"
EVAL_ONE_DIM = "eval-one-dimensional-subspaces"
SIMPLEXES = "simplexes"
SWA = "swa"
EVAL_SWAG = "eval-swag"
CONNECT = "mode-connectivity"
EVAL_CONNECT = "eval-mode-connectivity"

# Figure 4's grid: alpha0 in 0, 0.05, ..., 1 (the original's list, without its repeated 0.5).
ALPHAS = tuple(round(i * 0.05, 2) for i in range(21))
# Settings that say where or how a run executes, not what it computes: two attempts that differ
# only in these are the same run (``resume`` is compared for evaluations, see :func:`plan`).
NOT_IDENTITY = frozenset({
    "name", "data", "log_dir", "resume", "pretrained", "save", "save_data", "save_epochs",
    "save_iters", "test_freq", "log_interval", "device", "multigpu", "workers", "data_on_device",
    "channels_last", "amp", "compile", "compile_mode", "checkpoint_every_minutes", "dist_timeout",
})


# --- names --------------------------------------------------------------------------------------


def member_name(s: Settings) -> str:
    """A standard network (an ensemble member): ``id=base+ln=0.0+seed=0``."""
    return f"id=base+ln={s.label_noise}+seed={s.seed}"


def subspace_name(run_id: str, s: Settings) -> str:
    """A line or curve: ``id=lines+ln=0.0+beta=1.0+num_samples=1+seed=0`` (the original's names)."""
    return f"id={run_id}+ln={s.label_noise}+beta={s.beta}+num_samples={s.num_samples}+seed={s.seed}"


def simplex_name(run_id: str, s: Settings) -> str:
    """A simplex: ``id=simplex+n=3+ln=0.0+beta=1.0+num_samples=1+seed=0``."""
    return f"id={run_id}+n={s.n}+ln={s.label_noise}+beta={s.beta}+num_samples={s.num_samples}+seed={s.seed}"


def script(file: str) -> str:
    """A config script's path as a user would type it: relative to the current folder when under it."""
    p = Path(file).resolve()
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def every(k: int, epochs: int) -> tuple:
    """Epochs after which to checkpoint: every ``k``-th, before the last (always saved)."""
    return tuple(range(k, epochs, k)) if k > 0 else ()


# --- a data set's defaults and one invocation's choices -----------------------------------------


@dataclass(frozen=True)
class DataSetup:
    """What ``<dataset>/common.py`` fixes: the paper's shared settings and the sweep's defaults."""

    key: str  # folder name: experiment_configs/<key>/, <results_root>/<key>/
    base: Settings
    seeds: tuple = (0, 1)
    simplex_n: tuple = (2, 3, 4, 5, 6)
    label_noise: tuple = (0.0,)
    checkpoint_every: int = 10  # epochs between the checkpoints a rerun resumes from
    threads: Optional[int] = None  # torch.set_num_threads; None: PyTorch's default
    # Where the sweep writes by default (``--log-dir`` overrides it); a relative path is taken
    # from the current folder. The repository's configs pass ``<clone>/learning-subspaces-results``.
    results_root: Path = Path("learning-subspaces-results")

    @property
    def log_root(self) -> Path:
        return Path(self.results_root) / self.key


@dataclass(frozen=True)
class Launch:
    """Where and how the runs of one invocation execute (``--launcher``, ``--parallel``, ``--slurm-*``);
    what they compute is :class:`Config`'s. See :mod:`subspaces.launch`."""

    launcher: str = "local"  # local: this machine; slurm: one job per run, a submitit job array
    parallel: int = 1  # local: runs at once, each in its own process
    partition: Optional[str] = None
    gpus_per_node: int = 0
    nodes: int = 1
    cpus_per_task: Optional[int] = None
    mem_gb: Optional[float] = None
    timeout_min: int = 24 * 60
    array_parallelism: Optional[int] = None
    extra: tuple = ()  # (KEY, VALUE) pairs for sbatch (submitit's slurm_additional_parameters)
    setup: tuple = ()  # shell lines each job runs first (module load, conda activate): submitit's slurm_setup
    cluster: str = "slurm"  # submitit's executor: slurm; local or debug for tests


@dataclass(frozen=True)
class Config:
    """A data set's setup with this invocation's command-line overrides applied."""

    key: str
    base: Settings
    seeds: tuple
    simplex_n: tuple
    label_noise: tuple
    alphas: tuple
    log_root: Path
    checkpoint_every: int
    threads: Optional[int] = None
    force: bool = False
    dry_run: bool = False
    quiet: bool = False
    keep_checkpoints: bool = False
    launch: Launch = Launch()
    smoke: bool = False

    def log_dir(self, family: str) -> str:
        """The folder (and results.csv) of one family of runs."""
        return str(self.log_root / family)

    def train(self, family: str, **changes) -> Settings:
        """Base settings of a training run of ``family``: saved, checkpointed every few epochs."""
        s = replace(self.base, log_dir=self.log_dir(family), save=True, **changes)
        return replace(s, save_epochs=every(self.checkpoint_every, s.epochs))

    def evaluation(self, trained: Settings, family: str, **changes) -> Settings:
        """Settings that evaluate the checkpoint(s) of ``trained``: weights only, results row only."""
        return replace(trained, log_dir=self.log_dir(family), epochs=0, pretrained=True, save=False,
                       save_data=True, save_epochs=None, **changes)

    def with_(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Run:
    """One call of ``main.main``; ``needs`` are training runs whose final checkpoints it loads
    (``--resume``, in order; or ``--init-endpoints`` when ``needs_as`` says so, for a curve that
    connects trained networks), made by the config script ``trained_by`` (a path under the repo)."""

    settings: Settings
    needs: tuple = ()
    trained_by: str = ""
    needs_as: str = "resume"


def aligned_line(run: Run) -> Run:
    """A run of ``eval_linestats_swa.py`` (the straight line between two trained members, run id
    ``linestats-swa``) with the second member's units permuted to match the first's before
    (weight matching): trainer ``linestats_aligned``, run id ``linestats-aligned``; same pairs and grid."""
    s = run.settings
    aligned = replace(s, trainer="linestats_aligned", align="weight", name=s.name.replace("id=linestats-swa+", "id=linestats-aligned+", 1))
    return dataclasses.replace(run, settings=aligned)


# --- the command line ---------------------------------------------------------------------------


def build_parser(description: str = "") -> argparse.ArgumentParser:
    """The flags every config script takes (all optional: the script's values are the defaults)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--data", metavar="DIR", help=DATA_HELP + " (default: the config's, ~/data)")
    g = p.add_argument_group(
        "what every run of the sweep trains on",
        "These replace the config's base settings (<dataset>/common.py) for every run. Runs with another data set or "
        "model are other runs: they keep their names, but their settings differ, so they get their own run folders "
        "(<name>+try=<i>) and results rows, and never skip or resume the config's own runs. The figures of "
        "analyze_results keep one row per name: give each model its own --log-dir to draw its own figures.")
    g.add_argument("--set", metavar="NAME", help="data set, e.g. CIFAR100 or ImageFolder (default: the config's)")
    g.add_argument("--model", metavar="CLASS", help="model class, e.g. CIFARResNet or ResNet18 (default: the config's); "
                   "without --model-name the class's own default variant")
    g.add_argument("--model-name", metavar="VARIANT", help="model variant, e.g. cifar_resnet_56 (default: the config's)")
    add("--log-dir", help="results root of this data set (default: learning-subspaces-results/<dataset> in the repo)")
    add("--seeds", type=ints, metavar="S,S,...", help="seeds to run (default: the config's, 0,1)")
    add("--epochs", type=int, metavar="N", help="training epochs (default: the config's; the warm-up is cut to at most N - 1)")
    add("--n", type=ints, metavar="N,N,...", help="simplex sizes (number of endpoints) to run")
    add("--label-noise", type=floats, metavar="F,F,...", help="label-noise levels to run (default: 0.0)")
    add("--alphas", type=floats, metavar="A,A,...", help="evaluation grid of alpha0 (default: 0,0.05,...,1)")
    add("--device", help="cpu, cuda or cuda:<i> (default: cuda when available)")
    add("--threads", type=int, metavar="N", help="CPU threads for PyTorch")
    add("--dry-run", action="store_true", help="list the runs and whether each is done, resumable or new; run nothing")
    add("--force", action="store_true", help="rerun runs that already finished")
    add("--smoke", action="store_true",
        help="check the config quickly: 1 epoch of Digits with a tiny model, results under <results root>-smoke; "
             f"an explicit --log-dir must hold no results.csv yet (it is then marked by a {SMOKE_MARKER} file) or be a smoke "
             "root already: smoke rows never land among real results, and real runs refuse a smoke root")
    add("--quiet", action="store_true", help="one line per run; the runs' own output goes to <results root>/sweep.log "
        "(with --parallel K > 1 it always goes to <results root>/logs/, with --launcher slurm to <results root>/slurm/)")
    add("--keep-checkpoints", action="store_true",
        help="keep the intermediate checkpoints of finished runs (default: only the first and the last stay)")
    _add_launch_flags(p)
    return p


def _extra(text: str) -> tuple:
    pairs = [a.split("=", 1) for a in text.split(",") if a.strip()]
    if any(len(kv) != 2 or not kv[0].strip() for kv in pairs):
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE,KEY=VALUE,... (e.g. qos=high,constraint=a100)")
    return tuple((k.strip(), v.strip()) for k, v in pairs)


# The flags of --launcher slurm; each is refused with --launcher local.
SLURM_FLAGS = ("partition", "gpus_per_node", "nodes", "cpus_per_task", "mem_gb", "timeout_min",
               "slurm_array_parallelism", "slurm_extra", "slurm_setup", "slurm_setup_file", "slurm_cluster")


def _add_launch_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where the runs execute (README: Running sweeps on many machines)")
    add = g.add_argument
    add("--launcher", choices=("local", "slurm"), default="local",
        help="local: run here (default); slurm: submit each unfinished run as one job of a job array")
    add("--parallel", type=int, metavar="K",
        help="local: run up to K runs at once, each in its own process with cores/K threads; output in <results root>/logs/")
    add("--partition", help="slurm partition")
    add("--gpus-per-node", type=int, metavar="G",
        help="GPUs per job (default 1; 0 with --smoke); G > 1 runs one process per GPU (DDP)")
    add("--nodes", type=int, metavar="N", help="nodes per job (default 1)")
    add("--cpus-per-task", type=int, metavar="C", help="CPU cores per process (default: the cluster's)")
    add("--mem-gb", type=float, metavar="GB", help="memory per node (default: the cluster's)")
    add("--timeout-min", type=int, metavar="MIN",
        help="time limit of a job (default 1440); a job that reaches it is requeued and resumes")
    add("--slurm-array-parallelism", type=int, metavar="K", help="jobs of the array running at once (default: all)")
    add("--slurm-extra", type=_extra, metavar="KEY=VALUE,...",
        help="more sbatch options, e.g. qos=high,constraint=a100 (submitit's slurm_additional_parameters)")
    add("--slurm-setup", action="append", metavar="LINE",
        help="a shell line each job runs before the run, e.g. 'module load cuda/12.1' or 'conda activate subspaces'; "
             "repeat the flag for several, in order (submitit's slurm_setup)")
    add("--slurm-setup-file", metavar="FILE",
        help="the same from a file, one line each (blank lines and # comments skipped), before the --slurm-setup lines")
    add("--slurm-cluster", choices=("slurm", "local", "debug"), help=argparse.SUPPRESS)  # tests: submitit's local executors


def make_launch(o: dict, smoke: bool = False) -> Launch:
    """The :class:`Launch` of parsed flags ``o``; a flag of the other launcher is refused."""
    launcher = o.get("launcher") or "local"
    given = [k for k in SLURM_FLAGS if o.get(k) is not None]
    if launcher == "local" and given:
        flag = "--" + given[0].replace("_", "-")
        raise UserError(f"{flag} is an option of --launcher slurm; pass --launcher slurm or drop {flag}")
    parallel = o.get("parallel")
    if parallel is not None and (launcher != "local" or parallel < 1):
        raise UserError(f"--parallel {parallel}: pass --parallel K with K >= 1, with --launcher local "
                        "(with slurm, --slurm-array-parallelism K limits the jobs running at once)")
    given_or = lambda k, default: default if o.get(k) is None else o[k]  # noqa: E731
    launch = Launch(
        launcher=launcher, parallel=given_or("parallel", 1), partition=o.get("partition"),
        gpus_per_node=given_or("gpus_per_node", 0 if smoke else 1), nodes=given_or("nodes", 1),
        cpus_per_task=o.get("cpus_per_task"), mem_gb=o.get("mem_gb"), timeout_min=given_or("timeout_min", 24 * 60),
        array_parallelism=o.get("slurm_array_parallelism"), extra=o.get("slurm_extra") or (),
        setup=_setup_lines(o.get("slurm_setup_file")) + tuple(o.get("slurm_setup") or ()),
        cluster=o.get("slurm_cluster") or "slurm",
    )
    for flag, v, least in (("--gpus-per-node", launch.gpus_per_node, 0), ("--nodes", launch.nodes, 1),
                           ("--cpus-per-task", launch.cpus_per_task, 1), ("--mem-gb", launch.mem_gb, 0.001),
                           ("--timeout-min", launch.timeout_min, 1), ("--slurm-array-parallelism", launch.array_parallelism, 1)):
        if v is not None and v < least:
            raise UserError(f"{flag} {v} must be at least {least:g}")
    return launch


def _setup_lines(path: Optional[str]) -> tuple:
    """The shell lines of a ``--slurm-setup-file`` (none without one), blank lines and comments left out."""
    if not path:
        return ()
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--slurm-setup-file {path} cannot be read ({getattr(e, 'strerror', None) or e}); "
                        "pass a text file of shell lines") from None
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))


# The file that marks a results root as a --smoke one.
SMOKE_MARKER = "SMOKE.txt"
SMOKE_SETTINGS = dict(set="Digits", model="DigitsConvNet", model_name=None, output_size=None, width_mult=0.25,
                      epochs=1, warmup_length=0, batch_size=128, test_batch_size=256, workers=0, test_freq=None)


def make_config(setup: DataSetup, ns: Optional[argparse.Namespace] = None, **overrides) -> Config:
    """The setup with the parsed flags ``ns`` (or keyword overrides of the same names) applied."""
    import torch

    o = {**(vars(ns) if ns is not None else {}), **overrides}
    get = lambda k: o.get(k)  # noqa: E731
    launch = make_launch(o, smoke=bool(get("smoke")))
    base = setup.base
    root = Path(get("log_dir")).expanduser() if get("log_dir") else setup.log_root
    seeds, simplex_n, alphas = setup.seeds, setup.simplex_n, ALPHAS
    if get("smoke"):
        base = replace(base, **SMOKE_SETTINGS)
        simplex_n, alphas = simplex_n[:1], (0.0, 0.5, 1.0)
        if not get("log_dir"):
            root = root.with_name(root.name + "-smoke")
    device = get("device") or base.device
    if not get("device") and device == "cpu" and torch.cuda.is_available() and not get("smoke"):
        device = "cuda"
    if launch.launcher == "slurm":  # the jobs' nodes decide, not this (login) node
        device = get("device") or ("cuda" if launch.gpus_per_node > 0 else "cpu")
        if device.startswith("cuda") and launch.gpus_per_node == 0:
            raise UserError(f"--device {device} with --gpus-per-node 0: pass --gpus-per-node 1 (or more) or --device cpu")
    base = replace(base, device=device, multigpu=None if device == "cpu" or launch.launcher == "slurm" else base.multigpu)
    if get("data"):
        base = replace(base, data=get("data"))
    base = _with_set_and_model(base, get("set"), get("model"), get("model_name"))
    if get("epochs") is not None:
        base = replace(base, epochs=get("epochs"), warmup_length=min(base.warmup_length, max(0, get("epochs") - 1)))
    return Config(
        key=setup.key,
        base=base,
        seeds=get("seeds") or seeds,
        simplex_n=get("n") or simplex_n,
        label_noise=get("label_noise") or setup.label_noise,
        alphas=get("alphas") or alphas,
        log_root=root.resolve(),
        checkpoint_every=setup.checkpoint_every,
        threads=get("threads") or (1 if get("smoke") else setup.threads),
        force=bool(get("force")),
        dry_run=bool(get("dry_run")),
        quiet=bool(get("quiet")),
        keep_checkpoints=bool(get("keep_checkpoints")),
        launch=launch,
        smoke=bool(get("smoke")),
    )


def _with_set_and_model(base: Settings, set_name: Optional[str], model: Optional[str], model_name: Optional[str]) -> Settings:
    """``base`` with the ``--set``/``--model``/``--model-name`` overrides; unknown names fail here,
    before any run is planned, with the list of valid ones."""
    from subspaces.data import DATASETS
    from subspaces.models import MODELS

    if set_name:
        DATASETS.get(set_name)
        base = replace(base, set=set_name)
    if model:
        MODELS.get(model)
        base = replace(base, model=model, model_name=None)  # another class: the config's variant may not be one of its
    if model_name:
        base = replace(base, model_name=model_name)
    return base


def run_cli(runs: Callable[[Config], Iterable[Run]], setup: DataSetup, doc: str = "",
            argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of a config script: parse the flags, run the sweep; exit status 0, 1 when a run of
    a ``--parallel`` sweep failed, 2 on bad input."""
    from subspaces.launch import RunsFailed

    ns = build_parser((doc or "").strip()).parse_args(argv)
    try:
        cfg = make_config(setup, ns)
        execute(list(runs(cfg)), cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunsFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to continue from the last checkpoint", file=sys.stderr)
        return 130
    return 0


# --- finding earlier attempts -------------------------------------------------------------------

_CKPT = CHECKPOINT_RE


def checkpoints(run_dir: Path) -> list:
    """The :class:`subspaces.utils.run_folder.CheckpointFile` s of a run folder, oldest first (a
    ``_mid`` checkpoint after an epoch's first step comes after that epoch's start)."""
    return checkpoint_files(run_dir)


def _normalise(s: Settings) -> Settings:
    """The settings as main.py records them (``--n`` inferred, SWA's trainer and model count),
    checked but for the checkpoints, which :func:`plan` finds next; once per distinct settings
    and process count (a run is planned again under its lock, and its training runs by every
    evaluation they feed)."""
    return _checked(s, os.environ.get("WORLD_SIZE", "1"))


@functools.lru_cache(maxsize=None)
def _checked(s: Settings, world_size: str) -> Settings:
    from subspaces.main import check_flags

    return check_flags(s)


def same_run(saved: dict, s: Settings, ignore: frozenset = NOT_IDENTITY) -> bool:
    """Whether ``settings.txt`` contents ``saved`` describe the run ``s`` (fields left unset in ``s``,
    such as the data set's default model, match anything; but a ``model_name`` left unset beside a
    given ``model`` means that model's own default, so it matches only an unset one)."""
    for f in dataclasses.fields(Settings):
        mine = getattr(s, f.name)
        unset_means_default = f.name == "model_name" and s.model is not None
        if f.name in ignore or f.name not in saved or (mine is None and not unset_means_default) or (f.name == "n" and mine == -1):
            continue
        theirs = saved[f.name]
        if isinstance(mine, tuple):
            theirs = tuple(theirs) if isinstance(theirs, list) else theirs
        if theirs != mine:
            return False
    return True


def recorded_settings(run_dir: Path) -> tuple:
    """``(settings dict or None, why)``: what a run folder records of its run: its settings.txt, or
    where that is unreadable (or not a dict) the settings its newest readable checkpoint holds."""
    try:
        saved = json.loads((run_dir / "settings.txt").read_text(encoding="utf-8"))
        why = "" if isinstance(saved, dict) else f"settings.txt holds {type(saved).__name__ if saved is not None else 'null'}, not settings"
    except (OSError, ValueError) as e:
        saved, why = None, f"settings.txt cannot be read ({e.strerror if isinstance(e, OSError) else 'not JSON'})"
    if not why:
        return saved, ""
    for ck in reversed(checkpoints(run_dir)):
        try:
            from subspaces.utils.checkpoint import load_checkpoint  # here: figures import this module without PyTorch

            found = load_checkpoint(ck.path).get("settings")
        except UserError:
            continue
        if isinstance(found, dict):
            return found, ""
    return None, why


def attempts(s: Settings, ignore: frozenset = NOT_IDENTITY, strict: bool = True) -> list:
    """``[(i, folder)]`` of the earlier attempts ``<log_dir>/<name>+try=<i>/`` of the run ``s``.

    A folder whose settings cannot be read (settings.txt nor checkpoints) but that holds checkpoints
    or a results row might be this run: ``strict`` raises a one-line UserError naming it, rather
    than train a second copy; otherwise it is left out (and left alone)."""
    root = Path(s.log_dir).expanduser()
    if not root.is_dir():
        return []
    pattern = re.compile(re.escape(s.name) + r"\+try=(\d+)$")
    found = []
    for d in root.iterdir():
        m = pattern.match(d.name)
        if not (m and d.is_dir()):
            continue
        saved, why = recorded_settings(d)
        if saved is None:
            if strict and (checkpoints(d) or has_row(read_results(root / "results.csv"), s.name, int(m.group(1)))):
                raise UserError(f"run folder {d} cannot be read: {why}, and no checkpoint in it records settings, so it may "
                                f"hold this very run; restore its settings.txt (the JSON of main.py --save) or move the folder out of {root}")
            continue
        if same_run(saved, s, ignore):
            found.append((int(m.group(1)), d))
    return sorted(found)


def has_row(rows: list, name: str, i: int) -> bool:
    """Whether results.csv ``rows`` hold a row of attempt ``i`` (a grid evaluation's rows add
    ``+alpha0=...``)."""
    full = f"{name}+try={i}"
    return any(r.get("Name") == full or r.get("Name", "").startswith(full + "+") for r in rows)


def final_checkpoint(s: Settings) -> Optional[Path]:
    """The final checkpoint of the newest finished attempt of the training run ``s``, or None."""
    s = _normalise(s)
    for _, d in reversed(attempts(s)):
        final = [c.path for c in checkpoints(d) if c.epoch == s.epochs and not c.mid]
        if final:
            return final[-1]
    return None


@dataclass
class Plan:
    """What :func:`execute` does with a run: ``skip`` (done), ``resume`` (``settings.resume`` is the
    newest checkpoint) or ``new``."""

    action: str
    settings: Settings
    detail: str = ""
    missing: list = field(default_factory=list)  # names of needed training runs without a final checkpoint


def plan(run: Run, cfg: Config) -> Plan:
    """Decide what to do with ``run``: skip, resume or start it (and resolve its checkpoints); the
    settings of a Plan are checked as :func:`subspaces.main.check_settings` checks them."""
    from subspaces.main import check_checkpoint_flags

    s = _normalise(run.settings)
    if run.needs:
        paths = [final_checkpoint(t) for t in run.needs]
        missing = [t.name for t, p in zip(run.needs, paths) if p is None]
        if missing:
            return Plan("new", s, "needs training first", missing=missing)
        s = replace(s, **{run.needs_as: tuple(str(p) for p in paths)})
    check_checkpoint_flags(s)
    tries = attempts(s, NOT_IDENTITY - {"resume"} if run.needs and run.needs_as == "resume" else NOT_IDENTITY)
    if cfg.force:
        return Plan("new", s, "rerun (--force)" if tries else "new")
    rows = read_results(Path(s.log_dir) / "results.csv")
    with_row = [d for i, d in tries if has_row(rows, s.name, i)]
    # Any checkpoint but the initialisation: epoch boundaries and mid-epoch ones (--save-iters, timed).
    ckpts = [(c, i) for i, d in tries for c in checkpoints(d) if not c.initialisation and c.epoch <= s.epochs]
    # Finished: a results row, and (for training) a final checkpoint -- in the same attempt, or in
    # two when a run stopped between saving its last checkpoint and writing its row and was resumed.
    if with_row and (not s.save or any(c.epoch == s.epochs for c, _ in ckpts)):
        return Plan("skip", s, f"done ({with_row[-1].name})")
    if ckpts and (not run.needs or run.needs_as != "resume") and s.save:
        newest, _ = max(ckpts)
        return Plan("resume", replace(s, resume=(str(newest.path),), pretrained=False), f"resume from epoch {newest.epoch}")
    return Plan("new", s, "new")


def prune(s: Settings) -> None:
    """Delete the intermediate checkpoints of a finished training run (all its attempts); the
    initialisation and the final checkpoint stay, as the original keeps them; ``last.pt`` follows."""
    for _, d in attempts(s, strict=False):
        for c in checkpoints(d):
            if not c.initialisation and c.epoch < s.epochs:
                c.path.unlink(missing_ok=True)
        refresh_last(d)


# --- running ------------------------------------------------------------------------------------


def run_label(s: Settings, cfg: Config) -> str:
    """``<family>/<name>``: the run's folder of results relative to the results root, and its name."""
    try:
        family = str(Path(s.log_dir).relative_to(cfg.log_root))
    except ValueError:
        family = s.log_dir
    return f"{family}/{s.name}"


def execute(runs: Sequence[Run], cfg: Config) -> list:
    """Run ``runs`` (skipping finished ones, resuming interrupted ones) where ``cfg.launch`` says:
    here one after another (the default), here up to ``--parallel K`` at once, or as Slurm jobs
    (then nothing is returned: the jobs run later). Returns the :class:`subspaces.main.RunSummary` of each
    run made. Missing training checkpoints of an evaluation stop the sweep before anything runs,
    with one line naming the config to run first."""
    import torch

    from subspaces import launch

    check_results_root(cfg)
    if cfg.launch.launcher == "slurm":
        launch.submit(runs, cfg)  # with --dry-run: what would be submitted, and the sbatch script
        return []
    if cfg.launch.parallel > 1 and not cfg.dry_run:
        return launch.run_parallel(runs, cfg)
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _execute(runs, cfg)
    finally:
        torch.set_num_threads(threads)


def check_results_root(cfg: Config) -> None:
    """Keep smoke rows and real results apart: a ``--smoke`` sweep writes only into a results root
    that holds no results yet (which it marks with :data:`SMOKE_MARKER`) or a marked one; a real
    sweep refuses a marked root. Dry runs check but write nothing."""
    root, marker = cfg.log_root, cfg.log_root / SMOKE_MARKER
    if cfg.smoke:
        if not marker.exists() and (any(root.glob("results.csv")) or any(root.glob("*/results.csv"))):
            raise UserError(f"--smoke would write test rows into {root}, which holds other results; pass a new --log-dir "
                            f"(or leave it out: smoke results go to <results root>-smoke)")
        if not cfg.dry_run and not marker.exists():
            root.mkdir(parents=True, exist_ok=True)
            marker.write_text("This results root holds --smoke runs (1 epoch, tiny model): not results to report.\n")
    elif marker.exists():
        raise UserError(f"{root} holds --smoke runs ({marker}); pass another --log-dir for real runs (or delete {root})")


def check_blocked(runs: Sequence[Run], plans: Sequence[Plan]) -> None:
    """Raise the one-line UserError of the first evaluation whose training runs are not finished."""
    blocked = [(r, p) for r, p in zip(runs, plans) if p.missing]
    if blocked:
        r, p = blocked[0]
        raise UserError(
            f"no finished training run {p.missing[0]} (final checkpoint, epoch {r.needs[0].epochs}) in "
            f"{r.needs[0].log_dir}; run `python {r.trained_by}` first ({len(blocked)} evaluation(s) wait for it)"
        )


def heading(k: int, runs: Sequence[Run], run: Run, s: Settings, cfg: Config) -> str:
    """``[ k/N] train <family>/<name>``: how a sweep names run ``k`` in its output."""
    width = len(str(len(runs)))
    return f"[{k:>{width}}/{len(runs)}] {'train' if run.settings.save else 'eval '} {run_label(s, cfg)}"


def _execute(runs: Sequence[Run], cfg: Config) -> list:
    from subspaces.launch import run_lock

    plans = [plan(r, cfg) for r in runs]
    if not cfg.dry_run:
        check_blocked(runs, plans)
    summaries = []
    for k, (r, p) in enumerate(zip(runs, plans), 1):
        head = heading(k, runs, r, p.settings, cfg)
        if cfg.dry_run:
            what = f"waits for `python {r.trained_by}`" if p.missing else p.detail
            print(f"{head}: {what}", flush=True)
            continue
        if p.action == "skip":
            print(f"{head}: {p.detail}, skipped", flush=True)
            continue
        with run_lock(p.settings) as mine:
            if not mine:
                print(f"{head}: running elsewhere, skipped", flush=True)
                continue
            p = plan(r, cfg)  # again, under the lock: another sweep may have finished it meanwhile
            check_blocked([r], [p])
            if p.action == "skip":
                print(f"{head}: {p.detail}, skipped", flush=True)
                continue
            print(f"{head}: {p.detail} ...", end="" if cfg.quiet else "\n", flush=True)
            summary, took = run_planned(p, cfg)
        print(f"{'' if cfg.quiet else head + ': '}done in {took:.1f}s, acc {summary.curr_acc1:.4f}", flush=True)
        summaries.append(summary)
    return summaries


def run_planned(p: Plan, cfg: Config) -> tuple:
    """``(summary, seconds)`` of ``main.main`` on a planned run; prunes its intermediate checkpoints."""
    from subspaces.main import run_checked

    start = time.time()
    with _output(cfg, p.settings):
        summary = run_checked(p.settings)  # checked once, when the run was planned
    if p.settings.save and not cfg.keep_checkpoints:
        prune(p.settings)
    return summary, time.time() - start


@contextlib.contextmanager
def _output(cfg: Config, s: Settings):
    """With ``--quiet``, send a run's own output (epoch lines, progress bars) to ``sweep.log``."""
    if not cfg.quiet:
        yield
        return
    cfg.log_root.mkdir(parents=True, exist_ok=True)
    with open(cfg.log_root / "sweep.log", "a", encoding="utf-8") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {s.log_dir}/{s.name}\n")
        log.flush()
        with contextlib.redirect_stderr(log), contextlib.redirect_stdout(log):
            yield
