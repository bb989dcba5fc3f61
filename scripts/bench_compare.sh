#!/usr/bin/env bash
# Two builds of the engine, same benchmark, one run: bench_b1 of build A and of
# build B alternate model by model over ROUNDS rounds (a slow minute hits both);
# prints each model's training and inference rows/s for both and the median of
# the per-round ratios B/A. For before/after comparisons of a change, e.g.
#   git worktree add /tmp/old <commit> && make -C /tmp/old lib
#   cc ... -o /tmp/bench_old scripts/bench_b1.c /tmp/old/engine/libtowerlab.a ...
#   scripts/bench_compare.sh /tmp/bench_old build/bench/bench_b1
# (compile this tree's scripts/bench_b1.c against both libraries, so that the
# benchmark itself is the same).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BENCH_A BENCH_B  (THREADS, REPS, ROUNDS from the environment)" >&2; exit 2; }
: "${THREADS:=2}" "${REPS:=3}" "${ROUNDS:=4}"
raw=$(mktemp); trap 'rm -f "$raw"' EXIT
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); threads $THREADS, $ROUNDS rounds of $REPS epochs"
for r in $(seq 1 "$ROUNDS"); do
  for m in shared_bottom mmoe ple; do
    for side in A B; do
      bin=$1; [ "$side" = B ] && bin=$2
      "$bin" "$THREADS" "$REPS" "$m" | sed "s/^/$r $side /" >>"$raw"
    done
  done
done
median() { sort -g | awk '{v[++n] = $1} END {if (!n) exit; m = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2; printf(m >= 1000 ? "%.0f" : "%.3f", m)}'; }
echo "| model | A train/s | B train/s | B/A train (min-max) | A infer/s | B infer/s | B/A infer (min-max) |"
echo "|---|---|---|---|---|---|---|"
for m in shared_bottom mmoe ple; do
  row="| $m"
  for k in train infer; do
    a=$(awk -v k="${m}_$k" '$2 == "A" && $3 == k {print $4}' "$raw" | median)
    b=$(awk -v k="${m}_$k" '$2 == "B" && $3 == k {print $4}' "$raw" | median)
    rs=$(awk -v k="${m}_$k" '$3 == k {x[$1 " " $2] = $4; r[$1] = 1} END {for (i in r) print x[i " B"] / x[i " A"]}' "$raw")
    lo=$(printf '%s\n' "$rs" | sort -g | head -1); hi=$(printf '%s\n' "$rs" | sort -g | tail -1)
    row="$row | $a | $b | $(printf '%s\n' "$rs" | median) ($(printf '%.2f-%.2f' "$lo" "$hi"))"
  done
  echo "$row |"
done
