"""CIFAR-10 figures (run the scripts as files)."""
