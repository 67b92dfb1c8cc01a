# Sourced by the one-call GPU scripts (fused_kernels_h200.sh, fused_followup_h200.sh, inductor_options_h200.sh,
# bounds_h200.sh, autotune_h200.sh): the call's folders and settings, the carried wheels and data set up, the
# deadline-bounded step, and the packing of results that come back from the device tool. The functions read, when
# called: OUT (the tool's $OUT), PACK (the folder under $OUT that is packed into $OUT/$PACK.tgz), DEADLINE (seconds
# since the script started), optionally MIN_LEFT (seconds under which a step is skipped, default 30), and PARTS
# (want's words).

begin_call() {  # begin_call NAME DEADLINE: PACK=NAME, RES=$OUT/NAME (OUT defaults to /tmp/NAME_out), DEADLINE
  # unless already set, unbuffered Python on this tree, the results folder made and the wheels installed
  PACK=$1
  OUT=${OUT:-/tmp/${PACK}_out}
  RES=$OUT/$PACK
  DEADLINE=${DEADLINE:-$2}
  export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
  mkdir -p "$RES"
  install_wheels
}

install_wheels() {  # what the GPU machine lacks (it has no package registry), from the carried .devcarry/wheels
  python3 -m pip install -q --no-index --find-links .devcarry/wheels optuna fvcore thop 2>&1 | tail -2
}

want() {  # want PART: is PART one of the words of $PARTS?
  [[ " $PARTS " == *" $1 "* ]]
}

unpack_cifar10() {  # the carried .devcarry/cifar10-images.tar.gz into /tmp/data, unless DATA already holds the set
  DATA=${DATA:-/tmp/data/cifar10}
  [ -d "$DATA" ] || { mkdir -p /tmp/data && tar xzf .devcarry/cifar10-images.tar.gz -C /tmp/data; }
}

pack() {  # rewrite $OUT/$PACK.tgz from $OUT/$PACK, so that a call cut short still returns what ran
  tar czf "$OUT/$PACK.tgz" -C "$OUT" "$PACK"
}

step() {  # step SECONDS COMMAND...: run with at most SECONDS and what is left before DEADLINE, then pack
  local left=$(( DEADLINE - SECONDS ))
  if (( left < ${MIN_LEFT:-30} )); then echo "skipped (deadline): ${*:2}"; return; fi
  timeout $(( $1 < left ? $1 : left )) "${@:2}"
  pack
}
