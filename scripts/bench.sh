#!/usr/bin/env bash
# make bench: towerlab's B1 benchmark and the same models in PyTorch, in one
# run, printed as one table with ratios; then the data-loading and start-up
# measurements. PyTorch (Debian's python3-torch) is optional: without it the
# table shows towerlab alone.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${BUILD:=build}" "${PYTHON:=/usr/bin/python3}" "${THREADS:=2}" "${REPS:=3}"
export OPENBLAS_NUM_THREADS=$THREADS

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores; threads $THREADS"
tl_out=$("$BUILD/bench/bench_b1" "$THREADS" "$REPS") || { echo "bench_b1 failed"; exit 1; }
if "$PYTHON" -c 'import torch' 2>/dev/null; then
  pt_out=$("$PYTHON" scripts/bench_torch.py "$THREADS" "$REPS")
  pt_version=$("$PYTHON" -c 'import torch; print(torch.__version__)')
else
  pt_out=""
  echo "PyTorch not found ($PYTHON -c 'import torch' failed): install python3-torch to compare"
fi
get() { printf '%s\n' "$1" | awk -v k="$2" '$1 == k {print $2}'; }

gf=$(get "$tl_out" sgemm_gflops)
echo "sgemm: $gf GFLOP/s ([1024x144]x[144x2048])"
echo
printf '| B1 model | towerlab train/s | PyTorch %s train/s | ratio | %% of compute bound | towerlab infer/s | PyTorch infer/s | ratio | towerlab peak RSS | PyTorch peak RSS |\n' "${pt_version:-}"
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for m in shared_bottom mmoe ple; do
  tt=$(get "$tl_out" ${m}_train); ti=$(get "$tl_out" ${m}_infer); tb=$(get "$tl_out" ${m}_train_bound)
  pt=$(get "$pt_out" ${m}_train); pi=$(get "$pt_out" ${m}_infer)
  tm=$(get "$tl_out" ${m}_rss_mb); pm=$(get "$pt_out" ${m}_rss_mb)
  rt=$( [ -n "$pt" ] && awk -v a="$tt" -v b="$pt" 'BEGIN{printf "%.2fx", a/b}' || echo "-")
  ri=$( [ -n "$pi" ] && awk -v a="$ti" -v b="$pi" 'BEGIN{printf "%.2fx", a/b}' || echo "-")
  fb=$(awk -v a="$tt" -v b="$tb" 'BEGIN{printf "%.0f%%", 100*a/b}')
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s MB | %s |\n' "$m" "$tt" "${pt:--}" "$rt" "$fb" "$ti" \
    "${pi:--}" "$ri" "$tm" "$( [ -n "$pm" ] && echo "$pm MB" || echo - )"
done
echo "peak RSS: ru_maxrss of one process per model (warm-up, timed training and inference)"
echo

if [ -x "$BUILD/bench/bench_data" ]; then
  echo "census load:"
  # exit status 2 means a target was missed; the numbers are printed either way
  "$BUILD/bench/bench_data" data/census_income_kdd; [ $? -le 2 ] || echo "bench_data failed"
fi
bin=./towerlab; [ "$BUILD" = build ] || bin="$BUILD/towerlab"
if [ -x "$bin" ]; then
  start=$(date +%s%N); for _ in 1 2 3 4 5 6 7 8 9 10; do "$bin" -e '' </dev/null >/dev/null; done
  echo "start-up (towerlab -e '', mean of 10): $(( ($(date +%s%N) - start) / 10000000 )) ms"
fi
