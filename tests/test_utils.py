"""Schedules, seeds, optimisers and run-name parsing."""
from __future__ import annotations

import math

import pytest
import torch

from subspaces.args import Settings, replace
from subspaces.utils.errors import UserError
from subspaces.utils.optim import get_optimizer
from subspaces.utils.results import parse_name
from subspaces.utils.schedulers import SCHEDULES, assign_learning_rate, get_schedule
from subspaces.utils.seed import derive_seed, make_generator


def test_cosine_with_warmup_matches_the_paper_schedule():
    s = Settings(lr=0.1, epochs=10, warmup_length=2)
    lr = get_schedule("cosine_lr", s)
    assert [lr(0), lr(1)] == pytest.approx([0.05, 0.1])  # linear warm-up to the base rate
    assert lr(2) == pytest.approx(0.1)
    assert lr(6) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)) * 0.1)
    assert lr(9) < lr(8) < lr(2)


def test_other_schedules():
    s = Settings(lr=0.1, epochs=100, warmup_length=0, lr_gamma=0.1, lr_adjust=30, swa_lr=0.01)
    assert get_schedule("constant_lr", s)(50) == 0.1
    assert [get_schedule("multistep_lr", s)(e) for e in (0, 29, 30, 65)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    assert get_schedule("linear", s)(50) == pytest.approx(0.05)
    swa = get_schedule("swa_constant_lr", s)
    assert swa(40) == 0.1 and swa(95) == pytest.approx(0.01) and 0.01 < swa(70) < 0.1
    cyc = get_schedule("swa_cyc_lr", replace(s, num_models=3, swa_start=0.5))
    assert cyc(50) == pytest.approx(0.01)  # each cycle restarts at --swa-lr
    for name in SCHEDULES:  # every schedule gives a finite, non-negative rate at every epoch
        f = get_schedule(name, replace(s, num_models=3, warmup_length=5))
        assert all(0 <= f(e) < 1 for e in range(100))


def test_unknown_schedule_lists_the_valid_ones():
    with pytest.raises(UserError, match="cosine_lr"):
        get_schedule("warp_lr", Settings())


def test_optimizer_is_the_papers_sgd():
    net = torch.nn.Linear(2, 2)
    opt = get_optimizer(Settings(lr=0.1, momentum=0.9, wd=1e-4), net)
    assert isinstance(opt, torch.optim.SGD)
    g = opt.param_groups[0]
    assert (g["momentum"], g["weight_decay"], g["nesterov"]) == (0.9, 1e-4, False)
    assign_learning_rate(opt, 0.01)
    assert g["lr"] == 0.01
    net.requires_grad_(False)
    assert get_optimizer(Settings(), net) is None
    with pytest.raises(UserError, match="sgd"):
        get_optimizer(Settings(optimizer="lbfgs"), torch.nn.Linear(2, 2))


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(0, 1, "points") == derive_seed(0, 1, "points")
    assert len({derive_seed(0, e, "points") for e in range(50)}) == 50
    assert derive_seed(0, 1, "points") != derive_seed(0, 1, "torch") != derive_seed(1, 1, "torch")
    a, b = make_generator(3, 2), make_generator(3, 2)
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))


def test_run_names_parse_back():
    assert parse_name("id=lines+ln=0.0+beta=1.0+num_samples=1+seed=0+try=1") == {
        "id": "lines", "ln": "0.0", "beta": "1.0", "num_samples": "1", "seed": "0", "try": "1"
    }
