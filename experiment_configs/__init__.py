"""Experiment configs: one script per experiment and data set, each a loop over seeds (and n)."""
