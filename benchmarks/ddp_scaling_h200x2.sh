#!/usr/bin/env bash
# Issue 11 item 3 on the lent nvidia-h200-x2, one call: PATNet-T1 on CIFAR-10 at 224 px with the paper's recipe,
# the set decoded once into device tensors (--data-loader device: no loader processes), on one GPU and then with
# DDP on two (the same per-GPU batch), and the same one-GPU run with timm's file pipeline for comparison.
# img/s per epoch from each run's metrics.json; the scaling is two GPUs' img/s over one GPU's, epochs 2+.
#   OUT=$OUT bash benchmarks/ddp_scaling_h200x2.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/ddp_scaling_out}
EPOCHS=${EPOCHS:-3}
PER_GPU_BATCH=${PER_GPU_BATCH:-256}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --find-links .devcarry/wheels optuna fvcore thop 2>&1 | tail -2
DATA=${DATA:-/tmp/data/cifar10}
[ -d "$DATA" ] || { mkdir -p /tmp/data && tar xzf .devcarry/cifar10-images.tar.gz -C /tmp/data; }
run() {  # name, processes, loader, global batch
  local name=$1 procs=$2 loader=$3 batch=$4
  local args=(train --arch patnet_t1 --data "$DATA" --epochs "$EPOCHS" --batch-size "$batch" --resolution 224
              --data-loader "$loader" --no-progress --out "/tmp/runs/$name")
  if [ "$procs" = 1 ]; then CUDA_VISIBLE_DEVICES=0 python3 -m patsearch "${args[@]}"
  else torchrun --standalone --nproc_per_node "$procs" -m patsearch "${args[@]}"; fi > "$OUT/$name.log" 2>&1
  cp "/tmp/runs/$name/metrics.json" "$OUT/$name-metrics.json" 2>/dev/null
}
run device-1gpu 1 device "$PER_GPU_BATCH"
run device-2gpu 2 device $((2 * PER_GPU_BATCH))
run files-1gpu 1 files "$PER_GPU_BATCH"
python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rates = {}
for name in ("device-1gpu", "device-2gpu", "files-1gpu"):
    p = out / f"{name}-metrics.json"
    hist = json.loads(p.read_text())["history"] if p.exists() else []
    rates[name] = [round(h["img_s"]) for h in hist]
    print(name, "img/s per epoch", rates[name], "top-1", [h.get("top1") for h in hist])
later = lambda r: sum(r[1:]) / max(len(r[1:]), 1)
if rates["device-1gpu"][1:] and rates["device-2gpu"][1:]:
    print(f"scaling (epochs 2+): {later(rates['device-2gpu']) / later(rates['device-1gpu']):.2f}x")
PY
