"""DistributedDataParallel under torchrun on the CPU (Gloo): two processes run the experiment of one.

A run of N processes splits the global batch (``--batch-size``) into N parts, synchronises the
BatchNorm statistics with ``--sync-bn``, and shards evaluation passes with exactly reduced results,
so the weights and numbers match the one-process run of the same settings (up to float rounding).
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from subspaces import main as main_mod
from subspaces.args import Settings, parse_args, replace
from subspaces.utils import distributed
from subspaces.utils.errors import UserError
from subspaces.utils.results import read_results
from tests.helpers import all_gone_after_killing

ROOT = Path(__file__).resolve().parents[1]
LINE = ["--set", "Digits", "--conv-type", "LinesConv", "--bn-type", "LinesBN", "--trainer", "train_one_dim_subspaces",
        "--beta", "1", "--dropout", "0"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(argv, n: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n), str(ROOT / "main.py")]
    return subprocess.run(cmd + [str(a) for a in argv], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def one_process(argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py")] + [str(a) for a in argv], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=600)


def final(run_dir: Path) -> dict:
    ck = sorted(run_dir.glob("epoch_1_iter_*.pt"))[-1]
    return torch.load(ck, weights_only=True)


@pytest.fixture(scope="module")
def line_runs(tmp_path_factory):
    """The same line trained for an epoch by two processes (--sync-bn) and by one."""
    log = tmp_path_factory.mktemp("ddp")
    base = LINE + ["--epochs", "1", "--save", "--log-dir", log, "--sync-bn"]
    two = torchrun(base + ["--name", "two"])
    assert two.returncode == 0, two.stderr[-3000:]
    one = one_process(base + ["--name", "one"])
    assert one.returncode == 0, one.stderr[-3000:]
    return log


def test_two_processes_train_the_weights_of_one(line_runs):
    a, b = final(line_runs / "one+try=0"), final(line_runs / "two+try=0")
    for k, v in a["state_dicts"][0].items():
        torch.testing.assert_close(b["state_dicts"][0][k], v, rtol=1e-3, atol=1e-4, msg=k)
    assert not any(k.startswith("module.") for k in b["state_dicts"][0])  # loads in a one-process run
    rows = {r["Name"]: r for r in read_results(line_runs / "results.csv")}
    assert set(rows) == {"one+try=0", "two+try=0"}  # rank 0 alone wrote a row and a folder
    assert [p.name for p in line_runs.iterdir() if p.name.startswith("two")] == ["two+try=0"]
    assert float(rows["two+try=0"]["train_loss"]) == pytest.approx(float(rows["one+try=0"]["train_loss"]), rel=1e-4)


def test_evaluation_under_two_processes_gives_the_one_process_numbers(line_runs):
    ck = sorted((line_runs / "one+try=0").glob("epoch_1_iter_*.pt"))[-1]
    ev = LINE[:-2] + ["--trainer", "eval_one_dim_subspaces", "--resume", ck, "--pretrained", "--epochs", "0",
                      "--alphas", "0,0.5,1", "--update-bn", "--save-data", "--log-dir", line_runs / "eval"]
    two = torchrun(ev + ["--name", "two"])
    assert two.returncode == 0, two.stderr[-3000:]
    assert main_mod.cli([str(a) for a in ev + ["--name", "one"]]) == 0
    rows = read_results(line_runs / "eval" / "results.csv")
    one = {r["alpha0"]: r for r in rows if r["Name"].startswith("one")}
    two = {r["alpha0"]: r for r in rows if r["Name"].startswith("two")}
    assert set(one) == set(two) == {"0", "0.5", "1"}
    for a in one:
        for col in ("curr_acc1", "m0_acc", "ensemble_acc"):
            assert one[a][col] == two[a][col], (a, col)
        for col in ("nll", "ece", "tvdist", "feat_cossim"):
            assert float(two[a][col]) == pytest.approx(float(one[a][col]), rel=1e-4, abs=1e-6), (a, col)


def test_sync_bn_keeps_names_and_is_the_plain_forward_in_one_process():
    from subspaces import modes

    net = nn.Sequential(nn.Conv2d(1, 4, 3), modes.get_layer_type("LinesBN")(4), nn.BatchNorm2d(4))
    keys = list(net.state_dict())
    x = torch.randn(5, 1, 6, 6)
    before = net(x)
    distributed.convert_sync_bn(net)
    assert list(net.state_dict()) == keys
    assert type(net[1]).__name__ == "SyncLinesBN" and isinstance(net[1], modes.SubspaceBN)
    assert net[1].alpha == 0.5  # the subspace layer still owns its point
    torch.testing.assert_close(net(x), before)


def test_spawned_processes_run_the_torchrun_experiment(tmp_path):
    """--multigpu's launcher (one spawned process per GPU, torchrun's environment), here on CPUs."""
    argv = LINE + ["--epochs", "1", "--save-data", "--log-dir", str(tmp_path), "--name", "spawned", "--sync-bn"]
    code = subprocess.run([sys.executable, "-c", "import sys; from subspaces import main; from subspaces.utils import distributed; "
                           f"sys.exit(distributed.spawn(main.cli, {argv!r}, [0, 1]))"],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert code.returncode == 0, code.stderr[-3000:]
    assert [r["Name"] for r in read_results(tmp_path / "results.csv")] == ["spawned+try=0"]


def _spawned_ranks(parent: int) -> list:
    """The pids of the ranks ``distributed.spawn`` started under ``parent`` (not its resource tracker)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                if b"spawn_main" in (stat.parent / "cmdline").read_bytes():
                    pids.append(int(stat.parent.name))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process table in /proc")
def test_the_ranks_of_a_killed_multigpu_launcher_stop_with_it(tmp_path):
    """SIGKILL the process that --multigpu's launcher runs in while its ranks train: they stop
    within seconds as on SIGTERM, writing a checkpoint of the step they reached (PyTorch's spawn
    alone sends SIGINT: an interrupt that saves nothing), and write no results row."""
    import time

    log = tmp_path / "logs"
    argv = LINE + ["--width-mult", "0.25", "--batch-size", "64", "--epochs", "500", "--save", "--save-epochs", "1",
                   "--log-dir", str(log), "--name", "orphan"]
    code = f"import sys; from subspaces import main; from subspaces.utils import distributed; sys.exit(distributed.spawn(main.cli, {argv!r}, [0, 1]))"
    ranks: list = []
    with (tmp_path / "out").open("w") as err:
        parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 120
            while not list(log.glob("orphan+try=0/epoch_1_iter_*.pt")):  # both ranks train, past the first epoch
                assert time.monotonic() < deadline and parent.poll() is None
                time.sleep(0.1)
            ranks = _spawned_ranks(parent.pid)
            assert len(ranks) == 2
        finally:
            ended = all_gone_after_killing(parent, ranks, wait_s=30)
    assert ended
    out = (tmp_path / "out").read_text()
    assert "stopped" in out and "continue with --resume" in out, out[-3000:]  # the stop's own checkpoint
    assert not (log / "results.csv").exists()  # the run did not finish: no row, whole or half
    for ck in log.glob("orphan+try=0/*.pt"):
        assert torch.load(ck, weights_only=True)["state_dicts"]


def test_part_splits_a_batch_as_tensor_split():
    for n in (1, 7, 128, 29):
        for size in (1, 2, 3):
            parts = [distributed.part(n, distributed.World(r, size)) for r in range(size)]
            expected = torch.arange(n).tensor_split(size)
            assert [torch.arange(n)[p].tolist() for p in parts] == [e.tolist() for e in expected]


def test_point_per_rank_gives_each_rank_its_own_points():
    from subspaces.trainers import RunContext, get_trainer

    s = Settings(conv_type="LinesConv", bn_type="LinesBN", trainer="train_one_dim_subspaces")
    net = main_mod.build_model(replace(s, model="DigitsConvNet", output_size=10), type("D", (), {"in_channels": 1})())
    draws = {}
    for per_rank in (False, True):
        for rank in (0, 1):
            trainer = get_trainer(s.trainer)(replace(s, point_per_rank=per_rank))
            ctx = RunContext([net], [None], None, None, torch.device("cpu"), world=distributed.World(rank, 2))
            draws[per_rank, rank] = torch.rand(3, generator=trainer.begin_epoch(ctx, 0).generator).tolist()
    assert draws[False, 0] == draws[False, 1]
    assert draws[True, 0] != draws[True, 1]


@pytest.mark.parametrize("flags, fix", [(["--batch-size", "127"], "multiple of 2"), (["--num-samples", "2", "--conv-type", "LinesConv", "--bn-type", "LinesBN", "--trainer", "train_one_dim_subspaces"], "--point-per-rank")])
def test_flags_a_run_of_several_processes_refuses(monkeypatch, flags, fix):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(UserError, match=fix):
        main_mod.check_settings(parse_args(flags))


# --- a rank that stops answering (--dist-timeout) ---------------------------------------------------


def _rank(rank: int, argv: list, port: int, out: Path) -> subprocess.Popen:
    """One rank of a two-process run, started as torchrun would (env://), so the test knows its pid;
    its output goes to a file (a full pipe would block it)."""
    env = {**ENV, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    with open(out, "w") as f:
        return subprocess.Popen([sys.executable, str(ROOT / "main.py")] + [str(a) for a in argv], cwd=ROOT, env=env,
                                stdout=f, stderr=subprocess.STDOUT, text=True)


def test_a_stopped_rank_is_named_in_one_line_after_the_timeout(tmp_path):
    """SIGSTOP one rank mid-training: the other exits with status 1 and one line naming it within
    --dist-timeout and a margin (not PyTorch's 30 minutes), leaving no results row and only whole checkpoints."""
    import signal
    import time

    timeout, log = 3, tmp_path / "logs"
    argv = LINE + ["--width-mult", "0.25", "--batch-size", "64", "--epochs", "500", "--save", "--save-epochs", "1",
                   "--log-dir", log, "--name", "hang", "--dist-timeout", timeout]
    port = distributed._free_port()
    ranks = [_rank(r, argv, port, tmp_path / f"rank{r}.out") for r in (0, 1)]
    try:
        deadline = time.monotonic() + 120
        while not list(log.glob("hang+try=0/epoch_1_iter_*.pt")):  # training: past the first epoch
            assert time.monotonic() < deadline and ranks[0].poll() is None, (tmp_path / "rank0.out").read_text()[-3000:]
            time.sleep(0.1)
        os.kill(ranks[1].pid, signal.SIGSTOP)
        stopped = time.monotonic()
        ranks[0].wait(timeout=120)
        waited = time.monotonic() - stopped
    finally:
        for p in ranks:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
            p.wait()
    err = (tmp_path / "rank0.out").read_text()
    last = err.strip().splitlines()[-1]
    assert ranks[0].returncode == 1 and "Traceback" not in err, err[-3000:]
    assert last.startswith(f"error: rank 1 (pid {ranks[1].pid} on ") and "stopped answering" in last and "--dist-timeout" in last
    assert waited < timeout + 30  # the collective's timeout, the heartbeat check, and a loaded machine's exit
    assert not (log / "results.csv").exists()
    for ck in log.glob("hang+try=0/*.pt"):
        assert torch.load(ck, weights_only=True)["state_dicts"]
    assert not [p for p in (log / "hang+try=0").iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]


def test_the_heartbeat_thread_is_stopped_before_the_interpreter_finalises():
    """A daemon heartbeat still inside a store call while Python finalises aborts the rank ("terminate
    called without an active exception"; 7 of 40 two-rank exits before the fix): the exit handlers
    must stop and join it, so none is left running when finalisation starts."""
    code = (
        "import atexit, datetime, threading, time\n"
        "import torch.distributed as dist\n"
        "from subspaces.utils import distributed\n"
        "store = dist.TCPStore('127.0.0.1', 0, is_master=True, timeout=datetime.timedelta(seconds=30))\n"
        "distributed._start_heartbeat(store, distributed.World(0, 2, 0), 30.0)\n"
        "deadline = time.monotonic() + 30\n"
        "while store.add('subspaces/alive/0', 0) < 2 and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "assert store.add('subspaces/alive/0', 0) >= 2, 'the heartbeat never beat'\n"
        "atexit._run_exitfuncs()\n"
        "print(sorted(t.name for t in threading.enumerate() if t.name == 'subspaces-heartbeat'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_dist_timeout_default_and_bad_values():
    assert distributed.collective_timeout(None, torch.device("cpu")) == distributed.GLOO_TIMEOUT_S == 300
    assert distributed.collective_timeout(None, torch.device("cuda")) == distributed.NCCL_TIMEOUT_S
    assert distributed.collective_timeout(7, torch.device("cuda")) == 7.0
    for bad in ("0", "-1", "nan"):
        with pytest.raises(UserError, match="--dist-timeout"):
            main_mod.check_settings(parse_args(["--dist-timeout", bad]))
