#!/usr/bin/env bash
# The GPU check, on one GPU in a few minutes:
#   1. the test suite's CUDA-marked tests (pytest -m cuda);
#   2. cifar_resnet_20, standard and lines (beta 1), 2 epochs each on the CIFAR-10 JPEGs held on the
#      GPU (--data-on-device), fp32 and bf16 + channels-last + torch.compile: images/s and the
#      lines/standard ratio of each (bench/gpu_check.py).
#
# Data: --data DIR (train/<class>/*, test/<class>/*), or datasets/cifar10-jpg/ in this checkout, or
# datasets/cifar10-jpg.tar.gz, unpacked there on first use (datasets/ is ignored by git).
#
#   bash bench/gpu_check.sh                               # on a GPU machine
#   bash bench/gpu_check.sh --device cpu --smoke --data DIR   # the plumbing on a CPU, tiny and fast
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=cuda
SMOKE=0
DATA=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    --data) DATA="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (use --device DEV, --smoke, --data DIR)" >&2; exit 2 ;;
  esac
done

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi

if [ -z "$DATA" ]; then
  if [ -d datasets/cifar10-jpg/train ]; then
    DATA=datasets/cifar10-jpg
  elif [ -f datasets/cifar10-jpg.tar.gz ]; then
    echo "# unpacking datasets/cifar10-jpg.tar.gz"
    mkdir -p datasets/cifar10-jpg
    tar -xzf datasets/cifar10-jpg.tar.gz -C datasets/cifar10-jpg
    DATA=datasets/cifar10-jpg
  else
    echo "error: no data; copy cifar10-jpg.tar.gz into datasets/ of this checkout or pass --data DIR" >&2
    exit 2
  fi
fi

echo "# gpu_check: device $DEVICE, data $DATA$([ $SMOKE = 1 ] && echo ', smoke run')"
"$PY" - <<'EOF'
import torch
print(f"# torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
EOF

start=$(date +%s)
if [ "$SMOKE" = 1 ]; then
  echo "# 1. CUDA-marked tests: skipped in a smoke run"
  "$PY" bench/gpu_check.py --device "$DEVICE" --data "$DATA" --smoke --model-name cifar_resnet_8 \
    --epochs 2 --batch-size 16 --max-train 64 --max-test 16 --compile-backend aot_eager
else
  echo "# 1. CUDA-marked tests"
  "$PY" -m pytest -m cuda -q -p no:cacheprovider
  echo "# 2. training: standard vs lines, fp32 and bf16/channels-last/compile"
  "$PY" bench/gpu_check.py --device "$DEVICE" --data "$DATA"
fi
echo "# gpu_check done in $(( $(date +%s) - start ))s"
