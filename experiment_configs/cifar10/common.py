"""CIFAR-10: the paper's settings (cifar_resnet_20, 160 epochs; the original's configs).

SGD (lr 0.1, momentum 0.9, weight decay 1e-4), cosine schedule with 5 warm-up epochs, batch 128,
beta 1, two seeds, simplexes with n = 2..6. Data in ``<--data>/cifar10`` (default ``~/data``).
Every config script of this folder starts from ``SETUP.base``; edit it here to change them all.
"""
from experiment_configs import RESULTS_ROOT
from subspaces.args import Settings
from subspaces.sweep import DataSetup

SETUP = DataSetup(
    key="cifar10",
    results_root=RESULTS_ROOT,
    base=Settings(
        set="CIFAR10",
        data="~/data",
        model="CIFARResNet",
        model_name="cifar_resnet_20",
        conv_init="kaiming_normal",
        epochs=160,
        warmup_length=5,
        lr=0.1,
        momentum=0.9,
        wd=1e-4,
        lr_policy="cosine_lr",
        batch_size=128,
        test_batch_size=128,
        label_noise=0.0,
        data_seed=0,
        test_freq=10,
        workers=4,
    ),
    seeds=(0, 1),
    simplex_n=(2, 3, 4, 5, 6),
    checkpoint_every=10,
)
