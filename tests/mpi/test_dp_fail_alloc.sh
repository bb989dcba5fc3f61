#!/usr/bin/env bash
# A rank that fails on its own never leaves the others waiting in a
# collective (dist.h: guarded collectives, tl_dist_agree). Under mpirun
# -np 3 the n-th engine allocation of one rank's data-parallel fit fails (a
# test-only fault point, tests/mpi/dp_fail_alloc.lua), for n = 1, 2, ...
# until a fit runs clean: every rank must come back from every fit with the
# same error naming the failing rank, and the run must end within its
# timeout (a hang fails). The failing rank 0, 1 and 2 on the plain fit
# (validation, epoch ends); rank 1 with PCGrad (per-task reduction), with
# uncertainty weighting on 6 grains (the rows-free part) and with
# CrossDistil (the teacher-score gather). Skips, with the reason, when
# towerlab was built without MPI.
set -u
cd "$(dirname "$0")/../.."
. tests/mpi/lib.sh test_dp_fail_alloc

for cfg in "1 plain" "0 plain" "2 plain" "1 pcgrad" "1 uncertainty" "1 crossdistil"; do
  t0=$(date +%s)
  out=$(timeout 60 mpirun --oversubscribe -np 3 "$BIN" tests/mpi/dp_fail_alloc.lua $cfg 2>&1); rc=$?
  dt=$(( $(date +%s) - t0 ))
  faults=$(grep -o "^rank 0: [a-z]*: [0-9]* faults" <<<"$out" | awk '{print $4}')
  if [ $rc = 0 ] && grep -q "^rank 0: .*, 0 bad; clean at n=[0-9]*$" <<<"$out" && ! grep -q BAD <<<"$out" &&
     [ "${faults:-0}" -ge 20 ]; then ok; else
    bad "allocation faults on one rank ($cfg): rc $rc after ${dt}s (124: a hang)" "$out"; fi
done
finish
