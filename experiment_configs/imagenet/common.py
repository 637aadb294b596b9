"""ImageNet: the original's settings (WideResNet50_2, 200 epochs, weight decay 5e-5, batch 256).

SGD (lr 0.1, momentum 0.9), cosine schedule with 5 warm-up epochs, beta 1, two seeds. Data in
``<--data>/imagenet`` (default ``~/data``). Pass ``--device cuda`` (the default when a GPU is
present); for several GPUs set ``multigpu=(0, 1, 2, 3)`` below.
Every config script of this folder starts from ``SETUP.base``; edit it here to change them all.
"""
from experiment_configs import RESULTS_ROOT
from subspaces.args import Settings
from subspaces.sweep import DataSetup

SETUP = DataSetup(
    key="imagenet",
    results_root=RESULTS_ROOT,
    base=Settings(
        set="ImageNet",
        data="~/data",
        model="WideResNet50_2",
        output_size=1000,
        conv_init="kaiming_normal",
        epochs=200,
        warmup_length=5,
        lr=0.1,
        momentum=0.9,
        wd=5e-5,
        lr_policy="cosine_lr",
        batch_size=256,
        test_batch_size=256,
        label_noise=0.0,
        data_seed=0,
        test_freq=100,
        workers=24,
    ),
    seeds=(0, 1),
    simplex_n=(2, 3, 4, 5, 6),
    checkpoint_every=10,
)
