#!/usr/bin/env bash
# Issue 7 in one device call on nvidia-h200-x2: PATNet-T1 on CIFAR-10 (224 px, 3 epochs, global batch 256)
#   1. torchrun --nproc_per_node 2 (NCCL), 128 images per GPU
#   2. the same on one GPU with the same global batch
# then lists what each run wrote (only rank 0 may write). Needs .devcarry/{wheels,cifar10-images.tar.gz}.
set -uo pipefail
# NVLink multicast stays off (the device notes: it can take the host's shared GPUs out of service).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-/tmp/ddp_out}
mkdir -p "$OUT" /tmp/data
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }
COMMON="--arch patnet_t1 --data /tmp/data/cifar10 --epochs 3 --batch-size 256 --resolution 224 --workers 14 --no-progress"
{
  stamp start
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  nvidia-smi topo -m 2>/dev/null | head -4
  python3 -m pip install -q --no-index --find-links .devcarry/wheels optuna fvcore thop torch-tb-profiler 2>&1 | tail -2
  python3 -c "import torch; print('torch', torch.__version__, 'gpus', torch.cuda.device_count())"
  tar xzf .devcarry/cifar10-images.tar.gz -C /tmp/data
  stamp two-gpus
  timeout 200 torchrun --standalone --nproc_per_node 2 -m patsearch train $COMMON --out /tmp/ddp2
  stamp one-gpu
  CUDA_VISIBLE_DEVICES=0 timeout 200 python3 -m patsearch train $COMMON --out /tmp/ddp1
  stamp files
  for d in /tmp/ddp2 /tmp/ddp1; do echo "== $d"; find "$d" -type f -printf '%P %s\n' | sort; done
  cp /tmp/ddp2/metrics.json "$OUT/t1_2gpu_metrics.json"
  cp /tmp/ddp1/metrics.json "$OUT/t1_1gpu_metrics.json"
  stamp done
} 2>&1 | tee "$OUT/log.txt"
