#!/usr/bin/env bash
# make bench: towerlab's B1 benchmark and the same models in PyTorch, in one
# run, printed as one table with ratios; then the data-loading and start-up
# measurements. PyTorch (Debian's python3-torch) is optional: without it the
# table shows towerlab alone.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${BUILD:=build}" "${PYTHON:=/usr/bin/python3}" "${THREADS:=2}" "${REPS:=3}" "${ROUNDS:=5}"
export OPENBLAS_NUM_THREADS=$THREADS

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores; threads $THREADS"
# Machines here are shared and their speed drifts by tens of percent within
# minutes, so the two engines alternate, model by model: ROUNDS rounds of
# (towerlab, PyTorch) for each model, each a median of REPS epochs. Every
# number shown is the median over rounds; each ratio is the median of the
# per-round ratios, so a slow minute hits both sides of a ratio rather than
# one.
raw=$(mktemp); trap 'rm -f "$raw"' EXIT
have_torch=0
if "$PYTHON" -c 'import torch' 2>/dev/null; then
  have_torch=1
  pt_version=$("$PYTHON" -c 'import torch; print(torch.__version__)')
else
  echo "PyTorch not found ($PYTHON -c 'import torch' failed): install python3-torch to compare"
fi
# torch_round ROUND MODEL THREADS FILE: PyTorch's three loops (bench_torch.py)
# for one model, as lines "ROUND pt KEY VALUE" with the loop in the key, plus
# "ROUND pt MODEL_best_KEY VALUE": the strongest loop of the round (the faster
# training of strong and fused) and its own inference and RSS figures.
torch_round() {
  local out lp
  for lp in typical strong fused; do
    out=$("$PYTHON" scripts/bench_torch.py "$3" "$REPS" "only=$2:$lp") || { echo "bench_torch.py $2:$lp failed"; exit 1; }
    printf '%s\n' "$out" | sed "s/^/$1 pt /" >>"$4"
  done
  awk -v r="$1" -v m="$2" '$1 == r && $2 == "pt" {x[$3] = $4}
    END {b = x[m "_fused_train"] > x[m "_strong_train"] ? "fused" : "strong"
         print r, "pt", m "_best_train", x[m "_" b "_train"]
         print r, "pt", m "_best_infer", x[m "_" b "_infer"]
         print r, "pt", m "_best_rss_mb", x[m "_" b "_rss_mb"]
         print r, "pt", m "_best_is_fused", b == "fused"}' "$4" >>"$4"
}
# PAPER_ONLY=1: only the papers' configuration rows (the issue 18 target)
[ "${PAPER_ONLY:-0}" = 1 ] || for r in $(seq 1 "$ROUNDS"); do
  for m in shared_bottom mmoe ple; do
    tl_out=$("$BUILD/bench/bench_b1" "$THREADS" "$REPS" "$m") || { echo "bench_b1 failed"; exit 1; }
    printf '%s\n' "$tl_out" | sed "s/^/$r tl /" >>"$raw"
    [ "$have_torch" = 1 ] && torch_round "$r" "$m" "$THREADS" "$raw"
  done
done
# median of the numbers on stdin (mawk has no asort)
median() { sort -g | awk '{v[++n] = $1} END {if (!n) exit; m = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2; printf(m >= 1000 ? "%.0f" : "%.4g", m)}'; }
# med ENGINE KEY: median over rounds; ratio KEY: median over rounds of tl/pt
med() { awk -v e="$1" -v k="$2" '$2 == e && $3 == k {print $4}' "${3:-$raw}" | median; }
# ratio TLKEY PTKEY [FILE]: median over rounds of towerlab's TLKEY / PyTorch's PTKEY
ratio() {
  local v; v=$(awk -v a="$1" -v b="$2" '$2 == "tl" && $3 == a {t[$1] = $4} $2 == "pt" && $3 == b {p[$1] = $4}
    END {for (i in t) if (p[i] > 0) print t[i] / p[i]}' "${3:-$raw}" | median)
  [ -n "$v" ] && printf '%.2fx' "$v" || printf -- '-'
}
# rounds in which the strongest PyTorch loop was the fused model, of all rounds
fused_rounds() { awk -v k="$1_best_is_fused" '$3 == k {n++; f += $4} END {if (n) printf "%d/%d", f, n}' "${2:-$raw}"; }

if [ "${PAPER_ONLY:-0}" != 1 ]; then
gf=$(med tl sgemm_gflops)
echo "sgemm: $gf GFLOP/s ([1024x144]x[144x2048]; median over rounds)"
echo "rounds: $ROUNDS, each (towerlab, PyTorch) model by model, each the median of $REPS epochs after a warm-up"
echo
printf '| B1 model | towerlab train/s | strongest PyTorch %s train/s | ratio | %% of compute bound | typical PyTorch loop train/s | towerlab infer/s | strongest PyTorch infer/s | ratio | towerlab peak RSS | PyTorch peak RSS |\n' "${pt_version:-}"
printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
for m in shared_bottom mmoe ple; do
  tt=$(med tl ${m}_train); ti=$(med tl ${m}_infer); tb=$(med tl ${m}_train_bound)
  pt=$(med pt ${m}_best_train); pi=$(med pt ${m}_best_infer); py=$(med pt ${m}_typical_train)
  tm=$(med tl ${m}_rss_mb); pm=$(med pt ${m}_best_rss_mb)
  fb=$(awk -v a="$tt" -v b="$tb" 'BEGIN{printf "%.0f%%", 100*a/b}')
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s MB | %s |\n' "$m" "$tt" "${pt:--}" "$(ratio ${m}_train ${m}_best_train)" \
    "$fb" "${py:--}" "$ti" "${pi:--}" "$(ratio ${m}_infer ${m}_best_infer)" "$tm" "$( [ -n "$pm" ] && echo "$pm MB" || echo - )"
done
[ "$have_torch" = 1 ] && echo "strongest PyTorch: per round the faster of the pre-sliced loop with per-field modules and the same loop with fused experts (fused won $(fused_rounds mmoe) rounds for mmoe, $(fused_rounds ple) for ple); neither side shuffles"
echo "peak RSS: ru_maxrss of one process per model (warm-up, timed training and inference)"
echo
fi

# The papers' configuration (bench_b1.c run_paper): MMoE and PLE base, MMoE
# +DML, +CrossDistil in full, and the same models in PyTorch (bench_torch.py;
# CrossDistil has no PyTorch version: the authors published no code). Rounds
# interleave them; each cost ratio is the median over rounds of (base rows/s)
# / (variant rows/s) within the round. Targets (issues 18 and 26): a DML or
# CrossDistil step costs at most 1.5x a base step; MMoE reaches 50 % of the
# compute bound.
praw=$(mktemp); trap 'rm -f "$raw" "$praw"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  for m in paper_mmoe paper_ple paper_dml paper_crossdistil; do
    out=$("$BUILD/bench/bench_b1" "${PAPER_THREADS:-$THREADS}" "$REPS" "$m") || { echo "bench_b1 $m failed"; exit 1; }
    printf '%s\n' "$out" | sed "s/^/$r tl /" >>"$praw"
    [ "$have_torch" = 1 ] && [ "$m" != paper_crossdistil ] && torch_round "$r" "$m" "${PAPER_THREADS:-$THREADS}" "$praw"
  done
done
pmed() { med tl "$1" "$praw"; }
# pratio KEY BASEKEY: median over rounds of base/variant within the round (towerlab)
pratio() {
  local v; v=$(awk -v k="$1" -v b="$2" '$2 == "tl" {x[$1 " " $3] = $4; r[$1] = 1}
    END {for (i in r) if (x[i " " k] > 0) print x[i " " b] / x[i " " k]}' "$praw" | median)
  [ -n "$v" ] && printf '%.2fx' "$v" || printf -- '-'
}
echo "papers' configuration (threads ${PAPER_THREADS:-$THREADS}): emb 8, MMoE 3 experts [128] / PLE 2 levels of 1 shared + 1 specific [128],"
echo "towers [128, 80], dropout 0.5, batch 512, 32 categorical fields (vocab 100) + 7 numeric, 2 binary tasks (6 %, 43 %), 24,576 train + 3,072 valid rows"
echo
printf '| paper config | towerlab train rows/s | ms per step (512 rows) | %% of compute bound | strongest PyTorch train rows/s | %% of bound | ratio | cost vs base, wall | rows per CPU-s | cost vs base, CPU (target <= 1.5x) | GEMM FLOPs vs base | towerlab peak RSS | PyTorch peak RSS |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for m in paper_mmoe paper_ple paper_dml paper_crossdistil; do
  tr=$(pmed ${m}_train); tc=$(pmed ${m}_cpu); tb=$(pmed ${m}_train_bound)
  pt=$(med pt ${m}_best_train "$praw")
  ms=$(awk -v a="$tr" 'BEGIN{printf "%.2f", 512000 / a}')
  fb=$( [ -n "$tb" ] && awk -v a="$tr" -v b="$tb" 'BEGIN{printf "%.0f%%", 100*a/b}' || echo - )
  pb=$( [ -n "$pt" ] && [ -n "$tb" ] && awk -v a="$pt" -v b="$tb" 'BEGIN{printf "%.0f%%", 100*a/b}' || echo - )
  base=paper_mmoe; [ "$m" = paper_ple ] && base=paper_ple
  rt=$( [ "$m" = "$base" ] && echo "1.00x" || pratio ${m}_train ${base}_train )
  rc=$( [ "$m" = "$base" ] && echo "1.00x" || pratio ${m}_cpu ${base}_cpu )
  fr=$(awk -v a="$(pmed ${m}_flops)" -v b="$(pmed ${base}_flops)" 'BEGIN{if (a > 0) printf "%.2fx", a/b; else printf "-"}')
  tm=$(pmed ${m}_rss_mb); pm=$(med pt ${m}_best_rss_mb "$praw")
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s MB | %s |\n' "${m#paper_}" "$tr" "$ms" "$fb" "${pt:--}" "$pb" \
    "$( [ -n "$pt" ] && ratio ${m}_train ${m}_best_train "$praw" || echo - )" "$rt" "$tc" "$rc" "$fr" "$tm" "$( [ -n "$pm" ] && echo "$pm MB" || echo - )"
done
# The verdicts on the targets, from the CPU ratios (the wall ratios also
# measure the neighbours); all medians over the same interleaved rounds.
for m in dml crossdistil; do
  rc=$(pratio paper_${m}_cpu paper_mmoe_cpu); rw=$(pratio paper_${m}_train paper_mmoe_train)
  v=$(awk -v r="${rc%x}" 'BEGIN{print (r != "" && r + 0 <= 1.5) ? "MET" : "NOT MET"}')
  echo "target (issue 18) $m step <= 1.5x base step: $v (CPU $rc, wall $rw; median of $ROUNDS rounds)"
done
fb=$(awk -v a="$(pmed paper_mmoe_train)" -v b="$(pmed paper_mmoe_train_bound)" 'BEGIN{printf "%.0f", 100*a/b}')
echo "target (issue 26) MMoE at batch 512 >= 50 % of the compute bound: $( [ "$fb" -ge 50 ] && echo MET || echo "NOT MET" ) ($fb %)"
echo "GEMM FLOPs vs base: the variant's training GEMM FLOPs per row over its base's, the floor of its cost ratio when GEMMs dominate the step (CrossDistil's teachers not counted)"
echo "compute bound: the machine's sgemm rate (measured in the same bench_b1 process) over the training GEMM FLOPs per row (forward + backward; embedding and elementwise work not counted)"
echo "towerlab's epochs include the validation pass (and CrossDistil's epoch-end calibrator fit); PyTorch's train only"
echo "CPU: process CPU time of all threads, steadier than wall time on a shared machine (PAPER_THREADS=1 for the work alone)"
echo

[ "${PAPER_ONLY:-0}" = 1 ] && exit 0
# Loss weighting (issue 23): per-step cost of every method relative to fixed
# weights, T = 2, B1 (bench_weighting.c: each timing paired with a fixed one).
if [ -x "$BUILD/bench/bench_weighting" ]; then
  wraw=$(mktemp); trap 'rm -f "$raw" "$praw" "$wraw"' EXIT
  if "$BUILD/bench/bench_weighting" "$THREADS" "${WEIGHT_ROUNDS:-3}" "${WEIGHT_STEPS:-6}" >"$wraw"; then
    echo "loss weighting, B1 (T = 2, batch 1024): CPU time per step / fixed weights' (median of ${WEIGHT_ROUNDS:-3} paired rounds"
    echo "of ${WEIGHT_STEPS:-6} steps; target < 1.5x), and wall ms per step; _rep: task gradients at the towers' inputs (at='rep')"
    echo
    printf '| method | shared_bottom cost | ms | mmoe cost | ms | target < 1.5x |\n|---|---|---|---|---|---|\n'
    for mth in $(sed -n 's/^wt_shared_bottom_\(.*\)_cpu_ratio .*/\1/p' "$wraw"); do
      g() { awk -v k="wt_$1_${mth}_$2" '$1 == k {print $2}' "$wraw"; }
      sr=$(g shared_bottom cpu_ratio); mr=$(g mmoe cpu_ratio)
      v=$(awk -v a="$sr" -v b="$mr" 'BEGIN{print (a + 0 < 1.5 && b + 0 < 1.5) ? "met" : "NOT MET"}')
      printf '| %s | %sx | %s | %sx | %s | %s |\n' "$mth" "$sr" "$(g shared_bottom ms)" "$mr" "$(g mmoe ms)" "$v"
    done
    echo
  else
    echo "bench_weighting failed"
  fi
fi
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
