"""CIFAR-10 experiment configs (the paper's settings; see common.py)."""
