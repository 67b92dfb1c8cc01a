#!/usr/bin/env bash
# Profile a device end to end, in two bounded phases (each fits one 10-minute device call; tables resume).
#   phase 1: lookup table + end-to-end validation (calibration set + held-out set), stopped cleanly at BUDGET_S
#   phase 2: resume whatever phase 1 left, torch.profiler traces, then `patsearch bench`
# Usage (repo root): DEVICE=h100 OUT=/tmp/out bash benchmarks/device_profile.sh 1   (then ... 2)
# Dry run on a CPU host: DEVICE=cpu SPACE=tiny VALIDATE=6 CALIBRATE=6 BENCH_MODELS=patnet_t0,fasternet_t0 ...
set -uo pipefail
PHASE=${1:-1}
DEVICE=${DEVICE:-h100}; SPACE=${SPACE:-patnet}; OUT=${OUT:-/tmp/patsearch-out}; BUDGET_S=${BUDGET_S:-480}
VALIDATE=${VALIDATE:-60}; CALIBRATE=${CALIBRATE:-40}; BENCH_MODELS=${BENCH_MODELS:-}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
if [ -d .devcarry/wheels ] && ! $PY -c "import optuna, fvcore, thop" 2>/dev/null; then
  $PY -m pip install -q --no-index --find-links .devcarry/wheels optuna fvcore thop torch-tb-profiler
fi
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } >> "$OUT/env-$DEVICE.txt"
TRACE=()
if [ "$PHASE" = 2 ]; then TRACE=(--trace /tmp/traces-$DEVICE); fi
# SIGINT lets the build save what it measured; phase 2 (or a rerun) resumes from there.
timeout -s INT -k 30 "$BUDGET_S" $PY cli.py profile --device "$DEVICE" --space "$SPACE" \
  --validate "$VALIDATE" --calibrate "$CALIBRATE" "${TRACE[@]}" 2>&1 | grep -v USDT | tee -a "$OUT/profile-$DEVICE.log"
cp profiles/"$DEVICE"-*.json profiles/"$DEVICE"-*.png "$OUT"/ 2>/dev/null
if [ "$PHASE" = 2 ]; then
  [ -d /tmp/traces-$DEVICE ] && tar czf "$OUT/traces-$DEVICE.tgz" -C /tmp "traces-$DEVICE"
  $PY cli.py bench --device "$DEVICE" ${BENCH_MODELS:+--models "$BENCH_MODELS"} --format json \
    --out "$OUT/bench-$DEVICE.json" 2>&1 | grep -v USDT | tail -n 3
  $PY -c "from patsearch.profiler.bench import BenchResult, BenchRow; import json,sys
d=json.load(open(sys.argv[1])); rows=[BenchRow(**r) for r in d.pop('rows')]
print(BenchResult(rows=rows, **d).to_markdown())" "$OUT/bench-$DEVICE.json" | tee "$OUT/bench-$DEVICE.md"
fi
ls -la "$OUT"
