"""Sweeps that scale out: --parallel K, --launcher slurm (through submitit's local executor), the
per-run lock, and loader workers that fit the machine.

Every sweep here is a Digits smoke sweep (1 epoch, a tiny model) in a temporary results root.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from subspaces import main as main_mod
from subspaces.args import Settings, replace
from subspaces.data import base as data_base
from subspaces import launch, sweep
from subspaces.sweep import Run, execute, make_config, run_cli
from subspaces.utils.results import read_results
from tests.helpers import all_gone_after_killing

ROOT = Path(__file__).resolve().parents[1]
LINES = "one_dimensional_subspaces/train_lines"
DDP_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def config(script: str, ds: str = "digits"):
    return importlib.import_module(f"experiment_configs.{ds}.{script.replace('/', '.')}")


def smoke(tmp_path, **kw):
    return make_config(config(LINES).SETUP, smoke=True, log_dir=str(tmp_path), quiet=True, **kw)


def accuracies(root: Path, family: str = "one-dimensional-subspaces") -> dict:
    """``{row name: curr_acc1}`` of a family's results.csv."""
    return {r["Name"]: float(r["curr_acc1"]) for r in read_results(root / family / "results.csv")}


def run_folders(root: Path) -> list:
    return sorted(p.name for p in root.glob("*/*+try=*"))


# --- flags: honoured or refused ------------------------------------------------------------------


@pytest.mark.parametrize("argv, says", [
    (["--partition", "gpu"], "--partition is an option of --launcher slurm"),
    (["--gpus-per-node", "2"], "--gpus-per-node is an option of --launcher slurm"),
    (["--slurm-extra", "qos=high"], "--slurm-extra is an option of --launcher slurm"),
    (["--parallel", "0"], "--parallel 0"),
    (["--launcher", "slurm", "--parallel", "2"], "--slurm-array-parallelism"),
    (["--launcher", "slurm", "--device", "cuda", "--gpus-per-node", "0"], "--gpus-per-node 1"),
    (["--launcher", "slurm", "--nodes", "0"], "--nodes 0 must be at least 1"),
    (["--slurm-setup", "module load cuda"], "--slurm-setup is an option of --launcher slurm"),
    (["--launcher", "slurm", "--slurm-setup-file", "/nonexistent/setup.sh"], "--slurm-setup-file /nonexistent/setup.sh cannot be read"),
])
def test_launch_flags_of_the_other_launcher_are_refused(tmp_path, capsys, argv, says):
    mod = config(LINES)
    assert run_cli(mod.runs, mod.SETUP, argv=["--smoke", "--log-dir", str(tmp_path / "r")] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: ") and says in err
    assert not (tmp_path / "r").exists()


def test_every_config_script_takes_the_launch_flags():
    text = subprocess.run([sys.executable, str(ROOT / "experiment_configs" / "cifar10" / "ensembles" / "eval_ensembles.py"),
                           "--help"], capture_output=True, text=True, timeout=120).stdout
    for flag in ("--launcher {local,slurm}", "--parallel K", "--partition", "--gpus-per-node", "--nodes", "--cpus-per-task",
                 "--mem-gb", "--timeout-min", "--slurm-array-parallelism", "--slurm-extra", "--slurm-setup LINE",
                 "--slurm-setup-file FILE"):
        assert flag in text, flag
    assert "--slurm-cluster" not in text  # for tests only
    with pytest.raises(SystemExit):
        sweep.build_parser().parse_args(["--launcher", "slurm", "--slurm-extra", "qos"])


def test_reproduce_refuses_slurm(tmp_path, capsys):
    from experiment_configs.digits import reproduce

    assert reproduce.main(["--smoke", "--log-dir", str(tmp_path / "r"), "--launcher", "slurm"]) == 2
    assert "submit the config scripts" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_no_slurm_here_is_one_line(tmp_path, capsys, monkeypatch):
    import submitit

    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", staticmethod(lambda: -1))
    mod = config(LINES)
    assert run_cli(mod.runs, mod.SETUP, argv=["--smoke", "--log-dir", str(tmp_path), "--launcher", "slurm"]) == 2
    assert "no Slurm on this machine" in capsys.readouterr().err
    assert not (tmp_path / "slurm").exists()


# --- --launcher slurm ----------------------------------------------------------------------------


def _slurm_cfg(tmp_path, **kw):
    return smoke(tmp_path, seeds=(0,), launcher="slurm", slurm_cluster="local", **kw)


def test_slurm_sweep_through_submitits_local_executor(tmp_path, capsys):
    """Training and evaluation submitted at once: the evaluation job waits for the training job's
    final checkpoint; rows and checkpoints are a local run's; a finished run is not resubmitted."""
    train, evaluate = config(LINES), config("one_dimensional_subspaces/eval_lines")
    here = smoke(tmp_path / "here", seeds=(0,))
    execute(list(train.runs(here)), here)
    execute(list(evaluate.runs(here)), here)

    cfg = _slurm_cfg(tmp_path / "slurm")
    (job,) = launch.submit(list(train.runs(cfg)), cfg)
    (eval_job,) = launch.submit(list(evaluate.runs(cfg)), cfg)  # the training job is still in flight
    assert job.result()["status"] == "done" and eval_job.result()["status"] == "done"
    for family in ("one-dimensional-subspaces", "eval-one-dimensional-subspaces"):
        got, want = accuracies(tmp_path / "slurm", family), accuracies(tmp_path / "here", family)
        assert got.keys() == want.keys() and all(got[k] == pytest.approx(want[k], abs=1e-6) for k in want)
    ckpts = lambda r: sorted(p.relative_to(r).as_posix() for p in r.rglob("*.pt"))  # noqa: E731
    assert ckpts(tmp_path / "slurm") == ckpts(tmp_path / "here")
    logs = (tmp_path / "slurm" / "slurm").glob(f"{job.job_id}_0_log.out")
    assert "done in" in next(logs).read_text()
    registry = json.loads((tmp_path / "slurm" / "slurm" / "jobs.json").read_text())
    assert registry["one-dimensional-subspaces/id=lines+ln=0.0+beta=1.0+num_samples=1+seed=0"] == job.job_id

    capsys.readouterr()
    assert launch.submit(list(train.runs(cfg)), cfg) == []  # finished: nothing submitted
    assert launch.submit(list(evaluate.runs(cfg)), cfg) == []
    assert capsys.readouterr().out.count(", skipped") == 2


def test_an_evaluation_without_training_or_training_jobs_is_refused(tmp_path, capsys):
    mod = config("one_dimensional_subspaces/eval_lines")
    argv = ["--smoke", "--log-dir", str(tmp_path), "--launcher", "slurm", "--slurm-cluster", "local"]
    assert run_cli(mod.runs, mod.SETUP, argv=argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "run `python experiment_configs/digits/one_dimensional_subspaces/train_lines.py --launcher slurm` first" in err
    assert not (tmp_path / "slurm").exists()


def test_a_requeued_job_resumes_from_its_newest_checkpoint(tmp_path):
    mod = config(LINES)
    cfg = smoke(tmp_path, seeds=(0,), epochs=2, keep_checkpoints=True).with_(checkpoint_every=1)
    (first,) = execute(list(mod.runs(cfg)), cfg)
    # Preempted during epoch 2: no final checkpoint, no row.
    (first.run_dir / "epoch_2_iter_24.pt").unlink()
    (tmp_path / "one-dimensional-subspaces" / "results.csv").unlink()

    job = launch.RunJob(next(iter(mod.runs(cfg))), cfg)
    again = job.checkpoint()  # what submitit calls on the preemption or time-limit signal
    import submitit

    assert isinstance(again, submitit.helpers.DelayedSubmission) and again.function is job
    again = pickle.loads(pickle.dumps(again))  # submitit pickles it for the requeued job
    assert again.result()["status"] == "done"
    resumed = first.run_dir  # the run continues in its own folder
    saved = json.loads((resumed / "settings.txt").read_text())
    assert saved["resume"] == [str(first.run_dir / "epoch_1_iter_12.pt")] and saved["pretrained"] is False
    assert (resumed / "epoch_2_iter_24.pt").exists() and not (resumed.parent / resumed.name.replace("+try=0", "+try=1")).exists()
    assert len(read_results(tmp_path / "one-dimensional-subspaces" / "results.csv")) == 1


def test_slurm_parameters_and_dependencies(tmp_path, monkeypatch):
    """What sbatch gets (no Slurm needed: submitit writes the submission file)."""
    import submitit

    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", staticmethod(lambda: 1))
    cfg = smoke(tmp_path, launcher="slurm", partition="gpu", gpus_per_node=4, nodes=2, cpus_per_task=8, mem_gb=64.0,
                timeout_min=600, slurm_array_parallelism=3, slurm_extra=(("qos", "high"),))
    executor = launch.make_executor(cfg, {"12_0", "12_1"})
    text = executor._executor._make_submission_file_text("python -u -m submitit.core._submit x", "uid")
    for line in ("--partition=gpu", "--gpus-per-node=4", "--ntasks-per-node=4", "--nodes=2", "--cpus-per-task=8",
                 "--mem=64GB", "--time=600", "--qos=high", "--dependency=afterok:12_0:12_1", "--kill-on-invalid-dep=yes",
                 f"--output={tmp_path / 'slurm'}", "--signal=USR2@"):
        assert line in text, line
    assert f"export PYTHONPATH={ROOT}" in text
    assert executor._executor.parameters["array_parallelism"] == 3
    assert make_config(config(LINES).SETUP, launcher="slurm").base.device == "cuda"  # the jobs' GPUs decide


def test_slurm_setup_lines_come_before_the_job(tmp_path, monkeypatch):
    """--slurm-setup-file's lines, then each --slurm-setup in order, then the PYTHONPATH export."""
    import submitit

    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", staticmethod(lambda: 1))
    setup = tmp_path / "setup.sh"
    setup.write_text("# the cluster's modules\n\nsource /etc/profile.d/modules.sh\n")
    cfg = smoke(tmp_path / "r", launcher="slurm", slurm_setup_file=str(setup),
                slurm_setup=["module load cuda/12.1", "conda activate subspaces"])
    text = launch.make_executor(cfg, set())._executor._make_submission_file_text("python -u -m submitit.core._submit x", "uid")
    lines = text.splitlines()
    order = [lines.index(x) for x in ("source /etc/profile.d/modules.sh", "module load cuda/12.1", "conda activate subspaces")]
    assert order == sorted(order) and order[-1] < next(i for i, x in enumerate(lines) if x.startswith("export PYTHONPATH="))
    assert "# the cluster's modules" not in text


def test_slurm_dry_run_shows_the_sbatch_script_and_submits_nothing(tmp_path, capsys):
    """No Slurm needed: the runs it would submit, the array's sbatch script (partition, GPUs, time,
    setup lines, array size, the dependency on training jobs in flight); nothing written."""
    train, evaluate = config(LINES), config("one_dimensional_subspaces/eval_lines")
    root = tmp_path / "r"
    argv = ["--smoke", "--log-dir", str(root), "--launcher", "slurm", "--partition", "gpu", "--gpus-per-node", "2",
            "--timeout-min", "90", "--slurm-array-parallelism", "1", "--slurm-setup", "module load cuda/12.1", "--dry-run"]
    assert run_cli(train.runs, train.SETUP, argv=argv) == 0
    out = capsys.readouterr().out
    assert out.count(": new, would be submitted") == 2 and "2 job(s) would be submitted" in out
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2", "#SBATCH --ntasks-per-node=2", "#SBATCH --time=90",
                 "#SBATCH --array=0-1%1", "#SBATCH --job-name=subspaces-digits"):
        assert line in out, line
    assert out.index("module load cuda/12.1") < out.index("export PYTHONPATH=") and "dependency" not in out
    assert not root.exists()
    # An evaluation: one training run's job is in flight (its id in jobs.json), the other is not submitted.
    cfg = make_config(train.SETUP, sweep.build_parser().parse_args(argv))
    first = next(iter(train.runs(cfg))).settings
    launch.JobRegistry(cfg).record({sweep.run_label(first, cfg): "4242_0"})
    assert run_cli(evaluate.runs, evaluate.SETUP, argv=argv) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --dependency=afterok:4242_0" in out and "#SBATCH --array=0-0%1" in out
    assert out.count("would be submitted") == 2 and "--launcher slurm`, not submitted" in out
    assert sorted(p.name for p in (root / "slurm").iterdir()) == ["jobs.json", "jobs.json.lock"]


def test_a_job_of_several_tasks_exports_the_ddp_environment(monkeypatch):
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k not in DDP_VARS})  # restored after
    assert launch.ddp_environment() is None  # not in a job
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "4242")
    monkeypatch.setenv("SUBMITIT_LOCAL_NTASKS", "1")
    assert launch.ddp_environment() is None  # one task: a plain run
    monkeypatch.setenv("SUBMITIT_LOCAL_NTASKS", "2")
    monkeypatch.setenv("SUBMITIT_LOCAL_GLOBALID", "1")
    monkeypatch.setenv("SUBMITIT_LOCAL_LOCALID", "1")
    env = launch.ddp_environment()
    assert {k: env[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")} == {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    assert env["MASTER_ADDR"] and 20000 <= int(env["MASTER_PORT"]) <= 60000
    assert all(os.environ[k] == v for k, v in env.items())


# --- --parallel K --------------------------------------------------------------------------------


def test_parallel_runs_give_the_rows_of_one_at_a_time(tmp_path, capsys):
    mod = config(LINES)
    assert run_cli(mod.runs, mod.SETUP, argv=["--smoke", "--log-dir", str(tmp_path / "one")]) == 0
    assert run_cli(mod.runs, mod.SETUP, argv=["--smoke", "--log-dir", str(tmp_path / "two"), "--parallel", "2"]) == 0
    one, two = accuracies(tmp_path / "one"), accuracies(tmp_path / "two")
    assert len(one) == 2 and one == two
    out = capsys.readouterr().out
    assert "up to 2 at a time" in out and out.count(": done in") == 4
    logs = sorted((tmp_path / "two" / "logs" / "one-dimensional-subspaces").glob("*.log"))
    assert [p.stem for p in logs] == [n.rsplit("+try=", 1)[0] for n in sorted(two)]
    assert all("epoch 1/1" in p.read_text() for p in logs)
    # Finished runs are skipped in parallel mode too.
    assert run_cli(mod.runs, mod.SETUP, argv=["--smoke", "--log-dir", str(tmp_path / "two"), "--parallel", "2"]) == 0
    assert capsys.readouterr().out.count(", skipped") == 2 and run_folders(tmp_path / "two") == run_folders(tmp_path / "one")


def test_a_failed_run_of_a_parallel_sweep_is_reported_and_the_others_finish(tmp_path, capsys):
    mod = config(LINES)
    cfg = smoke(tmp_path, seeds=(0, 1)).with_(launch=sweep.Launch(parallel=2))
    good, bad = list(mod.runs(cfg))
    bad = Run(replace(bad.settings, set="ImageFolder", data=str(tmp_path / "nowhere")))
    with pytest.raises(launch.RunsFailed, match="1 of 2 run"):
        execute([bad, good], cfg)
    out = capsys.readouterr().out
    assert "failed (exit status 2): ImageFolder data not found" in out and ": done in" in out
    assert list(accuracies(tmp_path)) == [good.settings.name + "+try=0"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_children_of_a_killed_parallel_sweep_stop_with_it(tmp_path):
    """SIGKILL the parent of a --parallel 2 sweep while both children train: they stop within
    seconds (a checkpoint, no results row), instead of training on as orphans."""
    import re

    script = ROOT / "experiment_configs" / "digits" / "one_dimensional_subspaces" / "train_lines.py"
    cmd = [sys.executable, str(script), "--smoke", "--epochs", "400", "--seeds", "0,1", "--parallel", "2", "--log-dir", str(tmp_path)]
    parent = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    family, pids = tmp_path / "one-dimensional-subspaces", []
    try:
        deadline = time.time() + 120
        while len(list(family.glob("*+try=0/epoch_0_iter_0.pt"))) < 2:  # both children train
            assert time.time() < deadline and parent.poll() is None
            time.sleep(0.1)
        for log in (tmp_path / "logs" / "one-dimensional-subspaces").glob("*.log"):
            pids += [int(p) for p in re.findall(r"\(pid (\d+),", log.read_text())]
        assert len(pids) == 2
    finally:
        ended = all_gone_after_killing(parent, pids)  # the children, had they been left running, too
    assert ended
    assert not (family / "results.csv").exists()  # neither run finished: no row, whole or half
    for ck in family.glob("*/*.pt"):
        assert torch.load(ck, weights_only=True)["state_dicts"]


# --- the per-run lock ----------------------------------------------------------------------------


def test_a_run_locked_elsewhere_is_skipped(tmp_path, capsys):
    mod = config(LINES)
    cfg = smoke(tmp_path)
    first, second = list(mod.runs(cfg))
    path = launch.lock_path(first.settings)
    path.parent.mkdir(parents=True)
    holder = subprocess.Popen(  # another sweep, running the first run
        [sys.executable, "-c", "import sys; from filelock import FileLock; l = FileLock(sys.argv[1]); l.acquire(); "
         "print('held', flush=True); sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert launch.lock_held(first.settings)
        done = execute([first, second], cfg)
    finally:
        holder.communicate("", timeout=60)
    assert [s.name for s in done] == [second.settings.name + "+try=0"]
    assert "running elsewhere, skipped" in capsys.readouterr().out
    assert not launch.lock_held(first.settings)
    assert [s.name for s in execute([first, second], cfg)] == [first.settings.name + "+try=0"]


DDP_TASK = """
import importlib, sys
from subspaces import launch
from subspaces.sweep import make_config
mod = importlib.import_module("experiment_configs.digits.one_dimensional_subspaces.train_lines")
cfg = make_config(mod.SETUP, smoke=True, log_dir=sys.argv[1], quiet=True)
print("status", launch.execute_one(list(mod.runs(cfg))[0], cfg)[0], flush=True)
"""


@pytest.mark.parametrize("held", [True, False])
def test_the_ranks_of_a_ddp_job_follow_rank_0s_lock_and_plan(tmp_path, held):
    """A Slurm job of two tasks (or torchrun) runs one run of a sweep: only rank 0 takes the lock
    and plans, and the other rank acts on its decision. Held elsewhere: both skip at once (before,
    rank 1 started the run alone and waited for rank 0 until the join timeout); free: both run it,
    one row."""
    from subspaces.utils import distributed

    mod = config(LINES)
    first = list(mod.runs(smoke(tmp_path)))[0]
    path = launch.lock_path(first.settings)
    path.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from filelock import FileLock; l = FileLock(sys.argv[1]); "
         + ("l.acquire(); " if held else "") + "print('ready', flush=True); sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = distributed._free_port()
    try:
        assert holder.stdout.readline().strip() == "ready"
        env = {k: v for k, v in os.environ.items() if k not in DDP_VARS}
        ranks = [subprocess.Popen([sys.executable, "-c", DDP_TASK, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  env={**env, "OMP_NUM_THREADS": "1", "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}) for r in (0, 1)]
        outs = []
        for p in ranks:
            try:
                outs.append(p.communicate(timeout=240))
            except subprocess.TimeoutExpired:
                for q in ranks:
                    q.kill()
                pytest.fail("a rank did not end: it waits for a rank that decided otherwise")
    finally:
        holder.communicate("", timeout=60)
    assert all(p.returncode == 0 for p in ranks), [e[-2000:] for _, e in outs]
    said = [o.strip().splitlines()[-1] for o, _ in outs]
    assert said == ["status elsewhere"] * 2 if held else said == ["status done"] * 2
    rows = read_results(tmp_path / "one-dimensional-subspaces" / "results.csv") if not held else []
    assert [r["Name"] for r in rows] == ([] if held else [first.settings.name + "+try=0"])


def test_two_concurrent_sweeps_train_each_run_once(tmp_path):
    script = ROOT / "experiment_configs" / "digits" / "one_dimensional_subspaces" / "train_lines.py"
    cmd = [sys.executable, str(script), "--smoke", "--epochs", "4", "--seeds", "0,1", "--log-dir", str(tmp_path)]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    names = [f"id=lines+ln=0.0+beta=1.0+num_samples=1+seed={s}+try=0" for s in range(2)]
    assert run_folders(tmp_path) == names  # one folder per run: none trained twice
    assert sorted(accuracies(tmp_path)) == names
    said = "".join(o for o, _ in outs)
    assert said.count(": done in") == 2 and said.count("skipped") == 2


# --- loader workers ------------------------------------------------------------------------------


def test_loader_workers_are_capped_at_the_usable_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert data_base.usable_cores() == 2
    kw = data_base._loader_kwargs(Settings(workers=8))
    assert kw["num_workers"] == 2 and kw["persistent_workers"]
    assert data_base._loader_kwargs(Settings(workers=0))["num_workers"] == 0
    assert data_base.eval_loader(list(range(4)), Settings(workers=24)).num_workers == 2
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert data_base._loader_kwargs(Settings(workers=8))["num_workers"] == 3


def _image_folder(root: Path, per_class: int = 6) -> None:
    colours = {"a": (255, 0, 0), "b": (0, 0, 255)}
    for split, n in (("train", per_class), ("test", 2)):
        for c, rgb in colours.items():
            for k in range(n):
                path = root / split / c / f"{k}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (16, 16), rgb).save(path)


@pytest.mark.parametrize("cached", [True, False])
def test_a_grid_evaluation_starts_each_loaders_workers_once(tmp_path, monkeypatch, cached):
    """Three points, each with a BatchNorm recompute over the training set and a test pass: the two
    loaders (training, test) start their worker processes once each, whether the evaluation keeps
    the decoded batches or (a set too big to keep) replays the loader for every pass."""
    import torch.utils.data.dataloader as dl
    from subspaces.utils import evaluation

    _image_folder(tmp_path / "data")
    common = dict(set="ImageFolder", data=str(tmp_path / "data"), model_name="cifar_resnet_8", conv_type="LinesConv",
                  bn_type="LinesBN", batch_size=4, test_batch_size=4, log_dir=str(tmp_path / "logs"), seed=0)
    trained = main_mod.main(Settings(**common, trainer="train_one_dim_subspaces", epochs=1, workers=0, save=True))
    ckpt = str(sorted(trained.run_dir.glob("epoch_1_*.pt"))[0])
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    if not cached:
        monkeypatch.setattr(evaluation, "CACHE_MAX_BYTES", 0)
    starts, init = [], dl._MultiProcessingDataLoaderIter.__init__

    def counting(self, loader):
        starts.append(loader.num_workers)
        init(self, loader)

    monkeypatch.setattr(dl._MultiProcessingDataLoaderIter, "__init__", counting)
    s = Settings(**common, trainer="eval_one_dim_subspaces", epochs=0, resume=(ckpt,), pretrained=True,
                 alphas=(0.0, 0.5, 1.0), update_bn=True, workers=8)
    summary = main_mod.main(s)
    assert 0.0 <= summary.metrics["ensemble_acc"] <= 1.0
    assert starts == [2, 2]  # capped at the 2 usable cores; one start per loader, not per pass


def test_the_toy_walkthroughs_data_is_a_tinyimagenet(tmp_path):
    """bench/toy_walkthrough.py's toy set reads as TinyImageNet (the raw layout), and is reused."""
    from subspaces.data import get_dataset

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        toy = importlib.import_module("toy_walkthrough")
    finally:
        sys.path.remove(str(ROOT / "bench"))
    folder = toy.make_toy_tiny(tmp_path, classes=3, train_per_class=4, val=5, size=16)
    assert (folder / "val" / "val_annotations.txt").is_file() and not list(tmp_path.glob(".toy-*"))
    bundle = get_dataset(Settings(set="TinyImageNet", data=str(tmp_path), log_dir=str(tmp_path / "logs")))
    assert bundle.num_classes == 3 and len(bundle.train_loader.dataset) == 12 and len(bundle.val_loader.dataset) == 5
    stamp = (folder / "wnids.txt").stat().st_mtime_ns
    assert toy.make_toy_tiny(tmp_path) == folder and (folder / "wnids.txt").stat().st_mtime_ns == stamp
