#!/usr/bin/env bash
# Second issue-4 device call: where the time of the CIFAR runs goes (model-only vs loader-only img/s).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-/tmp/train_out}
mkdir -p "$OUT" /tmp/data
{
  tar xzf .devcarry/cifar10-images.tar.gz -C /tmp/data
  timeout 60 python3 benchmarks/train_throughput.py --archs patnet_t0 fasternet_t0 --resolution 64 \
      --batch-size 512 --steps 30 --rounds 2 --out "$OUT/throughput_t0_64.json"
  timeout 30 python3 benchmarks/train_throughput.py --archs patnet_t1 --resolution 224 --batch-size 256 \
      --steps 20 --rounds 1 --out "$OUT/throughput_t1_224.json"
  timeout 40 python3 benchmarks/train_loader_speed.py --data /tmp/data/cifar10 --recipe patnet_t0 --resolution 64 \
      --batch-size 512 --workers 12 --batches 60 --out "$OUT/loader_t0_64.json"
  timeout 40 python3 benchmarks/train_loader_speed.py --data /tmp/data/cifar10 --recipe patnet_t1 --resolution 224 \
      --batch-size 256 --workers 14 --batches 40 --out "$OUT/loader_t1_224.json"
} 2>&1 | tee "$OUT/log_diag.txt"
