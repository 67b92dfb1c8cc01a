#!/usr/bin/env bash
# Issue 10 item 7, the proof on CIFAR-10: does the searched network beat PATNet-T1 at T1's latency?
#
#   OUT=$OUT bash benchmarks/search_proof.sh search      # TPE and random search, one GPU each, W workers per GPU
#   OUT=$OUT bash benchmarks/search_proof.sh reference   # TPE winner, random winner, T1: reference recipe, 3 seeds
#
# The budget ($BUDGET) is PATNet-T1's predicted latency on a CPU table of a host we can measure on (the shipped
# epyc table), so the winners' latency can be measured there afterwards (benchmarks/search_cifar.py --phase measure). Both
# studies get the same proxy, trial count and time; TPE has T0 and T1 enqueued first (they count as its trials),
# random search none. Small networks train launch-bound on a GPU, so W search processes share each GPU (one
# Optuna study per sampler, exact trial counts across workers; --workers-per-gpu). Phase `reference` needs the `runs/` of phase
# `search` (carried back as $RUNS_IN) and trains each network with the proxy recipe for longer at a higher
# resolution on the full training split, evaluating on the full test split.
# Needs .devcarry/wheels and .devcarry/cifar10-images.tar.gz (or DATA= an ImageFolder named cifar10).
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
PHASE=${1:?search, reference or both}
OUT=${OUT:-/tmp/search_proof}
DATA=${DATA:-.devcarry/cifar10}
BUDGET=${BUDGET:?the latency budget with its table, e.g. epyc=27.1ms (PATNet-T1 on that table)}
TRIALS=${TRIALS:-40}
WORKERS_PER_GPU=${WORKERS_PER_GPU:-3}
SEARCH_TIMEOUT=${SEARCH_TIMEOUT:-330}
PROXY_DEVICE=${PROXY_DEVICE:-cuda}
PROXY=${PROXY:---proxy-epochs 3 --proxy-resolution 32 --proxy-train-samples 20000 --proxy-val-samples 2000}
REF_EPOCHS=${REF_EPOCHS:-10}
REF_RES=${REF_RES:-64}
REF_BATCH=${REF_BATCH:-512}
REF_LR=${REF_LR:-0.002}  # absolute; the proxy recipe's sqrt-scaled 7.1e-3 at batch 512 made PATNet-T1 diverge
EXTRA_REFS=${EXTRA_REFS-patnet_t0}  # EXTRA_REFS="" trains no extra network
CONFIRM=${CONFIRM:-}  # e.g. "--confirm-top 3 --confirm-seeds 3": rank the leaders by their mean over proxy seeds
REF_FLAGS=${REF_FLAGS:---cuda-graph}  # each reference step replayed from a CUDA graph (same function, fewer launches)
SEEDS=${SEEDS:-0 1 2}
RUNS=${RUNS:-$OUT/runs}  # studies and their proxy data (tar what you bring back: the tensor caches are large)
mkdir -p "$OUT" "$RUNS"
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }
gpus() { python3 -c "import torch; print(max(1, torch.cuda.device_count()))"; }

setup() {
  if [ -d .devcarry/wheels ]; then
    python3 -m pip install -q --no-index --find-links .devcarry/wheels optuna fvcore thop 2>&1 | tail -2
  fi
  if [ ! -d "$DATA" ] && [ -f .devcarry/cifar10-images.tar.gz ]; then
    tar xzf .devcarry/cifar10-images.tar.gz -C .devcarry
  fi
  nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null
  stamp "data $DATA: $(ls "$DATA")"
}

search() {
  local n_gpus; n_gpus=$(gpus)
  local i=0
  for sampler in tpe random; do
    local gpu=$(( i % n_gpus )); i=$((i + 1))
    local extra=""; [ "$sampler" = random ] && extra="--baselines none"
    # One GPU per sampler; the search's own --gpus/--workers-per-gpu starts W worker processes on it (each pins
    # its GPU through the inherited CUDA_VISIBLE_DEVICES).
    CUDA_VISIBLE_DEVICES=$gpu python3 -m patsearch search --latency-budget "$BUDGET" --allow-stale-profile \
      --data "$DATA" $PROXY --proxy-device "$PROXY_DEVICE" --gpus all --workers-per-gpu "$WORKERS_PER_GPU" \
      --trials "$TRIALS" --sampler "$sampler" --seed 1 --pruner none --timeout "$SEARCH_TIMEOUT" \
      --study-name "proof-$sampler" --runs-dir "$RUNS" --no-plots $CONFIRM $extra > "$OUT/search-$sampler.log" 2>&1 &
  done
  wait
  for sampler in tpe random; do
    python3 -m patsearch search --show "proof-$sampler" --runs-dir "$RUNS" > "$OUT/summary-$sampler.txt" 2>&1
    tail -30 "$OUT/summary-$sampler.txt"
  done
}

reference() {
  local n_gpus; n_gpus=$(gpus)
  local jobs=() i=0
  [ -f "$RUNS/proof-tpe/best.yaml" ] && jobs+=("tpe=$RUNS/proof-tpe/best.yaml")
  [ -f "$RUNS/proof-random/best.yaml" ] && jobs+=("random=$RUNS/proof-random/best.yaml")
  jobs+=("patnet_t1=patnet_t1")
  for extra in $EXTRA_REFS; do jobs+=("$extra=$extra"); done
  for seed in $SEEDS; do
    for job in "${jobs[@]}"; do
      local name=${job%%=*} arch=${job#*=}
      local gpu=$(( i % n_gpus )); i=$((i + 1))
      # --resume auto: a rerun after a kill continues each training where it stopped
      CUDA_VISIBLE_DEVICES=$gpu python3 -m patsearch train --arch "$arch" --data "$DATA" --recipe proxy \
        --epochs "$REF_EPOCHS" --resolution "$REF_RES" --batch-size "$REF_BATCH" --lr "$REF_LR" --seed "$seed" --device "$PROXY_DEVICE" --no-progress \
        $REF_FLAGS --out "$OUT/ref/$name-s$seed" --resume auto > "$OUT/ref-$name-s$seed.log" 2>&1 &
    done
  done
  wait
  python3 - "$OUT/ref" <<'EOF'
import json, pathlib, statistics, sys
rows = {}
for metrics in sorted(pathlib.Path(sys.argv[1]).glob("*/metrics.json")):
    name, seed = metrics.parent.name.rsplit("-s", 1)
    result = json.loads(metrics.read_text())
    history = result.get("history") or [{}]
    rows.setdefault(name, []).append(history[-1].get("top1"))  # the final epoch's, not the best (no peeking)
for name, tops in rows.items():
    vals = [t for t in tops if t is not None]
    sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
    print(f"{name}: top-1 {vals} mean {statistics.mean(vals):.2f} sd {sd:.2f}" if vals else f"{name}: no result")
EOF
}

setup
stamp "phase $PHASE"
# RUNS_IN: the runs/ of an earlier call (carried back); a search continues its studies up to $TRIALS, the
# reference phase trains their winners.
if [ -n "${RUNS_IN:-}" ]; then cp -r "$RUNS_IN"/. "$RUNS"/; fi
case "$PHASE" in
  search) search ;;
  reference) reference ;;
  both) search && reference ;;
  *) echo "unknown phase $PHASE (search, reference or both)"; exit 2 ;;
esac
stamp done
