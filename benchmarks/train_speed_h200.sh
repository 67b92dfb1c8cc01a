#!/usr/bin/env bash
# Issue 11 on two lent H200s, one call: GPU 0 measures training throughput PATNet vs FasterNet at T0, T2 and S
# (eager, then both under CUDA graphs) and then profiles T0 and T2 (benchmarks/train_profile.py); GPU 1 measures
# both compiled (torch.compile, default mode) at T0 and T2. Every pair runs side by side in one process.
#   OUT=$OUT bash benchmarks/train_speed_h200.sh
# EAGER_GPU / COMPILE_GPU pick the GPUs (default 0 / 1); COMPILE=0 skips the compiled pairs (one GPU enough).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-/tmp/train_speed_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --find-links .devcarry/wheels optuna fvcore thop 2>&1 | tail -2
pair() { python3 benchmarks/train_throughput.py --archs "patnet_$1" "fasternet_$1" --resolution 224 --batch-size 256 "${@:2}"; }
(
  export CUDA_VISIBLE_DEVICES=${EAGER_GPU:-0}
  for v in t0 t2 s; do pair $v --rounds 2 --out "$OUT/eager_$v.json"; done
  for v in t0 t2 s; do pair $v --rounds 2 --cuda-graph --out "$OUT/graph_$v.json"; done
  python3 benchmarks/train_profile.py --archs patnet_t2 fasternet_t2 patnet_t0 fasternet_t0 --out "$OUT/profile.json"
) > "$OUT/gpu0.log" 2>&1 &
[ "${COMPILE:-1}" = 1 ] && (
  export CUDA_VISIBLE_DEVICES=${COMPILE_GPU:-1}
  for v in t0 t2; do timeout "${COMPILE_TIMEOUT:-220}" bash -c "$(declare -f pair); pair $v --rounds 1 --compile --out $OUT/compile_$v.json"; done
) > "$OUT/gpu1.log" 2>&1 &
wait
grep -h "img/s\|{" "$OUT"/gpu*.log | grep -v Warning
