#!/usr/bin/env bash
# The paper's CIFAR-10 result (Figure 4's row) on one GPU: see bench/paper_cifar10.py.
#   bash bench/paper_cifar10.sh --data datasets/cifar10-jpg [--epochs 160] [--parallel 4]
#   bash bench/paper_cifar10.sh --smoke --device cpu
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
exec "$PYTHON" bench/paper_cifar10.py "$@"
