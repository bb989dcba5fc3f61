#!/usr/bin/env bash
# The paper reproduction scripts run end to end in --quick mode and write their
# CSV and Markdown tables (the full runs are in the README).
. "$(dirname "$0")/lib.sh"

out="$TMPD/dml"
if "$BIN" scripts/reproduce_dml.lua --quick --seeds 2 --out "$out" >"$TMPD/dml.log" 2>&1 &&
   [ "$(grep -c '^| mmoe | ' "$out.md")" -eq 5 ] && grep -q '^| mmoe | dml_nostop | 0\.[0-9]' "$out.md" &&
   [ "$(grep -c ',ok,' "$out.csv")" -eq 10 ]; then
  pass reproduce_dml_quick
else
  fail reproduce_dml_quick "$(tail -5 "$TMPD/dml.log"; cat "$out.md" 2>/dev/null | head -12)"
fi

out="$TMPD/cd"
if "$BIN" scripts/reproduce_crossdistil.lua --quick --seeds 2 --out "$out" >"$TMPD/cd.log" 2>&1 &&
   [ "$(grep -c '^| mmoe | ' "$out.md")" -eq 3 ] && grep -q '^| mmoe | full | 0\.[0-9]' "$out.md" &&
   grep -q '^| mmoe | naive_kd | 0\.[0-9]* ± [0-9.]* | [-+]' "$out.md" && [ "$(grep -c ',ok,' "$out.csv")" -eq 6 ]; then
  pass reproduce_crossdistil_quick
else
  fail reproduce_crossdistil_quick "$(tail -5 "$TMPD/cd.log"; cat "$out.md" 2>/dev/null | head -12)"
fi

# the synthetic study: tuning rows, both nestings, teachers separate and shared, the plot
out="$TMPD/syn"
if "$BIN" scripts/crossdistil_synthetic.lua --quick --seeds 2 --out "$out" >"$TMPD/syn.log" 2>&1 &&
   [ "$(grep -c '^| 0\.6 | full@shared | 0\.[0-9]' "$out.md")" -eq 2 ] && [ "$(grep -c ',ok,' "$out.csv")" -eq 32 ] &&
   [ "$(grep -c ',ok,' "${out}_tune.csv")" -eq 2 ] && grep -q '<svg' "$out.svg"; then
  pass crossdistil_synthetic_quick
else
  fail crossdistil_synthetic_quick "$(tail -5 "$TMPD/syn.log"; head -12 "$out.md" 2>/dev/null)"
fi

finish
