"""Figures from the experiment configs' results: ``python analyze_results/<dataset>/<figure>.py``."""
