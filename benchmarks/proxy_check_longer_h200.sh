#!/usr/bin/env bash
# Issue 10 item 4 on two lent H200s: does a longer proxy rank better? Resumable across device calls.
#   Phase 1 (look): the committed check (5-epoch 64 px proxy, 25-epoch reference, 20 networks, 3 seeds) grows by a
#     10-epoch alternative (alt5, exploratory: the reference trains on only 2.8x its images).
#   Phase 2 (measure): a new check whose proxy is that 10-epoch one, against a 50-epoch reference (5.6x), with the
#     5-epoch default as alt1; it copies both proxies' trainings from phase 1 (--reuse-records), so only the
#     reference trains.
#   call 1:  mkdir -p .devcarry/pc && tar xzf docs/search/proxy-fidelity-cifar10.records.tgz -C .devcarry/pc
#            OUT=$OUT bash benchmarks/proxy_check_longer_h200.sh .devcarry/pc
#   call 2+: the same with the folder that call 1's tarball unpacks to ($OUT/longer.tgz -> pc25/, pc50/):
#            OUT=$OUT bash benchmarks/proxy_check_longer_h200.sh .devcarry/longer/pc25 .devcarry/longer/pc50
# CALL_SECONDS bounds the whole call (default 585); REF_SEEDS_50 the 50-epoch reference's seeds (default 2).
set -uo pipefail
OUT=${OUT:?set OUT}
START=$(date +%s)
left() { echo $(( ${CALL_SECONDS:-585} - ($(date +%s) - START) )); }
COMMON=(BUDGET=epyc=27.1ms N=18 SEEDS=0,1,2)
RECORDED='--also-proxy batch_size=256,lr=2e-3 --also-proxy resolution=32 --also-proxy lr=4e-3 --also-proxy lr=1e-3'
# Phase 1: skipped once its 10-epoch alternative is complete (the report says complete).
if ! python3 -c "import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))['complete'] else 1)" \
     "${1:?records of the 25-epoch check}/proxy-fidelity-cifar10.json" 2>/dev/null; then
  T=$(( $(left) - 60 ))
  env "${COMMON[@]}" REF_EPOCHS=25 REF_SEEDS=3 WORKERS_PER_GPU=3 OUT="$OUT/pc25" STOP_AFTER=$(( T - 45 )) TIMEOUT=$T \
    PROXY='--proxy-epochs 5 --proxy-resolution 64 --proxy-holdout 5000' \
    ALSO="$RECORDED --also-proxy epochs=10 --exploratory-alternatives" bash benchmarks/proxy_check_h200.sh "$1"
else
  mkdir -p "$OUT/pc25" && cp -r "$1"/* "$OUT/pc25/"
fi
# Phase 2: whatever time is left; trainings of about 2 minutes each, so stop starting them 150 s before the end.
T=$(( $(left) - 25 ))
if [ "$T" -gt 200 ]; then
  if [ -n "${2:-}" ]; then P2=("$2"); else P2=(); fi
  env "${COMMON[@]}" REF_EPOCHS=50 REF_SEEDS=${REF_SEEDS_50:-2} WORKERS_PER_GPU=4 OUT="$OUT/pc50" \
    STOP_AFTER=$(( T - 150 )) TIMEOUT=$T PROXY='--proxy-epochs 10 --proxy-resolution 64 --proxy-holdout 5000' \
    ALSO="--also-proxy epochs=5 --reuse-records $OUT/pc25/proxy-fidelity-cifar10.records" \
    bash benchmarks/proxy_check_h200.sh "${P2[@]}"
fi
tar czf "$OUT/longer.tgz" -C "$OUT" pc25 $( [ -d "$OUT/pc50" ] && echo pc50 )
