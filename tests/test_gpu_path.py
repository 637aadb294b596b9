"""The fast paths: torch.compile without per-point recompiles, bf16 autocast, channels-last, data
held on the device, no host-device sync in the training step, and the benchmark scripts.

Everything that can run on a CPU does (the device path on CPU tensors, bf16 autocast on the CPU,
compile with a fast backend); the tests marked ``cuda`` run the same on a GPU and are skipped
without one (tests/conftest.py).
"""
from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from subspaces import main as main_mod
from subspaces import modes
from subspaces.args import Settings
from subspaces.data import TensorLoader, get_dataset
from subspaces.trainers import RunContext, get_trainer
from subspaces.utils.modules import unwrap as uncompiled
from subspaces.utils.memory import keep_freed_memory
from subspaces.utils.optim import get_optimizer

ROOT = Path(__file__).resolve().parents[1]

# kind -> (conv type, BN type, trainer)
KINDS = {
    "lines": ("LinesConv", "LinesBN", "train_one_dim_subspaces"),
    "curves": ("CurvesConv", "CurvesBN", "train_one_dim_subspaces"),
    "simplex3": ("SimplexConv3", "SimplexBN3", "train_simplexes"),
}


def tiny_net(kind: str = "lines") -> nn.Sequential:
    conv, bn, _ = KINDS[kind]
    lin = modes.linear_type_for(conv)
    C, B, L = (modes.get_layer_type(n) for n in (conv, bn, lin))
    return nn.Sequential(C(3, 8, 3, padding=1, bias=False), B(8), nn.ReLU(), C(8, 8, 3, padding=1), B(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), L(8, 4))


def make_folder(root: Path, per_class: int = 6, classes=("a", "b", "c"), size: int = 32) -> Path:
    """A tiny image folder in CIFAR-10's layout: a solid colour per class plus noise."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", max(1, per_class // 2))):
        for k, c in enumerate(classes):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = np.full((size, size, 3), 60 + 60 * k, dtype=np.int64) + rng.integers(-20, 20, (size, size, 3))
                Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / split / c / f"{i}.png")
    return root


def step_context(kind: str, device: str = "cpu", **settings) -> tuple:
    """(trainer, ctx, state) for the real training step of a cifar_resnet_8 subspace on ``device``."""
    from subspaces import models

    conv, bn, trainer_name = KINDS[kind]
    s = Settings(conv_type=conv, bn_type=bn, trainer=trainer_name, beta=1.0, device=device, **settings)
    torch.manual_seed(0)
    net = models.get_model("CIFARResNet", models.Builder(conv, bn), output_size=10, model_name="cifar_resnet_8").to(device)
    if s.channels_last:
        net.to(memory_format=torch.channels_last)
    ctx = RunContext([net], [get_optimizer(s, net)], None, nn.CrossEntropyLoss(), torch.device(device))
    trainer = get_trainer(trainer_name)(s)
    return trainer, ctx, trainer.begin_epoch(ctx, 0)


def batch(device: str = "cpu", n: int = 8, channels_last: bool = False) -> tuple:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, 32, 32, generator=g).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, 10, (n,), generator=g).to(device)


def dynamo_graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


@pytest.fixture
def fresh_dynamo():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


# --- how the point reaches the layers ------------------------------------------------------------


def test_set_point_shares_one_coefficient_tensor_and_keeps_the_state_dict():
    net = tiny_net("curves")
    layers = modes.subspace_layers(net)
    keys = set(net.state_dict())
    modes.set_point(net, (0.3,))
    assert all(m._coeffs is layers[0]._coeffs for m in layers)  # one tensor, made once
    torch.testing.assert_close(layers[0]._coeffs, torch.tensor([0.49, 0.09, 0.42]))
    assert all(m.alpha == 0.3 and m._cvals == pytest.approx((0.49, 0.09, 0.42)) for m in layers)
    modes.set_points(layers, torch.tensor([[0.1], [0.2], [0.3], [0.4], [0.5]], dtype=torch.float64))
    assert [m.alpha for m in layers] == [0.1, 0.2, 0.3, 0.4, 0.5]
    torch.testing.assert_close(torch.stack([m._coeffs[1] for m in layers]), torch.tensor([0.01, 0.04, 0.09, 0.16, 0.25]))
    assert set(net.state_dict()) == keys and not any("coeff" in k for k, _ in net.named_buffers())


def test_setattr_alpha_and_dtype_moves_keep_the_coefficients_in_step():
    net = tiny_net("lines")
    net.apply(lambda m: setattr(m, "alpha", 0.25))  # the original's way of setting the point
    layers = modes.subspace_layers(net)
    assert all(m.alpha == 0.25 for m in layers)
    torch.testing.assert_close(layers[0]._coeffs, torch.tensor([0.75, 0.25]))
    net.double()
    assert all(m._coeffs.dtype == torch.float64 and m._coeffs[1].item() == 0.25 for m in layers)


@pytest.mark.parametrize("compiled", [False, True])
def test_tensor_and_float_coefficients_give_the_same_weights(compiled):
    """Eager mode combines with the float coefficients, compiled code with the tensor: same weight."""
    for kind, point in (("lines", (0.3,)), ("curves", (0.7,)), ("simplex3", (0.2, 0.5))):
        layer = modes.subspace_layers(tiny_net(kind))[0]
        layer.set_point(point)
        eager = layer.get_weight()
        from_tensor = modes.combine(layer.endpoints("weight"), layer._coeffs)
        torch.testing.assert_close(from_tensor, eager, rtol=1e-6, atol=1e-7)
        if compiled:
            fn = torch.compile(lambda: layer.get_weight(), backend="eager", fullgraph=True)
            torch.testing.assert_close(fn(), eager, rtol=1e-6, atol=1e-7)


def test_num_samples_backward_sees_each_parts_point():
    """Setting a new point replaces the coefficient tensor, so a graph that saved the previous one
    (``--num-samples`` > 1: two points in one backward) is still valid."""
    trainer, ctx, state = step_context("lines", num_samples=2, batch_size=8)
    x, y = batch()
    loss, out = trainer.loss(ctx, state, x, y)
    loss.backward()
    assert out.shape == (8, 10) and all(p.grad is not None for p in ctx.models[0].parameters())


# --- torch.compile -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_new_point_every_step_does_not_recompile(kind, fresh_dynamo):
    net = tiny_net(kind)
    layers, coeffs = modes.subspace_layers(net), modes.subspace_coefficients(net)
    compiled = torch.compile(net, backend="aot_eager")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,))
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):  # more than dynamo's recompile limit (8)
        modes.sample_and_set(layers, coeffs, gen, layerwise=False)
        out = compiled(x)
        torch.testing.assert_close(out, net(x), rtol=1e-5, atol=1e-6)
        nn.functional.cross_entropy(out, y).backward()
        opt.step()
        opt.zero_grad()
    assert dynamo_graphs() == 1
    for _ in range(3):  # layerwise points: one more graph (the layers' coefficients no longer alias)
        modes.sample_and_set(layers, coeffs, gen, layerwise=True)
        torch.testing.assert_close(compiled(x), net(x), rtol=1e-5, atol=1e-6)
    assert dynamo_graphs() == 2


def test_inductor_on_cpu_matches_eager(fresh_dynamo):
    net = tiny_net("lines")
    compiled = torch.compile(net)
    x = torch.randn(4, 3, 8, 8)
    for alpha in (0.1, 0.9):
        modes.set_point(net, (alpha,))
        net.zero_grad()
        out = compiled(x)
        out.square().sum().backward()
        grads = [p.grad.clone() for p in net.parameters()]
        net.zero_grad()
        ref = net(x)
        ref.square().sum().backward()
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
        for g, p in zip(grads, net.parameters()):
            torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-5)
    assert dynamo_graphs() == 1


def test_main_compile_trains_without_recompiling_per_step(tmp_path, monkeypatch, fresh_dynamo):
    """``--compile`` end to end (aot_eager backend, for speed): 24 steps of new points, BatchNorm
    statistics recomputed at the midpoint after each epoch (run uncompiled), a test pass, and a
    handful of graphs: train, the dynamic last batch, the no-grad test pass."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    s = Settings(set="Digits", conv_type="LinesConv", bn_type="LinesBN", trainer="train_one_dim_subspaces", beta=1.0,
                 epochs=2, compile=True, train_update_bn=True, log_dir=str(tmp_path), seed=1)
    summary = main_mod.main(s)
    assert summary.curr_acc1 > 0.5
    assert dynamo_graphs() <= 4


def test_uncompiled_unwraps_only_torch_compile():
    net = tiny_net()
    assert uncompiled(net) is net
    assert uncompiled(torch.compile(net, backend="eager")) is net


# --- bf16 autocast, channels-last, data on the device (on CPU tensors) -----------------------------


def test_bf16_autocast_in_the_training_step_keeps_fp32_weights():
    trainer, ctx, state = step_context("lines", amp="bf16")
    seen = []
    conv = modes.conv_layers(ctx.models[0])[0]
    conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x, y = batch()
    loss, out = trainer.train_step(ctx, state, x, y)
    assert seen == [torch.bfloat16] and torch.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in ctx.models[0].parameters())
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in ctx.models[0].parameters())


def test_channels_last_training_step_matches_nchw():
    results = []
    for cl in (False, True):
        trainer, ctx, state = step_context("lines", channels_last=cl)
        x, y = batch(channels_last=cl)
        loss, out = trainer.train_step(ctx, state, x, y)
        conv = modes.conv_layers(ctx.models[0])[1]
        assert conv.get_weight().is_contiguous(memory_format=torch.channels_last) == cl
        results.append((loss.item(), [p.detach().clone() for p in ctx.models[0].parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-4)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_training_step_reads_nothing_back_from_the_device(monkeypatch):
    """No ``.item()``/``float()`` of a tensor inside the step (each is a host-device sync on a GPU),
    for every kind, layerwise and with several samples per batch."""
    for kind, extra in (("lines", {}), ("curves", {}), ("simplex3", {}), ("lines", {"layerwise": True}),
                        ("lines", {"num_samples": 2, "batch_size": 8})):
        trainer, ctx, state = step_context(kind, **extra)
        x, y = batch()

        def forbidden(*a, **k):
            raise AssertionError("a host-device sync inside the training step")

        with monkeypatch.context() as m:
            m.setattr(torch.Tensor, "item", forbidden)
            m.setattr(torch.Tensor, "__float__", forbidden)
            trainer.train_step(ctx, state, x, y)


def test_data_on_device_image_folder_trains_end_to_end(tmp_path):
    """``--data-on-device`` (here the device is the CPU): the folder decoded into one tensor,
    crop and flip done by TensorLoader in batches; with channels-last and bf16 autocast too."""
    make_folder(tmp_path / "data")
    s = Settings(set="ImageFolder", data=str(tmp_path / "data"), data_on_device=True, model_name="cifar_resnet_8",
                 conv_type="LinesConv", bn_type="LinesBN", trainer="train_one_dim_subspaces", beta=1.0, epochs=1,
                 batch_size=8, test_batch_size=8, log_dir=str(tmp_path / "logs"), channels_last=True, amp="bf16")
    bundle = get_dataset(s)
    assert isinstance(bundle.train_loader, TensorLoader) and bundle.train_loader.x.dtype == torch.uint8
    x, y = next(iter(bundle.train_loader))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32
    summary = main_mod.main(s)
    assert 0.0 <= summary.curr_acc1 <= 1.0 and np.isfinite(summary.train_loss)


def test_keep_freed_memory_is_idempotent():
    keep_freed_memory()
    keep_freed_memory()


# --- the benchmark scripts still run (tiny sizes) ----------------------------------------------------


def _run(args: list, timeout: int = 300) -> str:
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout


def test_gpu_check_smoke_on_cpu(tmp_path):
    make_folder(tmp_path / "data", per_class=4)
    stdout = _run(["bash", "bench/gpu_check.sh", "--device", "cpu", "--smoke", "--data", str(tmp_path / "data")])
    assert "images/s" in stdout and "ratio (bf16+channels-last+compile)" in stdout
    assert stdout.strip().splitlines()[-2].startswith("ratio: ")


def test_train_overhead_bench_runs():
    stdout = _run([sys.executable, "bench/train_overhead.py", "--model-name", "cifar_resnet_8", "--batch-size", "4",
                   "--reps", "5", "--steps", "1", "--warmup", "1"])
    assert "| lines" in stdout and "# command: python bench/train_overhead.py" in stdout
    assert stdout.strip().splitlines()[-1].startswith("ratio: ")


def test_eval_grid_bench_agrees_with_the_original_procedure(tmp_path):
    make_folder(tmp_path / "data", per_class=6)
    stdout = _run([sys.executable, "bench/eval_grid.py", "--data", str(tmp_path / "data"), "--bn-images", "12",
                   "--test-images", "9", "--batch-size", "4", "--model-name", "cifar_resnet_8", "--alphas", "0,0.25,0.5",
                   "--train-epochs", "1", "--reps", "1"])
    assert "accuracies: identical in every pair and repetition" in stdout
    assert stdout.strip().splitlines()[-1].startswith("speedup: ")
    assert "glibc's default allocator settings" in stdout and "--channels-last auto" in stdout


def test_eval_grid_bench_on_synthetic_arrays_with_its_options():
    """The default data (synthetic uint8 arrays, handed to each procedure's process in a file) and
    the options that separate the effects (1 repetition: the plumbing, not figures)."""
    stdout = _run([sys.executable, "bench/eval_grid.py", "--bn-images", "12", "--test-images", "9", "--batch-size", "4",
                   "--model-name", "cifar_resnet_8", "--alphas", "0,0.5", "--train-epochs", "1", "--reps", "1",
                   "--original-malloc-tuned", "--project-channels-last", "off"])
    assert "accuracies: identical in every pair and repetition" in stdout
    assert "allocator setting (--original-malloc-tuned)" in stdout and "--channels-last off" in stdout
    assert "synthetic 32x32 images" in stdout and stdout.strip().splitlines()[-1].startswith("speedup: ")


# --- on a GPU --------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("kind, extra", [("lines", {}), ("curves", {}), ("simplex3", {}), ("lines", {"layerwise": True})])
def test_cuda_training_step_has_no_host_device_sync(kind, extra):
    trainer, ctx, state = step_context(kind, device="cuda", **extra)
    x, y = batch("cuda", n=32)
    trainer.train_step(ctx, state, x, y)  # warm-up: first allocations, cuBLAS/cuDNN handles
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            trainer.train_step(ctx, state, x, y)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    layers = modes.subspace_layers(ctx.models[0])
    assert all(m._coeffs.device.type == "cuda" for m in layers)


@pytest.mark.cuda
def test_cuda_tensor_loader_batches_without_sync():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    loader = TensorLoader(x, torch.arange(64) % 10, 16, shuffle=True, pad=4, flip=True,
                          mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), device="cuda")
    it = iter(loader)
    next(it)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        xb, yb = next(it)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert xb.is_cuda and xb.shape == (16, 3, 32, 32)


@pytest.mark.cuda
def test_cuda_compiled_subspace_does_not_recompile(fresh_dynamo):
    trainer, ctx, state = step_context("lines", device="cuda")
    net = ctx.models[0]
    ctx.models[0] = torch.compile(net)
    x, y = batch("cuda", n=16)
    for _ in range(10):
        trainer.train_step(ctx, state, x, y)
    assert dynamo_graphs() == 1


@pytest.mark.cuda
def test_cuda_fast_path_end_to_end(tmp_path):
    """``--device cuda --data-on-device --amp bf16 --channels-last`` (compile is covered above and by
    bench/gpu_check.sh), and the image-folder loaders with workers and pinned memory."""
    make_folder(tmp_path / "data", per_class=8)
    common = dict(set="ImageFolder", data=str(tmp_path / "data"), device="cuda", model_name="cifar_resnet_8",
                  conv_type="LinesConv", bn_type="LinesBN", trainer="train_one_dim_subspaces", beta=1.0, epochs=2,
                  batch_size=8, test_batch_size=8, log_dir=str(tmp_path / "logs"), train_update_bn=True)
    fast = main_mod.main(Settings(**common, data_on_device=True, amp="bf16", channels_last=True))
    assert 0.0 <= fast.curr_acc1 <= 1.0
    s = Settings(**common, workers=2)
    bundle = get_dataset(s)
    assert bundle.train_loader.pin_memory and bundle.train_loader.num_workers == 2
    plain = main_mod.main(s)
    assert 0.0 <= plain.curr_acc1 <= 1.0


def test_compile_mode_is_passed_to_torch_compile_and_needs_compile(monkeypatch):
    seen = []
    monkeypatch.setattr(torch, "compile", lambda m, mode="default": seen.append(mode) or m)
    s = main_mod.check_settings(Settings(compile=True, compile_mode="reduce-overhead"))
    main_mod.place_models(s, [nn.Linear(2, 2)], torch.device("cpu"), main_mod.distributed.World())
    assert seen == ["reduce-overhead"]
    with pytest.raises(main_mod.UserError, match="--compile"):
        main_mod.check_settings(Settings(compile_mode="reduce-overhead"))


def test_import_cost_bench_runs_and_compares_checkouts(tmp_path):
    stdout = _run([sys.executable, "bench/import_cost.py", "--command", "import subspaces.utils.results", "--checkout", str(ROOT)])
    assert "# command: python bench/import_cost.py" in stdout
    row = next(line for line in stdout.splitlines() if line.startswith("| import subspaces.utils.results"))
    assert len([c for c in row.split("|") if c.strip()]) == 3  # the command, this checkout, the other
    bad = subprocess.run([sys.executable, "bench/import_cost.py", "--checkout", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.strip().startswith("error: --checkout") and "Traceback" not in bad.stderr

