#!/usr/bin/env bash
# Issue 11 on one lent H200, one call (about 8 minutes, never past DEADLINE seconds): the fused kernels alone
# against eager and compiled PyTorch (benchmarks/kernels_gpu.py); training throughput of PATNet plain, PATNet with
# the fused ops and FasterNet, side by side in one process per size, under CUDA graphs (train_throughput.py
# --fused-kernels both); inference of every deployment form including the new fast_kernels one (patnet-fastk:
# PAT_sp's tail and the shortcut in fc2's GEMM epilogue), bf16 channels-last, eager and graphed (speed_gpu.py);
# the same training pairs eager; and the kernel-level profile of T2 plain, fused and FasterNet (train_profile.py).
# $OUT/fused.tgz is rewritten after every step, so a call cut short still returns what ran.
#   OUT=$OUT bash benchmarks/fused_kernels_h200.sh          # DEADLINE=540 by default
set -uo pipefail
source benchmarks/device_call.sh
begin_call fused 540
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv > "$RES/gpu.txt" 2>&1
{
  step 130 python3 benchmarks/kernels_gpu.py --out "$RES/kern" --budget-s 90
  train_pairs() {  # train_pairs MODE [FLAG]
    for v in t2 t0 s; do
      step 100 python3 benchmarks/train_throughput.py --archs "patnet_$v" "fasternet_$v" --resolution 224 \
        --batch-size 256 --rounds 2 --fused-kernels both "${@:2}" --out "$RES/${1}_$v.json"
    done
  }
  train_pairs graph --cuda-graph
  step 170 python3 benchmarks/speed_gpu.py --sizes t2,s,m,l --precisions bfloat16-cl \
    --variant-precisions bfloat16-cl --steps table,graphs --graph-sizes t2,s,m,l --deadline 150 --reserve 0 \
    --out "$RES/infer"
  train_pairs eager
  # Where the time goes, plain and fused, eager (the kernel-level profile)
  step 100 python3 benchmarks/train_profile.py --archs patnet_t2 fasternet_t2 --fused-kernels both \
    --out "$RES/profile_t2.json"
} > "$RES/run.log" 2>&1
pack
grep -h "img/s\|{\|skipped" "$RES/run.log" | grep -v Warning | tail -40
