#!/usr/bin/env bash
# Issue 11 on one lent H200, one call (never past DEADLINE seconds, default 560): do generic Inductor options lift
# PATNet's compiled training ratio? The 2026-12-01 profile of the compiled, graphed T2 step (docs/BENCHMARKS.md,
# "third") shows both networks 98% busy in kernels and PATNet's gap in many small reductions (998 Inductor kernels
# averaging 11 us against FasterNet's 299 at 23 us). Each CONFIG runs PATNet-T2 and FasterNet-T2 in one process
# (train_throughput.py --compile --cuda-graph --inductor ...), so both networks get the option:
#   base    no option (the reference of this call);
#   combo   combo_kernels=True: independent kernels fused horizontally into one launch;
#   coop    triton.cooperative_reductions=True: a split reduction's two stages in one kernel;
#   both    the two together;
#   cdt     coordinate_descent_tuning=True at T0 (at T2 its compile did not finish in 330 s), run last.
# Before cdt, the kernel-level profile under the best-ratio option at T2 (PROFILE=0 skips it).
# The device tool's run carries .devcarry/wheels (optuna, fvcore, thop for the GPU machine, copied from
# ../shared/wheels-device); $OUT/inductor.tgz is rewritten after every step, so a call cut short returns what ran.
#   OUT=$OUT bash benchmarks/inductor_options_h200.sh
#   OUT=$OUT CONFIGS="base combo" bash benchmarks/inductor_options_h200.sh
set -uo pipefail
source benchmarks/device_call.sh
begin_call inductor 560
CONFIGS=${CONFIGS:-base combo coop both cdt}
PROFILE=${PROFILE:-1}
options() {
  case $1 in
    base) ;;
    combo) echo "--inductor combo_kernels=True" ;;
    coop) echo "--inductor triton.cooperative_reductions=True" ;;
    both) echo "--inductor combo_kernels=True --inductor triton.cooperative_reductions=True" ;;
    cdt) echo "--inductor coordinate_descent_tuning=True" ;;
    *) echo "unknown config $1 (base combo coop both cdt)" >&2; exit 2 ;;
  esac
}
MIN_LEFT=40
{
  pair() {  # pair CONFIG ARCH...: one train_throughput.py process, both networks under CONFIG's options
    local config=$1; shift
    # shellcheck disable=SC2046 - options are words
    step 150 python3 benchmarks/train_throughput.py --archs "$@" --resolution 224 --batch-size 256 --rounds 1 \
      --steps 20 --compile --cuda-graph $(options "$config") --out "$RES/train_$config.json"
  }
  for config in $CONFIGS; do
    [ "$config" = cdt ] || pair "$config" patnet_t2 fasternet_t2
  done
  best=$(python3 - "$RES" <<'PY'
import json, sys
from pathlib import Path
rows = {}
for p in Path(sys.argv[1]).glob("train_*.json"):
    d = json.loads(p.read_text())
    ratio = next(v for k, v in d.items() if k.startswith("ratio_vs_"))
    rows[p.stem[6:]] = next(v for k, v in ratio.items() if k.startswith("patnet"))
rows.pop("cdt", None)  # another size
print(max(rows, key=rows.get) if rows else "base")
PY
)
  echo "best config at T2: $best"
  [ "$PROFILE" = 1 ] && step 200 python3 benchmarks/train_profile.py --archs patnet_t2 fasternet_t2 --compile \
    --cuda-graph $(options "$best") --out "$RES/profile_$best.json"
  # last: its compile did not finish in 330 s at T2 (2026-12-01), so T0, and whatever time is left
  [[ " $CONFIGS " == *" cdt "* ]] && pair cdt patnet_t0 fasternet_t0
} > "$RES/run.log" 2>&1
pack
python3 - "$RES" <<'PY'
import json, sys
from pathlib import Path
for p in sorted(Path(sys.argv[1]).glob("train_*.json")):
    d = json.loads(p.read_text())
    best = d["best"]
    print(p.stem, d["inductor"], {k: (round(v["step_ms"], 2), round(v["warmup_s"], 0)) for k, v in best.items()},
          {k: round(v, 3) for k, v in next(v for k, v in d.items() if k.startswith("ratio_vs_")).items()})
PY
grep -h "img/s\|best config\|skipped\|Error" "$RES/run.log" | grep -v Warning | tail -30
