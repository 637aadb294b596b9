"""Digits experiment configs (the embedded data set: ``reproduce.py`` runs them all)."""
