"""Digits figures (run the scripts as files)."""
