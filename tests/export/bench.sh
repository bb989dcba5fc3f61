#!/usr/bin/env bash
# bench.sh — serving latency of exported models: the C file (cc -O2
# -march=native) against onnxruntime-node (one thread) on the same model:
# single-row p50/p99 and batch-1024 rows/s, for B1-sized Shared-Bottom, MMoE
# and PLE (tests/export/bench.lua). Prints a markdown table.
#   bash tests/export/bench.sh [towerlab binary]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-./towerlab}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$BIN" tests/export/bench.lua "$dir" >/dev/null
have_ort=0
(cd tests/export && node -e "require('onnxruntime-node')" 2>/dev/null) && have_ort=1
echo "| model | C p50 µs | C p99 µs | C rows/s (batch 1024) | onnxruntime p50 µs | onnxruntime p99 µs | onnxruntime rows/s |"
echo "|---|---|---|---|---|---|---|"
for m in shared_bottom mmoe ple; do
  ${CC:-cc} -std=c99 -O2 -march=native -DPREDICT=${m}_predict tests/export/c_bench.c "$dir/$m.c" -o "$dir/$m.bench" -lm
  c=$("$dir/$m.bench" < "$dir/rows.in")
  o='{"p50_us":"-","p99_us":"-","rows_per_s":"(onnxruntime-node not installed)"}'
  [ $have_ort = 1 ] && o=$(cd tests/export && node bench.js "$dir/$m.onnx" "$dir/$m.vocab.json")
  get() { echo "$1" | sed -E "s/.*\"$2\": ?\"?([^,}\"]*).*/\1/"; }
  echo "| $m | $(get "$c" p50_us) | $(get "$c" p99_us) | $(get "$c" rows_per_s) | $(get "$o" p50_us) | $(get "$o" p99_us) | $(get "$o" rows_per_s) |"
done
