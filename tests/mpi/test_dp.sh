#!/usr/bin/env bash
# Data-parallel m:fit, distributed evaluation, checkpoints across rank counts,
# stops and failures under mpirun --oversubscribe (np 1, 2, 3). Skips, with the
# reason, when towerlab was built without MPI.
set -u
cd "$(dirname "$0")/../.."
. tests/mpi/lib.sh test_dp

# 1. the same bits at every rank count (np 0 = one process without mpirun), grains=6,
#    dropout 0.1: backbones, weightings, DML
for cfg in "shared_bottom fixed 0" "mmoe fixed 0" "mmoe uncertainty 0" "shared_bottom uncertainty 1" \
           "mmoe fixed 1" "mmoe dwa 0"; do
  ref=""; same=1; out0=""
  for np in 0 1 2 3; do
    out=$(run $np tests/mpi/dp_bits.lua $cfg 6 12 0.1 2>&1); h=$(md5sum <<<"$out")
    if ! grep -q "^steps 800 " <<<"$out"; then same=0; out0="np=$np: $out"; break; fi
    [ -z "$ref" ] && ref=$h
    [ "$h" = "$ref" ] || { same=0; out0="np=$np differs"; }
  done
  if [ $same = 1 ]; then ok; else bad "bits differ across rank counts: $cfg" "$out0"; fi
done
# 2. the grain-summed gradient is the batch gradient (one process, every weighting)
out=$(run 0 tests/mpi/dp_close.lua 2>&1)
if grep -qx "ok close" <<<"$out"; then ok; else bad "grain-summed fit vs ordinary fit" "$out"; fi
# 3. PCGrad, GradNorm and MGDA: each task's gradient reduced over the ranks before the
#    method combines them (ranks bit-identical, checksum every step; one process's
#    fit within 1e-5; every method: test_dp_weighting.sh; CrossDistil:
#    test_dp_crossdistil.sh); the checksum of the parameters and of early stopping's record
for w in pcgrad gradnorm mgda; do
  ref=$(run 0 tests/mpi/dp_pertask.lua $w "$TMP/$w.ref" 2>&1)
  for np in 2 3; do
    out=$(run $np tests/mpi/dp_pertask.lua $w "$TMP/$w.ref" 2>&1)
    if grep -qx "rank 0: matches" <<<"$out"; then ok; else bad "$w at np=$np" "$ref $out"; fi
  done
done
out=$(run 2 tests/mpi/dp_refuse.lua checksum 2>&1)
if [ "$(grep -c "parameters differ between ranks at step 2: rank 0 [0-9a-f]*, rank 1 " <<<"$out")" = 2 ]; then ok; else
  bad "checksum mismatch not reported on both ranks" "$out"; fi
out=$(run 2 tests/mpi/dp_refuse.lua record 2>&1)
if [ "$(grep -c "early stopping's record (best score, patience count, best weights) differ between ranks at step [0-9]*: rank 0 [0-9a-f]*, rank 1 " <<<"$out")" = 2 ]; then ok; else
  bad "early stopping's record drifting apart not reported on both ranks" "$out"; fi
out=$(run 2 tests/mpi/dp_refuse.lua mismatch 2>&1)
if [ "$(grep -c "fit options or the training rows differ between ranks at step 0: rank 0 [0-9a-f]*, rank 1 " <<<"$out")" = 2 ]; then ok; else
  bad "ranks with different batches not refused on both" "$out"; fi
# 4. distributed evaluation = one process's, on every rank
for np in 2 3; do
  out=$(run $np tests/mpi/dp_eval.lua "$TMP" 2>&1)
  if grep -q "click.auc=0x" <<<"$out" && ! grep -q "differs" <<<"$out"; then ok; else bad "distributed evaluate np=$np" "$out"; fi
done
# 5. save at np=2 (rank 0 writes), resume at np=3 and in one process: the bits of an
#    uninterrupted run
full=$(run 2 tests/mpi/dp_ckpt.lua full x 20 2>&1)
run 2 tests/mpi/dp_ckpt.lua save "$TMP/c.tlm" 8 >/dev/null 2>&1
for np in 3 0; do
  out=$(run $np tests/mpi/dp_ckpt.lua resume "$TMP/c.tlm" 12 2>&1)
  if grep -q "^step 20 " <<<"$out" && [ "$out" = "$full" ]; then ok; else bad "resume at np=$np of a np=2 checkpoint" "$out"; fi
done
# 6. SIGUSR1 to mpirun (forwarded to every rank): every rank stops at the same step, rank 0 saves
mpirun --oversubscribe -np 2 "$BIN" tests/mpi/dp_stop.lua "$TMP/stop.tlm" >"$TMP/stop.txt" 2>&1 & P=$!
for _ in $(seq 100); do grep -q started "$TMP/stop.txt" 2>/dev/null && break; sleep 0.2; done
kill -USR1 $P; wait $P; rc=$?
steps=$(grep -o "rank [01]: steps [0-9]* .*interrupted at epoch" "$TMP/stop.txt" | awk '{print $4}' | sort -u)
if [ $rc = 0 ] && [ "$(wc -w <<<"$steps")" = 1 ] && grep -q "saved to" "$TMP/stop.txt" &&
   [ "$("$BIN" -e "io.write(tl.load('$TMP/stop.tlm'):history().steps[#tl.load('$TMP/stop.tlm'):history().steps].step)")" = "$steps" ]; then ok; else
  bad "SIGUSR1 stop" "$(cat "$TMP/stop.txt")"; fi
# SIGINT (Ctrl-C) to mpirun: Open MPI ends the job (SIGTERM to the ranks, SIGKILL 1 s later);
# the ranks stop at a step, and the checkpoint left behind loads (written atomically)
rm -f "$TMP/stop.tlm" "$TMP/stop.txt"
mpirun --oversubscribe -np 2 "$BIN" tests/mpi/dp_stop.lua "$TMP/stop.tlm" >"$TMP/stop.txt" 2>&1 & P=$!
for _ in $(seq 100); do grep -q started "$TMP/stop.txt" 2>/dev/null && [ -f "$TMP/stop.tlm" ] && break; sleep 0.2; done
t0=$(date +%s); kill -INT $P; wait $P; dt=$(( $(date +%s) - t0 ))
if [ $dt -le 10 ] && "$BIN" -e "assert(tl.load('$TMP/stop.tlm'))" 2>/dev/null; then ok; else
  bad "SIGINT to mpirun (${dt}s)" "$(cat "$TMP/stop.txt")"; fi
# 7. a rank that dies or raises: every rank stops within seconds, the output names rank 1
for how in kill raise outside; do
  t0=$(date +%s); out=$(run 3 tests/mpi/dp_fail.lua $how 2>&1); rc=$?; dt=$(( $(date +%s) - t0 ))
  if [ $rc != 0 ] && [ $rc != 124 ] && [ $dt -le 30 ] && grep -q "rank 1" <<<"$out" && ! grep -q "should not happen" <<<"$out"; then ok; else
    bad "failure '$how' (rc $rc after ${dt}s)" "$out"; fi
done
# 8. tl.sweep under mpirun -np 3: rank 0 schedules, ranks 1-2 run; a run that kills its own
#    (forked) process fails its row only, the resume runs it again, and the rows are the
#    one-process sweep's
out=$(run 3 tests/mpi/dp_sweep.lua "$TMP/sw.csv" kill 2>&1)
if [ "$(grep -c "^rank [0-2]: 7 ok 1 error" <<<"$out")" = 3 ] && grep -q "^3,1,error,.*worker killed by signal 9" "$TMP/sw.csv"; then ok; else bad "sweep with a killed run" "$out $(cat "$TMP/sw.csv")"; fi
out=$(run 3 tests/mpi/dp_sweep.lua "$TMP/sw.csv" kill 2>&1)
run 0 tests/mpi/dp_sweep.lua "$TMP/local.csv" >/dev/null 2>&1
if [ "$(grep -c "^rank [0-2]: 8 ok 0 error" <<<"$out")" = 3 ] &&
   [ "$(cut -d, -f1-4 "$TMP/sw.csv" | sort)" = "$(cut -d, -f1-4 "$TMP/local.csv" | sort)" ] &&
   [ "$(cut -d, -f5 "$TMP/sw.csv" | sort -u | tr '\n' ' ')" = "1 2 pid " ]; then ok; else
  bad "sweep resume under mpirun" "$out $(cat "$TMP/sw.csv")"; fi
finish
