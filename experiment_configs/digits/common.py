"""Digits (the embedded default): the paper's settings, scaled down to run in minutes on a CPU.

SGD (lr 0.1, momentum 0.9, weight decay 1e-4), cosine schedule, batch 128, beta 1 and two seeds,
as the paper; 20 epochs with 2 warm-up epochs instead of 160 with 5, and simplexes with n = 2..4.
Every config script of this folder starts from ``SETUP.base``; edit it here to change them all.
"""
from experiment_configs import RESULTS_ROOT
from subspaces.args import Settings
from subspaces.sweep import DataSetup

SETUP = DataSetup(
    key="digits",
    results_root=RESULTS_ROOT,
    base=Settings(
        set="Digits",
        model="DigitsConvNet",
        conv_init="kaiming_normal",
        epochs=20,
        warmup_length=2,
        lr=0.1,
        momentum=0.9,
        wd=1e-4,
        lr_policy="cosine_lr",
        batch_size=128,
        test_batch_size=512,
        label_noise=0.0,
        data_seed=0,
        test_freq=5,
    ),
    seeds=(0, 1),
    simplex_n=(2, 3, 4),
    checkpoint_every=5,
    threads=1,  # the net is tiny: one thread is as fast, and far faster on a busy machine
)
