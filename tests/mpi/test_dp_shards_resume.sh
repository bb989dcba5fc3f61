#!/usr/bin/env bash
# A data-parallel m:fit on a stream of shards (grains=6) stopped mid-epoch resumes
# from its checkpoint at another rank count with the bits of an uninterrupted fit:
# stopped by the progress callback at np 2 (mid-epoch 2, and at epoch 1's last
# step), from a step checkpoint (every=), and by SIGUSR1 to mpirun; resumed at np 3
# and in one process. Another grains count is refused on every rank.
# Skips, with the reason, when towerlab was built without MPI.
set -u
cd "$(dirname "$0")/../.."
. tests/mpi/lib.sh test_dp_shards_resume
S=tests/mpi/dp_shards_resume.lua

run 0 $S make "$TMP/sh" >/dev/null 2>&1
full=$(run 2 $S full "$TMP/sh" 2>&1)
if grep -q "^steps 58 epochs 2" <<<"$full"; then ok; else bad "full fit" "$full"; fi
# 1. stopped by the callback at step 40 (mid-epoch 2) and 29 (epoch 1's last), rank 0 saves at the stop
for at in 40 29; do
  out=$(run 2 $S stop "$TMP/sh" "$TMP/c$at.tlm" $at 2>&1)
  if [ "$(grep -cE "^rank [01]: step $at .*(interrupted|stopped)" <<<"$out")" = 2 ] && grep -q "saved to" <<<"$out"; then ok; else
    bad "stop at step $at at np=2" "$out"; fi
  for np in 3 0; do
    out=$(run $np $S resume "$TMP/sh" "$TMP/c$at.tlm" 2>&1)
    if [ "$out" = "$full" ]; then ok; else bad "resume at np=$np of a np=2 stream checkpoint at step $at" "$out"; fi
  done
done
# 2. a step checkpoint (every=36), the fit ended later by max_steps: resume at np 3
run 2 $S every "$TMP/sh" "$TMP/e.tlm" 36 >/dev/null 2>&1
out=$(run 3 $S resume "$TMP/sh" "$TMP/e.tlm" 2>&1)
if [ "$out" = "$full" ]; then ok; else bad "resume at np=3 of a step checkpoint" "$out"; fi
# 3. another grains count: refused on every rank, naming both
out=$(run 3 $S resume "$TMP/sh" "$TMP/c40.tlm" 3 2>&1)
if [ "$(grep -c "^rank [0-2]: .*cannot resume it on .*: grains 3 (the stopped fit's 6)" <<<"$out")" = 3 ]; then ok; else
  bad "another grains count not refused on every rank" "$out"; fi
# 4. SIGUSR1 to mpirun (Ctrl-C's clean stop): every rank stops at one step mid-fit, rank 0
#    saves; np 3 finishes with the bits of the uninterrupted fit
run 0 $S make "$TMP/big" 20000 >/dev/null 2>&1
bigfull=$(run 2 $S full "$TMP/big" 2>&1)
mpirun --oversubscribe -np 2 "$BIN" $S signal "$TMP/big" "$TMP/s.tlm" >"$TMP/sig.txt" 2>&1 & P=$!
for _ in $(seq 100); do grep -q started "$TMP/sig.txt" 2>/dev/null && break; sleep 0.2; done
kill -USR1 $P; wait $P
steps=$(grep -o "^rank [01]: step [0-9]* .*interrupted" "$TMP/sig.txt" | awk '{print $4}' | sort -u)
out=$(run 3 $S resume "$TMP/big" "$TMP/s.tlm" 2>&1)
if [ "$(wc -w <<<"$steps")" = 1 ] && grep -q "saved to" "$TMP/sig.txt" && [ "$out" = "$bigfull" ]; then ok; else
  bad "SIGUSR1 stop (step ${steps:-none}) and resume at np=3" "$(cat "$TMP/sig.txt"; echo "$out" | head -c 300)"; fi
echo "SIGUSR1 stopped at step $steps"
finish
