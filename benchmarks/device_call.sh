# Sourced by the one-call GPU scripts (fused_kernels_h200.sh, fused_followup_h200.sh, inductor_options_h200.sh):
# the deadline-bounded step and the packing of results that come back from the device tool. Set before sourcing:
# OUT (the tool's $OUT), PACK (the folder under $OUT that is packed into $OUT/$PACK.tgz), DEADLINE (seconds since
# the script started) and optionally MIN_LEFT (seconds under which a step is skipped, default 30).

pack() {  # rewrite $OUT/$PACK.tgz from $OUT/$PACK, so that a call cut short still returns what ran
  tar czf "$OUT/$PACK.tgz" -C "$OUT" "$PACK"
}

step() {  # step SECONDS COMMAND...: run with at most SECONDS and what is left before DEADLINE, then pack
  local left=$(( DEADLINE - SECONDS ))
  if (( left < ${MIN_LEFT:-30} )); then echo "skipped (deadline): ${*:2}"; return; fi
  timeout $(( $1 < left ? $1 : left )) "${@:2}"
  pack
}
