"""TinyImageNet experiment configs (the paper's settings; see common.py)."""
