#!/usr/bin/env bash
# Issue 11 on one lent H200, one call (never past DEADLINE seconds, default 560): the generic tricks not yet measured
# for both networks, and the check that let combo kernels become the CUDA training default. PARTS picks what runs,
# in this order (default: all; the fifth session of 2026-12-01 ran "learn", "gemm" and "iauto" in separate calls,
# see docs/BENCHMARKS.md and docs/train/autotune-2026-12-01/):
#  iauto   compiled + graphed bf16 channels-last inference at T2, S and L with torch.compile's
#          max-autotune-no-cudagraphs mode (Triton GEMM and convolution templates, which can take PATNet's gates and
#          affines into their epilogues), PATNet fast and FasterNet fast (speed_gpu.py --compile-mode ...), with
#          benchmark_epilogue_fusion=False: with it on, PATNet-T2's compile alone ran past 290 s on a cold machine.
#          Written before: T2 0.96 to 0.98-1.02 if the epilogues take the gates; no change if cuBLAS/cuDNN win.
#          Measured: T2 0.913, S 0.823 (both networks faster, FasterNet more);
#  gemm    the same with Triton GEMM templates only and 1x1 convolutions lowered to GEMMs (max_autotune_gemm,
#          conv_1x1_as_mm) under the default mode; measured: T2 0.918 (S and L past the deadline);
#  learn   PATNet-T0's CIFAR-10 proxy (bf16, 64 px, 5 epochs, batch 512, lr 2e-3, seed 0), compiled and graphed with
#          --compile-option combo_kernels=true; without it: 69.54% top-1 (second session); measured: 69.68%;
#  tauto   compiled + graphed training at T0 with max_autotune for both networks (train_throughput.py --inductor
#          max_autotune=True); written before: 0.796 (combo) / 0.768 (none) to 0.78-0.82; not run yet;
#  pcombo  the kernel profile of the compiled, graphed T2 step under combo kernels (train_profile.py); not run yet.
# The call carries .devcarry/wheels and .devcarry/cifar10-images.tar.gz; $OUT/autotune.tgz is rewritten after every
# step, so a call cut short returns what ran. An Inductor cache left by an earlier call on a still-warm machine
# shortens the compiles (the device tool keeps a machine about 30 s after a call).
#   OUT=$OUT bash benchmarks/autotune_h200.sh
#   OUT=$OUT PARTS="iauto learn" bash benchmarks/autotune_h200.sh
set -uo pipefail
source benchmarks/device_call.sh
begin_call autotune 560
PARTS=${PARTS:-iauto gemm learn tauto pcombo}
want learn && unpack_cifar10
MIN_LEFT=40
{
  want iauto && step 300 python3 benchmarks/speed_gpu.py --out "$RES/iauto" --steps compile --compile-sizes t2,s,l \
    --precisions bfloat16-cl --variant-precisions bfloat16-cl --compile-graphs \
    --compile-mode max-autotune-no-cudagraphs --inductor benchmark_epilogue_fusion=False \
    --compile-forms patnet-fast,fasternet-fast --deadline 290 --reserve 0 --compile-min-left 60
  want gemm && step 300 python3 benchmarks/speed_gpu.py --out "$RES/gemm" --steps compile --compile-sizes t2,s,l \
    --precisions bfloat16-cl --variant-precisions bfloat16-cl --compile-graphs --compile-mode default \
    --inductor max_autotune_gemm=True --inductor conv_1x1_as_mm=True --compile-forms patnet-fast,fasternet-fast \
    --deadline 290 --reserve 0 --compile-min-left 60
  if want learn; then
    step 150 python3 -m patsearch train --arch patnet_t0 --recipe proxy --data "$DATA" --epochs 5 --batch-size 512 \
      --lr 2e-3 --data-loader device --compile --cuda-graph --compile-option combo_kernels=true --no-progress \
      --seed 0 --out /tmp/runs/combo-s0
    cp /tmp/runs/combo-s0/metrics.json "$RES/learn_combo_s0.json"
    pack
  fi
  want tauto && step 250 python3 benchmarks/train_throughput.py --archs patnet_t0 fasternet_t0 --resolution 224 \
    --batch-size 256 --rounds 1 --steps 20 --compile --cuda-graph --inductor max_autotune=True \
    --out "$RES/train_autotune_t0.json"
  want pcombo && step 200 python3 benchmarks/train_profile.py --archs patnet_t2 fasternet_t2 --compile \
    --cuda-graph --inductor combo_kernels=True --out "$RES/profile_combo_t2.json"
} > "$RES/run.log" 2>&1
pack
python3 - "$RES" <<'PY'
import json, sys
from pathlib import Path
p = Path(sys.argv[1]) / "learn_combo_s0.json"
if p.exists():
    hist = json.loads(p.read_text())["history"]
    print("learn combo s0 top-1 per epoch", [h.get("top1") for h in hist])
PY
grep -h "img/s\|{\|skipped\|Error\|vs FasterNet" "$RES/run.log" | grep -v Warning | tail -40
