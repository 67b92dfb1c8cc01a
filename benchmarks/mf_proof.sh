#!/usr/bin/env bash
# The multi-fidelity proof on CIFAR-10: does the network the search returns beat the hand designs at the length
# users train? Each phase fits one device call and resumes across calls (GPU time comes in stretches).
#
#   OUT=$OUT bash benchmarks/mf_proof.sh search      # the search (rungs, W workers per GPU), stopped cleanly at
#                                                    # $DEADLINE s and packed as $OUT/runs.tgz; RUNS_IN=... resumes
#   OUT=$OUT NETS="mf=runs/mf-cpu/best.yaml patnet_t1=patnet_t1" bash benchmarks/mf_proof.sh reference
#                                                    # each network $REF_EPOCHS epochs on the full training split,
#                                                    # seeds $SEEDS side by side, top-1 on the test split
#                                                    # (name=arch@0,1 gives that network its own seeds)
#   OUT=$OUT bash benchmarks/mf_proof.sh proof       # the search, then (once its top rung is complete and at least
#                                                    # $REF_MIN_LEFT s remain) the whole proof as one queue: the
#                                                    # winner and $REF_BASELINES on $SEEDS, the top rung's ranks
#                                                    # 2..$TOP on $RANK_SEEDS (the regret check); repeat the call until
#                                                    # reference.txt shows $REF_EPOCHS epochs everywhere;
#                                                    # $REF_LATER's checks train after all of those
#
#   FLOOR_OF=fasternet_t2 ... proof                  # the GPU target: at least as fast as that network on the
#                                                    # table; then it and the proof's networks are measured here
#   SPACE=spaces/patnet-wide.yaml ... table          # that space's table on this GPU (patsearch profile, resumed
#                                                    # while warm) in $TABLES, packed as $OUT/tables.tgz; a
#                                                    # search of the space (FLOOR_OF, same SPACE) then uses it
#
# Needs .devcarry/wheels and .devcarry/cifar10-images.tar.gz (or DATA= an ImageFolder named cifar10).
# Capacity: side-by-side trainings share a saturated GPU (figures: docs/BENCHMARKS.md, Search), so references run
# $REF_PARALLEL at a time and the rest wait for the next call; a cut training resumes from its checkpoint only while
# the device stays warm. By default (MPS=1) CUDA MPS runs the processes' kernels concurrently rather than
# time-slicing them (its gain: docs/BENCHMARKS.md, Search); MPS=0 turns it off.
set -uo pipefail
set -m  # job control: a background job keeps SIGINT (bash ignores it in async jobs otherwise) in its own group
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
PHASE=${1:?search, reference, proof or table}
START=$(date +%s)
OUT=${OUT:-/tmp/mf_proof}
DATA=${DATA:-.devcarry/cifar10}
DEADLINE=${DEADLINE:-540}  # seconds after start: the search is interrupted (its trials queued again) and packed
STUDY=${STUDY:-mf-cpu}
BUDGET=${BUDGET:-epyc=patnet_t1}  # PATNet-T1's predicted latency on the space's EPYC table (a host we can measure)
CONSTRAINT=${CONSTRAINT:---latency-budget $BUDGET}
# FLOOR_OF=fasternet_t2: the constraint is "at least as fast as that network" on $FLOOR_TABLE (a throughput floor
# on a GPU, a latency budget on a CPU), both sides predicted by the one table; the proof then measures it and its
# networks side by side (patsearch bench --device $MEASURE_DEVICE, deployment form). By default the GPU found here
# picks them: an H200 its graphs table, an H100 its table (each bench protocol is its table's).
FLOOR_OF=${FLOOR_OF:-}
FLOOR_DEVICE=${FLOOR_DEVICE:-auto}
FLOOR_TABLE=${FLOOR_TABLE:-}
# where the proof's networks are measured: by default the GPU found here, which may differ from the table's device
# (a study constrained by the H100 table, resumed and measured on an H200: hardware its table never saw)
MEASURE_DEVICE=${MEASURE_DEVICE:-auto}
SPACE=${SPACE:-spaces/patnet-wide.yaml}  # the space searched (and profiled by the table phase): the default
# where the GPU tables of $SPACE are: the shipped ones (profiles/<space>/, or profiles/ for the first space); where
# there is none, the table phase's output in $TABLES (ignored, so it stays on a warm device; unpacked here, carry it)
SPACE_SUB=$(python3 -c "import sys; from patsearch.space import SpaceError, load_space as l
from patsearch.profiler.table import space_folder
try: space = l(sys.argv[1])
except SpaceError as e: sys.exit(f'SPACE={sys.argv[1]}: {e}')
print(space_folder(space) or '')" "$SPACE") || exit 2  # empty: tables at the top of a profile folder
TABLES_GIVEN=${TABLES:+1}
if [ -z "$SPACE_SUB" ]; then TABLES=${TABLES:-profiles}; else TABLES=${TABLES:-runs/tables/$SPACE_SUB}; fi
TABLE_VALIDATE=${TABLE_VALIDATE:-60}  # held-out networks the table phase measures end to end
TRIALS=${TRIALS:-60}
RUNGS=${RUNGS:-5,15,45}
WORKERS_PER_GPU=${WORKERS_PER_GPU:-6}
GPUS=${GPUS---gpus all --workers-per-gpu $WORKERS_PER_GPU}  # GPUS="" for one worker (a CPU dry run)
BASELINES=${BASELINES:-patnet_t1,patnet_t0}
PROXY=${PROXY:---proxy-resolution 64 --proxy-holdout 5000}
PROXY_DEVICE=${PROXY_DEVICE:-cuda}
EXTRA=${EXTRA:-}
REF_EPOCHS=${REF_EPOCHS:-100}
REF_FLAGS=${REF_FLAGS:---recipe proxy --resolution 64 --batch-size 512 --lr 0.002 --cuda-graph}
# REF_FLAGS_<name> (the name a network has in $NETS or $REF_BASELINES, other characters as _): that network's own
# training flags, e.g. a sensitivity check of one baseline under another recipe beside the shared one
SEEDS=${SEEDS:-0 1 2}
NETS=${NETS:-}
TOP=${TOP:-3}
RANK_SEEDS=${RANK_SEEDS:-0}  # the seeds of ranks 2..$TOP (one is enough for the regret check; "0 1 2" when it is close)
REF_BASELINES=${REF_BASELINES:-patnet_t1=patnet_t1}  # what the proof phase trains beside the winner, on $SEEDS
# REF_LATER: sensitivity checks in the same form (name=arch@seeds, each with its REF_FLAGS_<name>), queued after every
# training of the proof itself, so a call cut short spends its time on the proof first
REF_LATER=${REF_LATER:-}
BASELINE=${BASELINE:-patnet_t1}  # the label reference.txt compares the others with
REF_PARALLEL=${REF_PARALLEL:-4}  # trainings side by side per GPU
REF_MIN_LEFT=${REF_MIN_LEFT:-120}  # a cut training resumes only while the device stays warm (checkpoints stay there)
# REF_FINISH=1 (a session's last call): start a training only while the time left holds its epochs still to train at
# the slowest pace a training finished in this call kept (a resumed one counts the epochs it trained here), so none
# is cut and lost; the call then ends early, and the device time goes unspent
REF_FINISH=${REF_FINISH:-0}
# Inside the repository (git-ignored), not under $OUT: the device keeps ignored files between calls while it stays
# warm, so a training cut by the deadline resumes from its checkpoint in the next call (checkpoints are too large to
# come back); only $RUNS's results come back, packed.
RUNS=${RUNS:-runs/mf-proof}
LOGS=$RUNS/logs  # inside the pack: the device returns at most 8 files from $OUT
mkdir -p "$OUT" "$RUNS" "$LOGS"
stamp() { echo "[$(date -u +%H:%M:%S) +$(( $(date +%s) - START ))s] $*"; }
left() { echo $(( DEADLINE - ($(date +%s) - START) )); }
epochs_done() { python3 -c "import json, sys; print(len(json.load(open(sys.argv[1])).get('history') or []))" "$1" \
  2>/dev/null || echo 0; }

setup() {
  if [ -d .devcarry/wheels ]; then
    python3 -m pip install -q --no-index --find-links .devcarry/wheels optuna fvcore thop torch-tb-profiler 2>&1 | tail -2
  fi
  if [ ! -d "$DATA" ] && [ -f .devcarry/cifar10-images.tar.gz ]; then
    tar xzf .devcarry/cifar10-images.tar.gz -C .devcarry
  fi
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
  # A warm device still holds the last call's state (newer than any pack, with checkpoints): keep it.
  if [ -n "${RUNS_IN:-}" ] && [ -f "$RUNS_IN" ]; then
    if [ -z "$(ls -A "$RUNS" | grep -vx logs)" ]; then tar xzf "$RUNS_IN" -C "$RUNS"; stamp "resumed from $RUNS_IN"
    else stamp "kept the state already in $RUNS (a warm device); $RUNS_IN not unpacked"; fi
  fi
  stamp "setup done"
}

mps_on() {  # (default) the trainings side by side run their kernels concurrently instead of time-slicing the GPU;
  # a user-space daemon, stopped on exit, that leaves the GPU's settings as they are
  [ "${MPS:-1}" = 1 ] && [ -z "${MPS_ON:-}" ] || return 0
  if ! command -v nvidia-cuda-mps-control >/dev/null; then
    if command -v nvidia-smi >/dev/null; then stamp "no nvidia-cuda-mps-control here: time-slicing"; fi
    return 0
  fi
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  nvidia-cuda-mps-control -d && trap mps_off EXIT && MPS_ON=1 && stamp "MPS on"
  # a daemon that cannot serve this GPU would fail every training of the call: check with one CUDA op first
  if ! python3 -c "import torch; torch.ones(1, device='cuda').sum().item()" >/dev/null 2>&1; then
    mps_off; stamp "MPS could not serve a CUDA op: time-slicing"
  fi
}

mps_off() {  # before a measurement: tables and floors are timed as a user times them, one process on the GPU
  [ -n "${MPS_ON:-}" ] || return 0
  echo quit | nvidia-cuda-mps-control; trap - EXIT
  unset MPS_ON CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
  stamp "MPS off"
}

pack() {  # the studies and results, without the proxy tensor caches (large, rebuilt in seconds), checkpoints (and
  # a write cut by a kill), and the search's re-trainings under way (they resume only where their checkpoints are)
  tar czf "$OUT/runs.tgz" -C "$RUNS" --exclude=.proxy-data --exclude='*.pt' --exclude='*.tmp' \
    --exclude=retrainings . && stamp "packed $(du -h "$OUT/runs.tgz" | cut -f1)"
}

top() {  # once the search is complete: its ranks 1..$TOP as architecture files $RUNS/$STUDY/rank<k>.yaml; prints
  python3 - "$RUNS" "$STUDY" "$TOP" "$RUNGS" <<'EOF'  # how many it wrote
import sys
import optuna
from patsearch.search import best_yaml, results
runs, name, top, last_rung = sys.argv[1], sys.argv[2], int(sys.argv[3]), len(sys.argv[4].split(",")) - 1
optuna.logging.set_verbosity(optuna.logging.WARNING)
try:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{runs}/{name}/study.db")
except KeyError:  # not started yet
    print(0)
    sys.exit()
rows = results.rows(study)
ranked = [r for r in results.finished(rows) if not r.baseline and r.duplicate_of is None and r.top_rung == last_rung]
busy = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("RUNNING", "WAITING")]
complete = bool(ranked) and not busy
for k, row in enumerate(ranked[:top] if complete else [], 1):
    best_yaml.write_best_yaml(f"{runs}/{name}/rank{k}.yaml", row, study_name=name,
                            constraints=results.constraints_of(study))
    print(f"rank {k}: trial {row.number} rung {row.top_rung} scores {row.scores}", file=sys.stderr)
print(min(top, len(ranked)) if complete else 0)
EOF
}

gpu_table() {  # $1: a table's file name -> its path: $SPACE's shipped table when there is one (unless TABLES is
  # set), else $TABLES's (the table phase's output)
  local shipped="profiles/${SPACE_SUB:+$SPACE_SUB/}$1"
  if [ -z "$TABLES_GIVEN" ] && [ "$PHASE" != table ] && [ -f "$shipped" ]; then echo "$shipped"; else echo "$TABLES/$1"; fi
}

resolve_device() {  # FLOOR_DEVICE=auto: the GPU found here, and (unless set) its table of $SPACE
  local here
  case "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)" in
    *H200*) here=h200 ;;
    *H100*) here=h100 ;;
    *) here= ;;
  esac
  if [ "$FLOOR_DEVICE" = auto ]; then
    case "$here" in
      h200) FLOOR_DEVICE=h200; FLOOR_TABLE=${FLOOR_TABLE:-$(gpu_table h200-b256-bfloat16-cl-graphs-fused.json)} ;;
      h100) FLOOR_DEVICE=h100; FLOOR_TABLE=${FLOOR_TABLE:-$(gpu_table h100-b256-bfloat16-cl-fused.json)} ;;
      *) stamp "FLOOR_DEVICE=auto knows H200 and H100 only: set FLOOR_DEVICE and FLOOR_TABLE"; return 1 ;;
    esac
  fi
  [ -n "$FLOOR_TABLE" ] || { stamp "set FLOOR_TABLE, the table of $FLOOR_DEVICE the constraint applies to"; return 1; }
  [ "$MEASURE_DEVICE" = auto ] && MEASURE_DEVICE=${here:-$FLOOR_DEVICE}
  BENCH_JSON="$RUNS/bench-$MEASURE_DEVICE.json"  # measure_nets's measurements on this device
}

table() {  # $SPACE's table on $FLOOR_DEVICE at $FLOOR_TABLE; a cut build or validation resumes in the next call
  resolve_device || return 1
  mkdir -p "$(dirname "$FLOOR_TABLE")"
  timeout -s INT "$(left)" python3 -m patsearch profile --device "$FLOOR_DEVICE" --space "$SPACE" \
    --validate "$TABLE_VALIDATE" --out "$FLOOR_TABLE" > "$LOGS/table.log" 2>&1
  stamp "profile exit $? (124: cut at the deadline; the next call resumes it)"
  tail -4 "$LOGS/table.log"
  tar czf "$OUT/tables.tgz" -C "$(dirname "$FLOOR_TABLE")" . && stamp "packed $(du -h "$OUT/tables.tgz" | cut -f1)"
  pack
}

floor_constraint() {  # CONSTRAINT: at least as fast as $FLOOR_OF, both predicted by $FLOOR_TABLE (so its bias
  # cancels); measure_nets then measures them side by side on this machine
  resolve_device || return 1
  local metric
  metric=$(python3 -c "import sys; from patsearch.profiler import load_profile
print(load_profile(sys.argv[1], check=False).metric)" "$FLOOR_TABLE") || { stamp "no table at $FLOOR_TABLE"; return 1; }
  if [ "$metric" = throughput ]; then CONSTRAINT="--min-throughput $FLOOR_TABLE=$FLOOR_OF"
  else CONSTRAINT="--latency-budget $FLOOR_TABLE=$FLOOR_OF"; fi
  stamp "constraint: $CONSTRAINT"
}

measure_nets() {  # $FLOOR_OF and the proof's networks ($NETS) measured side by side on $MEASURE_DEVICE, once per
  # $RUNS, outside MPS; the study's best.yaml gets its measurement recorded next to its prediction
  local models=$FLOOR_OF job arch
  [ -f "$BENCH_JSON" ] && return 0
  for job in $NETS; do arch=${job#*=}; [[ ,$models, == *,${arch%@*},* ]] || models+=",${arch%@*}"; done
  mps_off
  if python3 -m patsearch bench --device "$MEASURE_DEVICE" --models "$models" --forms fused --group 8 --format json \
      --out "$BENCH_JSON" > "$LOGS/bench.log" 2>&1; then stamp "measured the proof's networks: $BENCH_JSON"
  else stamp "measuring the proof's networks failed: $LOGS/bench.log"; fi
  if [ -f "$RUNS/$STUDY/best.yaml" ]; then
    python3 -m patsearch bench --device "$MEASURE_DEVICE" --arch "$RUNS/$STUDY/best.yaml" --forms fused \
      >> "$LOGS/bench.log" 2>&1 || stamp "measuring best.yaml failed: $LOGS/bench.log"
  fi
}

search() {
  if [ -n "$FLOOR_OF" ]; then floor_constraint || return 1; fi
  mps_on
  # Its own process group (set -m), so that one SIGINT reaches the worker processes too: each queues its trial
  # again.
  python3 -m patsearch search $CONSTRAINT --space "$SPACE" --allow-stale-profile --data "$DATA" $PROXY \
    --proxy-device "$PROXY_DEVICE" $GPUS --rungs "$RUNGS" \
    --trials "$TRIALS" --sampler tpe --seed 1 --pruner none --study-name "$STUDY" --runs-dir "$RUNS" \
    --baselines "$BASELINES" --no-plots $EXTRA > "$LOGS/search-$STUDY.log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null && [ "$(left)" -gt 0 ]; do sleep 2; done
  if kill -0 "$pid" 2>/dev/null; then
    stamp "deadline: interrupting the search (its running trials are queued again)"
    kill -INT -- "-$pid" 2>/dev/null
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$pid" 2>/dev/null
  fi
  wait "$pid"; stamp "search exit $?"
  python3 -m patsearch search --show "$STUDY" --runs-dir "$RUNS" > "$OUT/summary-$STUDY.txt" 2>&1
  tail -40 "$OUT/summary-$STUDY.txt"
  pack
}

enqueue() {  # $1: networks (name=arch[@seeds]) -> the caller's queue, without those trained to $REF_EPOCHS already
  local job name arch seeds seed k=0 more=1 seed_list=()
  while [ $more = 1 ]; do  # the k-th seed of every network, then the (k+1)-th: what finishes first is paired
    more=0
    for job in $1; do
      name=${job%%=*} arch=${job#*=} seeds=$SEEDS
      if [[ $arch == *@* ]]; then seeds=${arch##*@}; seeds=${seeds//,/ }; arch=${arch%@*}; fi
      read -r -a seed_list <<< "$seeds"
      [ $k -lt ${#seed_list[@]} ] || continue
      more=1 seed=${seed_list[$k]}
      [ "$(epochs_done "$RUNS/ref/$name-s$seed/metrics.json")" -ge "$REF_EPOCHS" ] || queue+=("$name|$arch|$seed")
    done
    k=$((k + 1))
  done
}

reference() {
  # A queue: at most $REF_PARALLEL trainings at once per GPU (side by side they share a saturated GPU, so starting
  # more only cuts them all at the deadline); the ones not started wait for the next call.
  local n_gpus i=0 queue=() pids=() job name arch seed flags_var
  mps_on
  n_gpus=$(python3 -c "import torch; print(max(1, torch.cuda.device_count()))")
  enqueue "$NETS"
  enqueue "$REF_LATER"
  stamp "reference: ${#queue[@]} trainings of $REF_EPOCHS epochs, $REF_PARALLEL at a time per GPU"
  local -A since=() out_of=() from_epoch=()
  local per_epoch_ms=0 closed=0 k pick done_epochs trained ms
  while [ "$(left)" -gt 0 ]; do
    local alive=() p
    for p in "${pids[@]}"; do
      if kill -0 "$p" 2>/dev/null; then alive+=("$p"); continue; fi
      # its pace, epochs trained in this call over seconds taken (side by side, the slowest pace seen counts)
      trained=$(( $(epochs_done "${out_of[$p]}/metrics.json") - from_epoch[$p] ))
      if [ "$trained" -gt 0 ]; then
        ms=$(( ($(date +%s) - since[$p]) * 1000 / trained ))
        [ "$ms" -gt "$per_epoch_ms" ] && per_epoch_ms=$ms
      fi
    done
    pids=("${alive[@]}")
    while [ $closed = 0 ] && [ ${#queue[@]} -gt 0 ] && [ ${#pids[@]} -lt $(( REF_PARALLEL * n_gpus )) ]; do
      pick=-1
      for k in "${!queue[@]}"; do  # REF_FINISH: the first queued training whose epochs left fit the time left
        IFS='|' read -r name arch seed <<< "${queue[$k]}"
        done_epochs=0  # a folder without its checkpoint (unpacked from a pack) trains from the start
        [ -f "$RUNS/ref/$name-s$seed/latest.pt" ] && done_epochs=$(epochs_done "$RUNS/ref/$name-s$seed/metrics.json")
        if [ "$REF_FINISH" != 1 ] || [ "$per_epoch_ms" -eq 0 ] \
            || [ $(( $(left) * 1000 )) -ge $(( (REF_EPOCHS - done_epochs) * per_epoch_ms )) ]; then pick=$k; break; fi
      done
      if [ "$pick" -lt 0 ]; then
        stamp "REF_FINISH: $(left) s left, at $(( per_epoch_ms / 1000 )) s an epoch none of the ${#queue[@]} queued fits"
        closed=1
        break
      fi
      queue=("${queue[@]:0:$pick}" "${queue[@]:$((pick + 1))}")
      flags_var=REF_FLAGS_${name//[^A-Za-z0-9_]/_}
      CUDA_VISIBLE_DEVICES=$(( i % n_gpus )) python3 -m patsearch train --arch "$arch" --data "$DATA" \
        --epochs "$REF_EPOCHS" ${!flags_var:-$REF_FLAGS} --seed "$seed" --device "$PROXY_DEVICE" \
        --out "$RUNS/ref/$name-s$seed" --resume auto >> "$LOGS/ref-$name-s$seed.log" 2>&1 &
      pids+=($!)
      since[$!]=$(date +%s) out_of[$!]=$RUNS/ref/$name-s$seed from_epoch[$!]=$done_epochs
      i=$((i + 1))
      stamp "started $name seed $seed$([ "$done_epochs" -gt 0 ] && echo " (from epoch $done_epochs)")"
    done
    [ ${#pids[@]} -eq 0 ] && break
    sleep 2
  done
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null && stamp "deadline: stopped training $p"; done
  [ ${#queue[@]} -gt 0 ] && stamp "not started (next call): ${queue[*]}"
  wait
  # the proof's table as far as it goes (benchmarks/proof_table.py: the one reader of the references): rung scores
  # when the study is here, each seed's top-1 with its epochs, and the difference to $BASELINE
  local table=(--runs "$RUNS" --epochs "$REF_EPOCHS") labels=" "
  for job in $NETS $REF_LATER; do arch=${job#*=}; table+=(--net "${job%%=*}=${arch%@*}"); labels+="${job%%=*} "; done
  [[ $labels == *" $BASELINE "* ]] && table+=(--baseline "$BASELINE")
  [ -n "${BENCH_JSON:-}" ] && [ -f "$BENCH_JSON" ] && table+=(--bench "$BENCH_JSON")
  if [ -f "$RUNS/$STUDY/study.db" ]; then
    table+=(--study "$STUDY"); [ "$RUNGS" != none ] && table+=(--rung-epochs "$RUNGS")
  fi
  python3 benchmarks/proof_table.py "${table[@]}" | tee "$OUT/reference.txt"
  pack
}

setup
case "$PHASE" in
  search) search ;;
  proof)
    mkdir -p "$RUNS/$STUDY"
    n=$(top); n=${n:-0}
    if [ "$n" -lt 1 ]; then search; n=$(top); n=${n:-0}; fi  # a complete study is not loaded by a search again
    if [ "$n" -ge 1 ] && [ "$(left)" -ge "$REF_MIN_LEFT" ]; then
      NETS="mf=$RUNS/$STUDY/rank1.yaml $REF_BASELINES"
      rank_seeds=$(echo $RANK_SEEDS | tr ' ' ,)
      NETS+=$(for k in $(seq 2 "$n"); do
        printf ' rank%s=%s/%s/rank%s.yaml@%s' "$k" "$RUNS" "$STUDY" "$k" "$rank_seeds"; done)
      stamp "references and regret check: $NETS${REF_LATER:+; then $REF_LATER}"
      if [ -n "$FLOOR_OF" ]; then resolve_device && measure_nets; fi
      reference
    else
      stamp "no references yet: $n ranked networks, $(left) s left"
    fi ;;
  reference)
    if [ -n "$FLOOR_OF" ]; then resolve_device; fi  # the table shows the measurements when there are any
    reference ;;
  table) table ;;
  *) echo "unknown phase $PHASE (search, reference, proof or table)"; exit 2 ;;
esac
stamp done
