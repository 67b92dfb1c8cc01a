#!/usr/bin/env bash
# Issue 4 and issue 7 GPU figures in one device call (see docs/BENCHMARKS.md):
#   1. training throughput, 224x224 bf16, patnet_t2 vs fasternet_t2 (same harness: the trainer's step)
#   2. like-for-like CIFAR-10: patnet_t0 vs fasternet_t0, recipe patnet_t0, 64 px, same epochs -> JSON + curves PNG
#   3. issue 7: single-GPU PATNet-T1 on CIFAR-10 at 224 for 3 epochs through `patsearch train` (img/s)
# Needs .devcarry/wheels and .devcarry/cifar10-images.tar.gz; writes to $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-/tmp/train_out}
mkdir -p "$OUT" /tmp/data
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }
{
  stamp start
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  nproc
  python3 -m pip install -q --no-index --find-links .devcarry/wheels optuna fvcore thop torch-tb-profiler 2>&1 | tail -2
  python3 -c "import torch, timm, torchvision; print('torch', torch.__version__, 'timm', timm.__version__, 'tv', torchvision.__version__)"
  tar xzf .devcarry/cifar10-images.tar.gz -C /tmp/data
  stamp throughput
  timeout 100 python3 benchmarks/train_throughput.py --archs patnet_t2 fasternet_t2 --resolution 224 \
      --batch-size 256 --steps 30 --rounds 2 --out "$OUT/throughput_t2.json"
  stamp cifar
  timeout 300 python3 benchmarks/train_cifar.py --data /tmp/data/cifar10 --archs patnet_t0 fasternet_t0 \
      --recipe patnet_t0 --resolution 64 --epochs 30 --batch-size 512 --workers 12 --time-budget 270 \
      --out-json "$OUT/cifar_t0.json" --out-png "$OUT/cifar_t0_curves.png"
  stamp t1
  timeout 140 python3 -m patsearch train --arch patnet_t1 --data /tmp/data/cifar10 --epochs 3 --batch-size 256 \
      --resolution 224 --workers 14 --out /tmp/t1 --no-progress
  cp /tmp/t1/metrics.json "$OUT/t1_metrics.json"
  stamp done
} 2>&1 | tee "$OUT/log.txt"
