#!/usr/bin/env bash
# make bench-mpi: B1-MMoE training samples/s in one process with 2 threads against
# 2 data-parallel ranks with 1 thread each (mpirun on this machine), and each
# rank's time and bytes per step in communication. ROUNDS (default 3) alternates the
# two; STEPS (default 40) steps per measurement.
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-./towerlab}
ROUNDS=${ROUNDS:-3}; STEPS=${STEPS:-40}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if ! command -v mpirun >/dev/null || [ "$("$BIN" -e 'io.write(tostring(tl.mpi.available))' 2>/dev/null)" != true ]; then
  echo "bench-mpi: towerlab built without MPI (make deps installs openmpi-bin libopenmpi-dev; rebuild)"; exit 0
fi
DIR=$(mktemp -d); trap 'rm -rf "$DIR"' EXIT
echo "B1-MMoE, batch 1024, $STEPS steps per run, $ROUNDS rounds (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
for r in $(seq "$ROUNDS"); do
  "$BIN" scripts/bench_mpi.lua 2 "$STEPS" "$DIR"
  mpirun --oversubscribe -np 2 "$BIN" scripts/bench_mpi.lua 1 "$STEPS" "$DIR"
done
