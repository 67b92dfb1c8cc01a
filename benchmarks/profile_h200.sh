#!/usr/bin/env bash
# Issue 12 item 2 on a lent H200: build the H200 table (bf16, channels-last, CUDA graph replays: --device h200's
# protocol) and validate it on 40 calibration + 60 held-out random networks, in one call of at most ~9 minutes.
# Resumable: pass the profile JSON a previous call brought back as $1; only what it lacks is measured.
#   OUT=$OUT bash benchmarks/profile_h200.sh [previous.json]
# EXTRA adds profile flags (e.g. EXTRA=--no-cuda-graphs for the eager protocol).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-/tmp/profile_h200_out}
EXTRA=${EXTRA:-}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --find-links .devcarry/wheels optuna fvcore thop 2>&1 | tail -2
# shellcheck disable=SC2086
slug=$(python3 -c "import sys; from patsearch.profiler import ProfileOptions as P; o=P('h200', cuda_graphs=None if '--no-cuda-graphs' not in sys.argv[1:] else False); print(o.protocol().slug())" $EXTRA)
json="$OUT/h200-$slug.json"
if [ -n "${1:-}" ]; then cp "$1" "$json"; fi
start=$(date +%s)
# shellcheck disable=SC2086
timeout "${TIMEOUT:-540}" python3 -m patsearch profile --device h200 --validate 60 $EXTRA \
  --out "$json" --plot "${json%.json}.fidelity.png"
echo "exit $? after $(( $(date +%s) - start )) s"
