#!/usr/bin/env bash
# The weighting methods whose data-parallel mode is "reduces" (losses/weighting.h
# tl_weighting_dp: one grain per rank, each task's gradient reduced over the ranks)
# under data-parallel m:fit over shards (tests/mpi/dp_shards_reduces.lua): with
# shuffling off, shard files of 60 rows and a batch of 60 rows per rank, grain j's
# stream reads the rows the in-memory batch cuts into grain j, so the fit over
# shards must give the bits of the in-memory data-parallel fit at the same np (1, 2
# and 3), on every rank (parameters compared every step). With diagnostics=3 (whose
# record is taken on the whole batch: over shards every grain's rows gathered from
# the ranks that read them) for some; a whole epoch, in which the grains run out at
# different batches, keeps the ranks identical. Skips, with the reason, when
# towerlab was built without MPI.
set -u
cd "$(dirname "$0")/../.."
. tests/mpi/lib.sh test_dp_shards_reduces

run 0 tests/mpi/dp_shards_reduces.lua make "$TMP/sh" >/dev/null 2>&1
methods=('"pcgrad"' '{"pcgrad", at="rep"}' '"db_mtl"' '"graddrop"' '"gradnorm"' '"gls"' '"famo"' '{"stch", warmup=0}')
for g in mgda cagrad nash_mtl imtl_g imtl aligned_mtl upgrad gradvac; do methods+=("\"$g\"" "{\"$g\", at=\"rep\"}"); done
same() {  # np weighting [diag]: the shards' hash line is the in-memory one, on every rank
  local np=$1 w=$2 a b
  a=$(run $np tests/mpi/dp_shards_reduces.lua fit "$TMP/sh" "$w" memory ${3:-x} 2>&1)
  b=$(run $np tests/mpi/dp_shards_reduces.lua fit "$TMP/sh" "$w" shards ${3:-x} 2>&1)
  local ha hb
  ha=$(grep -o "hash [0-9a-f]* steps 12 diagnostics [0-9]*" <<<"$a" | sort -u)
  hb=$(grep -o "^rank [0-9]: hash [0-9a-f]* steps 12 diagnostics [0-9]*" <<<"$b")
  if [ -n "$ha" ] && [ "$(wc -l <<<"$ha")" = 1 ] && [ "$(grep -c "$ha$" <<<"$hb")" = $((np > 0 ? np : 1)) ]; then ok; else
    bad "weighting $w ${3:-} at np=$np over shards: not the in-memory bits ($ha)" "$a
$b"; fi
}
for w in "${methods[@]}"; do
  for np in 2 3; do same $np "$w"; done
done
for w in '"pcgrad"' '"gradnorm"' '"famo"' '{"mgda", at="rep"}' '"fixed"'; do
  for np in 1 2 3; do same $np "$w" diag; done
done
for w in '"pcgrad"' '"famo"' '{"cagrad", at="rep"}'; do
  for np in 2 3; do
    out=$(run $np tests/mpi/dp_shards_reduces.lua fit "$TMP/sh" "$w" shards x epoch 2>&1)
    hashes=$(grep -o "^rank [0-9]: hash [0-9a-f]* steps [0-9]* " <<<"$out" | awk '{print $4, $6}' | sort -u)
    if [ "$(grep -c "^rank [0-9]: hash" <<<"$out")" = $np ] && [ "$(wc -l <<<"$hashes")" = 1 ]; then ok; else
      bad "weighting $w over a whole epoch of shards at np=$np: ranks differ" "$out"; fi
  done
done
finish
