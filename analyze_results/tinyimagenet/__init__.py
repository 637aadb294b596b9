"""TinyImageNet figures (run the scripts as files)."""
