#!/usr/bin/env bash
# The scaling table of issue 26: B1-MMoE training and inference rows/s against
# the batch size (64..8192), the number of experts (2..32) and of tasks
# (2..8), each with the compute bound of that shape (bench_b1 "scaling").
# Writes docs/scaling.csv and, with gnuplot, docs/scaling.png; prints the table.
# usage: scripts/bench_scaling.sh   (BUILD, THREADS, REPS as for bench.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BUILD:=build}" "${THREADS:=2}" "${REPS:=3}"
out=${SCALING_OUT:-$("$BUILD/bench/bench_b1" "$THREADS" "$REPS" scaling)}
csv=docs/scaling.csv
{
  echo "# $(date -u +%F) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), threads $THREADS, load $(cut -d' ' -f1-3 /proc/loadavg), $(printf '%s\n' "$out" | grep sgemm_gflops)"
  echo "axis,value,train_rows_s,infer_rows_s,train_bound_rows_s,pct_of_bound"
  printf '%s\n' "$out" | awk '$1 ~ /^(batch|experts|tasks)_[0-9]+_/ {
      split($1, p, "_"); key = p[1] "," p[2]; v[key, p[3] (p[4] ? "_" p[4] : "")] = $2; if (!(key in seen)) {seen[key] = 1; order[++n] = key}}
    END {for (i = 1; i <= n; i++) {k = order[i]; printf "%s,%s,%s,%s,%.0f\n", k, v[k, "train"], v[k, "infer"], v[k, "train_bound"], 100 * v[k, "train"] / v[k, "train_bound"]}}'
} >"$csv"
echo "| axis | value | train rows/s | infer rows/s | % of compute bound |"
echo "|---|---|---|---|---|"
awk -F, 'NR > 2 {printf "| %s | %s | %s | %s | %s%% |\n", $1, $2, $3, $4, $6}' "$csv"
echo "(written to $csv)"
if command -v gnuplot >/dev/null; then
  gnuplot <<GP
set terminal pngcairo size 1200,380 font ",10"
set output "docs/scaling.png"
set datafile separator ","
set multiplot layout 1,3 title "B1-MMoE training, towerlab (threads $THREADS): rows/s and % of the compute bound"
set logscale x 2
set ylabel "train rows/s"
set y2label "% of bound"
set y2range [0:100]
set ytics nomirror
set y2tics
set key top right
do for [ax in "batch experts tasks"] {
  set xlabel ax
  plot "< grep '^".ax.",' $csv" using 2:3 with linespoints title "rows/s", \
       "" using 2:6 axes x1y2 with linespoints title "% of bound"
}
unset multiplot
GP
  echo "(plot: docs/scaling.png)"
fi
