#!/usr/bin/env bash
# Data-parallel m:fit on a stream of shards under mpirun --oversubscribe: grain j
# reads its own shard files (j, j+G, ...), so the weights are the same bits at
# np 1, 2, 3 and in one process for a fixed grains=; fewer shard files than grains
# is refused; a damaged shard stops every rank, naming the rank whose grain read it.
# Skips, with the reason, when towerlab was built without MPI.
set -u
cd "$(dirname "$0")/../.."
. tests/mpi/lib.sh test_dp_shards

run 0 tests/mpi/dp_shards.lua make "$TMP/sh" >/dev/null 2>&1
n=$(ls "$TMP/sh" | grep -c '^train-')
if [ "$n" = 11 ]; then ok; else bad "11 train shard files expected, got $n"; fi
# 1. the same bits at every rank count (np 0 = one process without mpirun), grains 6
#    over 11 shard files (grains run out at different batches), 2 epochs, validation
for cfg in "mmoe fixed" "mmoe uncertainty" "shared_bottom fixed"; do
  ref=""; same=1; out0=""
  for np in 0 1 2 3; do
    out=$(run $np tests/mpi/dp_shards.lua fit "$TMP/sh" 6 $cfg 2>&1); h=$(md5sum <<<"$out")
    if ! grep -q "^steps 58 preds 800 " <<<"$out"; then same=0; out0="np=$np: $out"; break; fi
    [ -z "$ref" ] && ref=$h
    [ "$h" = "$ref" ] || { same=0; out0="np=$np differs"; }
  done
  if [ $same = 1 ]; then ok; else bad "sharded bits differ across rank counts: $cfg" "$out0"; fi
done
# it learns (test AUC of task a)
auc=$(run 2 tests/mpi/dp_shards.lua fit "$TMP/sh" 6 mmoe fixed 2>&1 | awk '/^auc/{print $2}')
if awk -v a="${auc:-0}" 'BEGIN{exit !(a > 0.6)}'; then ok; else bad "sharded fit does not learn (auc ${auc:-none})"; fi
# PCGrad (one grain per rank, reduced per task) over shards: ranks agree (checksum every 3 steps)
out=$(run 2 tests/mpi/dp_shards.lua fit "$TMP/sh" 2 mmoe pcgrad 2>&1)
if grep -q "^steps " <<<"$out"; then ok; else bad "pcgrad over shards at np=2" "$out"; fi
# 2. fewer shard files than grains: refused on every rank, naming both counts
out=$(run 2 tests/mpi/dp_shards.lua refuse "$TMP/sh" 12 2>&1)
if [ "$(grep -c "^rank [01]: .*each of the 12 grains reads shard files of its own, and .* has 11 train shard files" <<<"$out")" = 2 ]; then ok; else
  bad "shards < grains not refused on both ranks" "$out"; fi
# 3. a damaged shard file 1: only grain 1 reads it, so at np 2 and 3 every rank stops
#    naming rank 1 (rank 0 never maps it)
cp -r "$TMP/sh" "$TMP/bad"; f="$TMP/bad/train-00001.tls"; s=$(stat -c %s "$f")
printf '\x7f\x7f\x7f\x7f' | dd of="$f" bs=1 seek=$((s-40)) conv=notrunc 2>/dev/null
for np in 2 3; do
  out=$(run $np tests/mpi/dp_shards.lua broken "$TMP/bad" $np 2>&1)
  if [ "$(grep -c "^rank [0-2]: .*rank 1 failed: shard .*train-00001.tls: checksum mismatch" <<<"$out")" = $np ]; then ok; else
    bad "damaged shard at np=$np" "$out"; fi
done
finish
