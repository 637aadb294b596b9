"""TinyImageNet: the paper's settings (ResNet18 for 64x64 inputs, 200 classes, 160 epochs).

SGD (lr 0.1, momentum 0.9, weight decay 1e-4), cosine schedule with 5 warm-up epochs, batch 128,
beta 1, two seeds, simplexes with n = 2..6. Data in ``<--data>/tiny-imagenet-200`` (default
``~/data``), the raw download: no reorganisation of val/ needed.
Every config script of this folder starts from ``SETUP.base``; edit it here to change them all.
"""
from experiment_configs import RESULTS_ROOT
from subspaces.args import Settings
from subspaces.sweep import DataSetup

SETUP = DataSetup(
    key="tinyimagenet",
    results_root=RESULTS_ROOT,
    base=Settings(
        set="TinyImageNet",
        data="~/data",
        model="TinyImageNetResNet18",
        output_size=200,
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
        workers=8,
    ),
    seeds=(0, 1),
    simplex_n=(2, 3, 4, 5, 6),
    checkpoint_every=20,  # a ResNet18 simplex checkpoint is large; a rerun loses at most 20 epochs
)
