#!/usr/bin/env bash
# Every loss-weighting method under data-parallel m:fit (losses/weighting.h,
# tl_weighting_dp) at np 2 and 3: the ranks stay bit-identical (parameters
# compared every step; test predictions and history weights hashed on every
# rank) and the predictions are within 1e-6 of one process's ordinary fit
# after 30 SGD steps; the grain-summed methods give the same bits at every
# rank count for a given grains, diagnostics=N included; AITM's constraint
# and DSelect-k's regulariser too. Skips, with the
# reason, when towerlab was built without MPI.
set -u
cd "$(dirname "$0")/../.."
. tests/mpi/lib.sh test_dp_weighting
BOUND=1e-6

# 1. every method (both at= of the Gram family), against one process's ordinary fit
methods=('"fixed"' '"uncertainty"' '"dwa"' '"rlw"' '{"rlw", dist="dirichlet"}' '"imtl_l"' '"gls"' '"famo"'
         '"db_mtl"' '{"stch", warmup=0}' '"graddrop"' '"gradnorm"' '"pcgrad"' '{"pcgrad", at="rep"}')
for g in mgda cagrad nash_mtl imtl_g imtl aligned_mtl upgrad gradvac; do
  methods+=("\"$g\"" "{\"$g\", at=\"rep\"}")
done
for w in "${methods[@]}"; do
  run 0 tests/mpi/dp_weighting.lua "$w" "$TMP/ref" write >/dev/null 2>&1
  for np in 2 3; do
    out=$(run $np tests/mpi/dp_weighting.lua "$w" "$TMP/ref" 2>&1)
    hashes=$(grep -o "^rank [0-9]: hash [0-9a-f]* steps 30 " <<<"$out" | awk '{print $4}' | sort -u)
    worst=$(grep -o "^rank 0: worst .*" <<<"$out" | awk '{print $4}')
    if [ "$(grep -c "^rank [0-9]: hash" <<<"$out")" = $np ] && [ "$(wc -l <<<"$hashes")" = 1 ] && [ -n "$worst" ] &&
       awk -v w="$worst" -v b=$BOUND 'BEGIN{exit !(w + 0 <= b + 0)}'; then ok; else
      bad "weighting $w at np=$np (ranks identical, within $BOUND of one process)" "$out"; fi
  done
done
# 2. the methods summed over grains: the bits of one process's fit{grains=6} at np 2 and 3,
#    with diagnostics=5 (computed on every rank over the whole batch) in the hash
for w in '"rlw"' '{"rlw", dist="dirichlet"}' '"imtl_l"' '"fixed"'; do
  ref=$(run 0 tests/mpi/dp_weighting.lua "$w" "$TMP/ref" x 6 diag 2>&1 | grep -o "hash [0-9a-f]* steps 30 diagnostics 6")
  for np in 2 3; do
    out=$(run $np tests/mpi/dp_weighting.lua "$w" "$TMP/ref" x 6 diag 2>&1)
    if [ -n "$ref" ] && [ "$(grep -c "^rank [0-9]: $ref" <<<"$out")" = $np ]; then ok; else
      bad "weighting $w grains=6 diagnostics=5 at np=$np: not the bits of one process ($ref)" "$out"; fi
  done
done
# 3. a per-task method with diagnostics: ranks identical, close to one process
run 0 tests/mpi/dp_weighting.lua '"pcgrad"' "$TMP/ref" write 0 diag >/dev/null 2>&1
out=$(run 2 tests/mpi/dp_weighting.lua '"pcgrad"' "$TMP/ref" x 0 diag 2>&1)
worst=$(grep -o "^rank 0: worst .*" <<<"$out" | awk '{print $4}')
if [ "$(grep "diagnostics 6$" <<<"$out" | awk '{print $4}' | sort -u | wc -l)" = 1 ] &&
   [ "$(grep -c "diagnostics 6$" <<<"$out")" = 2 ] && [ -n "$worst" ] &&
   awk -v w="$worst" -v b=$BOUND 'BEGIN{exit !(w + 0 <= b + 0)}'; then ok; else bad "pcgrad with diagnostics=5 at np=2" "$out"; fi
# 4. a model distributed for evaluation that fits with dp=false: each rank alone gives one
#    process's bits (the methods' sums over the ranks are for data-parallel fits only;
#    Nash-MTL, unlike most, is not invariant to the scale a wrong sum would give G)
for w in '{"nash_mtl", at="rep"}'; do
  ref=$(run 0 tests/mpi/dp_weighting.lua "$w" "$TMP/ref" write 2>&1 | grep -o "hash [0-9a-f]* steps 30 ")
  out=$(run 2 tests/mpi/dp_weighting.lua "$w" "$TMP/ref" x 0 local 2>&1)
  if [ -n "$ref" ] && [ "$(grep -c "^rank [01]: $ref" <<<"$out")" = 2 ]; then ok; else
    bad "weighting $w with dp=false on a distributed model: not one process's bits ($ref)" "$out"; fi
done
# 5. loss terms outside the tasks: AITM's constraint (a mean over a run's rows: each run
#    takes its share of the batch's rows) and DSelect-k's regulariser (entropy 1e-3, a sum
#    over rows: whole), on grains (fixed; uncertainty and IMTL-L's rows-free run, which
#    must leave them out) and reduced per task (at="params", and at="rep" where the
#    regulariser seeds the split backward: GradDrop leak 1, CAGrad). MGDA at="rep" and
#    GradDrop's masks are ill-conditioned on DSelect-k's saturating gates (their weights
#    move by 1e-4 at some step from float-level differences), so not bounded here.
for bb in aitm dselect; do
  if [ $bb = aitm ]; then ws=('"fixed"' '"uncertainty"' '"mgda"' '"pcgrad"'); else
    ws=('"fixed"' '"uncertainty"' '"imtl_l"' '"pcgrad"' '{"graddrop", leak=1}' '{"cagrad", at="rep"}'); fi
  for w in "${ws[@]}"; do
    run 0 tests/mpi/dp_weighting.lua "$w" "$TMP/ref" write 0 x $bb >/dev/null 2>&1
    for np in 2 3; do
      out=$(run $np tests/mpi/dp_weighting.lua "$w" "$TMP/ref" x 0 x $bb 2>&1)
      hashes=$(grep -o "^rank [0-9]: hash [0-9a-f]* steps 30 " <<<"$out" | awk '{print $4}' | sort -u)
      worst=$(grep -o "^rank 0: worst .*" <<<"$out" | awk '{print $4}')
      if [ "$(grep -c "^rank [0-9]: hash" <<<"$out")" = $np ] && [ "$(wc -l <<<"$hashes")" = 1 ] && [ -n "$worst" ] &&
         awk -v w="$worst" -v b=$BOUND 'BEGIN{exit !(w + 0 <= b + 0)}'; then ok; else
        bad "$bb with $w at np=$np (ranks identical, within $BOUND of one process)" "$out"; fi
    done
  done
  ref=$(run 0 tests/mpi/dp_weighting.lua '"uncertainty"' "$TMP/ref" x 6 diag $bb 2>&1 | grep -o "hash [0-9a-f]* steps 30 diagnostics 6")
  for np in 2 3; do
    out=$(run $np tests/mpi/dp_weighting.lua '"uncertainty"' "$TMP/ref" x 6 diag $bb 2>&1)
    if [ -n "$ref" ] && [ "$(grep -c "^rank [0-9]: $ref" <<<"$out")" = $np ]; then ok; else
      bad "$bb, uncertainty, grains=6 at np=$np: not the bits of one process ($ref)" "$out"; fi
  done
done
finish
