"""Config scripts (run them as files: ``python experiment_configs/<dataset>/<family>/<script>.py``)."""
