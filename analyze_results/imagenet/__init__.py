"""ImageNet figures (run the scripts as files)."""
