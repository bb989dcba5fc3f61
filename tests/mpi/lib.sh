# lib.sh — what every data-parallel test script under tests/mpi/ starts with:
# `. tests/mpi/lib.sh <name>` from the project root (the script cd's there
# first). Sets BIN and TMP, the pass/fail counters with ok/bad, run NP ARGS
# (NP 0: one process, no launcher) and finish; exits 0 reporting a skip when
# towerlab was built without MPI. Open MPI's root and oversubscribe switches
# are set here, for the tests only (CI runs as root on 2 cores).
BIN=${TL_TEST_BIN:-./towerlab}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
if ! command -v mpirun >/dev/null || [ "$("$BIN" -e 'io.write(tostring(tl.mpi.available))' 2>/dev/null)" != true ]; then
  echo "SKIP $1: towerlab built without MPI (make deps installs openmpi-bin libopenmpi-dev; rebuild)"
  echo "[  SKIPPED ] 1 test(s)."
  exit 0
fi
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" # see test_mpi.sh
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "[  FAILED  ] $1"; [ -n "${2:-}" ] && echo "$2" | tail -15; }
run() { local np=$1; shift; if [ "$np" = 0 ]; then timeout 120 "$BIN" "$@"; else timeout 120 mpirun --oversubscribe -np "$np" "$BIN" "$@"; fi; }
# the summary line tests/run_tests.sh reads, and the exit status
finish() {
  [ $fail -gt 0 ] && echo "[  FAILED  ] $fail test(s)"
  echo "[  PASSED  ] $pass test(s)."
  [ $fail -eq 0 ]
}
