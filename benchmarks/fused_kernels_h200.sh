#!/usr/bin/env bash
# Issue 11 item 2 on one lent H200, one call (about 9 minutes): the fused kernels alone against eager and compiled
# PyTorch (benchmarks/kernels_gpu.py), then training throughput of PATNet plain, PATNet with the fused ops and
# FasterNet, side by side in one process per size, eager and under CUDA graphs (train_throughput.py
# --fused-kernels both). Everything lands in $OUT/fused.tgz.
#   OUT=$OUT bash benchmarks/fused_kernels_h200.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-/tmp/fused_out}
RES=$OUT/fused
mkdir -p "$RES"
python3 -m pip install -q --no-index --find-links .devcarry/wheels optuna fvcore thop 2>&1 | tail -2
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv > "$RES/gpu.txt" 2>&1
{
  timeout "${KERNELS_TIMEOUT:-150}" python3 benchmarks/kernels_gpu.py --out "$RES/kern" --budget-s 100
  for mode in eager graph; do
    flag=""; [ "$mode" = graph ] && flag="--cuda-graph"
    for v in t2 t0 s; do
      timeout 150 python3 benchmarks/train_throughput.py --archs "patnet_$v" "fasternet_$v" --resolution 224 \
        --batch-size 256 --rounds 2 --fused-kernels both $flag --out "$RES/${mode}_$v.json"
    done
  done
} > "$RES/run.log" 2>&1
tar czf "$OUT/fused.tgz" -C "$OUT" fused
grep -h "img/s\|{" "$RES/run.log" | grep -v Warning | tail -40
