#!/usr/bin/env bash
# Issue 10 item 4 on the lent H200s: the proxy fidelity check on CIFAR-10, W worker processes per GPU.
# Resumable across device calls: every finished training is a record under $OUT/proxy-fidelity-cifar10.records;
# pass the folder a previous call brought back as $1 and this call continues where that one stopped.
#   call 1:  OUT=$OUT bash benchmarks/proxy_check_h200.sh
#   call 2:  OUT=$OUT bash benchmarks/proxy_check_h200.sh .devcarry/proxy-check     (call 1's files, carried)
# The reference is the proof's (benchmarks/search_proof.sh reference): 10 epochs at 64 px on the full train split,
# scored on the full test split, batch 512, lr 2e-3. The proxy and each --also-proxy are measured against it.
# Needs .devcarry/wheels (optuna, fvcore, thop) and CIFAR-10 as an image folder named cifar10 at $DATA (train/,
# test/; default .devcarry/cifar10, else .devcarry/cifar10-images.tar.gz is unpacked). The folder's name is part of
# the report's data id, which the search summary matches against its own --data.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
OUT=${OUT:-/tmp/proxy_check_out}
DATA=${DATA:-.devcarry/cifar10}
STOP_AFTER=${STOP_AFTER:-420}   # start no training after this many seconds (the longest job then still ends in time)
BUDGET=${BUDGET:?the latency budget, e.g. epyc=27.1ms (PATNet-T1 on that table)}
N=${N:-12}
SEEDS=${SEEDS:-0,1}   # proxy seeds; a resumed check may add networks (N) and seeds (SEEDS, REF_SEEDS)
WORKERS_PER_GPU=${WORKERS_PER_GPU:-3}
REF_EPOCHS=${REF_EPOCHS:-10}  # 25 for the proof's 5-epoch 64 px proxy (5x its training images)
REF_SEEDS=${REF_SEEDS:-1}     # 3: average the reference over seeds (its own noise caps the measurable tau)
PROXY=${PROXY:---proxy-epochs 3 --proxy-resolution 32 --proxy-train-samples 20000 --proxy-val-samples 2000}
ALSO=${ALSO---also-proxy epochs=2,resolution=64}  # ALSO= (empty): no alternative proxy
# ALSO may add --exploratory-alternatives: an alternative longer than 1/5 of the reference (e.g. epochs=10 against the
# 25-epoch reference), marked in the report, as a cheap look before paying for a longer reference
# The reference trains on the whole training split and scores the whole test split, whatever the proxy holds out.
REFERENCE=${REFERENCE:-train_samples=all,val_samples=all,holdout=none}
mkdir -p "$OUT"
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }
{
  stamp start
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  python3 -m pip install -q --no-index --find-links .devcarry/wheels optuna fvcore thop 2>&1 | tail -2
  python3 -c "import torch, scipy; print('torch', torch.__version__, 'gpus', torch.cuda.device_count(), 'scipy', scipy.__version__)"
  if [ ! -d "$DATA" ] && [ -f .devcarry/cifar10-images.tar.gz ]; then  # the packed copy other GPU scripts carry
    mkdir -p /tmp/data && tar xzf .devcarry/cifar10-images.tar.gz -C /tmp/data && DATA=/tmp/data/cifar10
  fi
  stamp "data $DATA: $(ls "$DATA")"
  if [ -n "${1:-}" ]; then cp -r "$1"/*.records "$OUT"/ && stamp "resuming from $1: $(ls "$OUT"/*.records | wc -l) files"; fi
  # shellcheck disable=SC2086
  timeout "${TIMEOUT:-540}" python3 -m patsearch proxy-check --data "$DATA" --gpus all --workers-per-gpu "$WORKERS_PER_GPU" \
    --proxy-device cuda --n "$N" --seeds "$SEEDS" $PROXY $ALSO \
    --reference-epochs "$REF_EPOCHS" --reference-resolution 64 --reference "$REFERENCE" \
    --reference-seeds "$REF_SEEDS" \
    --budget "$BUDGET" --allow-stale-profile --stop-after "$STOP_AFTER" \
    --out "$OUT/proxy-fidelity-cifar10.json"
  stamp "exit $?"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print({k: r[k] for k in ('n','kendall_tau','spearman','seed_std','baselines','size_bias','proxy_mean_seconds','complete','jobs')}); [print(a) for a in r['alternatives']]" "$OUT/proxy-fidelity-cifar10.json"
  stamp done
} 2>&1 | tee "$OUT/log.txt"
