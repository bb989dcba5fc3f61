#!/usr/bin/env bash
# scripts/compare_backbones.lua runs end to end in --quick mode: every backbone and the
# single-task baselines train, and the table has each one's metrics, Δm and time per step.
. "$(dirname "$0")/lib.sh"

out="$TMPD/cmp"
if "$BIN" scripts/compare_backbones.lua --quick --out "$out" >"$TMPD/cmp.log" 2>&1 &&
   [ "$(grep -c ',ok,' "${out}_census.csv")" -eq 20 ] &&
   [ "$(grep -cE '^\| (shared_bottom|omoe|mmoe|ple|stem|adatt|cross_stitch|dselect_k) \| 0\.[0-9]+ ± [0-9.]+ \| 0\.[0-9]+ ± [0-9.]+ \| -?[0-9.]+ ± [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| 2 \|' "$out.md")" -eq 8 ] &&
   [ "$(grep -cE '^\| single_(income|never_married) \| 0\.' "$out.md")" -eq 2 ] &&
   grep -q '^| shared_bottom | .* | 1\.00 | 2 |' "$out.md"; then
  pass compare_backbones_quick
else
  fail compare_backbones_quick "$(tail -5 "$TMPD/cmp.log"; head -16 "$out.md" 2>/dev/null)"
fi

finish
