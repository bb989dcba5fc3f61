#!/usr/bin/env bash
# Run every test program and print one closing line: "N passed, N failed[, N skipped]".
# C tests are cmocka programs; tests/lua/*.lua run inside the built towerlab binary;
# tests/repl/*.sh drive the real program under tmux; tests/kernel/*.py drive the
# Jupyter kernel with /usr/bin/python3. All report cmocka-style lines
# ("[  PASSED  ] N test(s).", "[  FAILED  ] N test(s)", "[  SKIPPED ] N test(s).").
set -u
cd "$(dirname "$0")/.."
export CMOCKA_MESSAGE_OUTPUT=stdout
: "${BUILD:=build}" "${BIN:=./towerlab}"
case $BIN in */*) ;; *) BIN="./$BIN" ;; esac  # a bare name would be looked up in PATH
export TL_TEST_BIN="$BIN"
export TOWERLAB_HISTORY="${TMPDIR:-/tmp}/towerlab-test-history.$$"
export TL_NO_RC=1

passed=0; failed=0; skipped=0; broken=(); skip_notes=()
log=$(mktemp)

# Why each skipped test was skipped: "SKIP name: reason" lines (Lua harness,
# tests/repl/lib.sh, tests/kernel/common.py, and C tests that print one
# before cmocka's skip()); a cmocka "[  SKIPPED ] name" without such a line
# is listed with "no reason given".
skip_reasons() {  # $1 = suite name; reads $log
  local line name seen=" "
  while IFS= read -r line; do
    case $line in
      "SKIP "*)
        skip_notes+=("$1: ${line#SKIP }")
        name=${line#SKIP }; seen="$seen${name%%:*} " ;;
      "[  SKIPPED ] "*" test(s)."*) ;;
      "[  SKIPPED ] "*)
        name=${line#\[  SKIPPED \] }
        case $seen in *" $name "*) ;; *) skip_notes+=("$1: $name: no reason given") ;; esac ;;
    esac
  done < <(grep -aE '^(SKIP |\[  SKIPPED \] )' "$log")
}

# A whole suite that cannot run counts its files as skipped, with the reason.
skip_suite() {  # $1 = reason, rest = files
  local reason=$1 t; shift
  for t in "$@"; do
    [ -f "$t" ] || continue
    skipped=$((skipped + 1))
    skip_notes+=("$(basename "$t"): not run: $reason")
    printf '%-40s %4d passed %3d failed %3d skipped\n' "$(basename "$t")" 0 0 1
  done
}

tally() {  # $1 = name, $2 = exit code; reads $log
  local p f s
  p=$(grep -aoE '^\[  PASSED  \] [0-9]+' "$log" | awk '{s+=$NF} END{print s+0}')
  f=$(grep -aoE '^\[  FAILED  \] [0-9]+' "$log" | awk '{s+=$NF} END{print s+0}')
  s=$(grep -aoE '^\[  SKIPPED \] [0-9]+' "$log" | awk '{s+=$NF} END{print s+0}')
  if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crashed or died before reporting
  if [ "$p" -eq 0 ] && [ "$f" -eq 0 ] && [ "$s" -eq 0 ]; then f=1; fi  # reported nothing
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  [ "$f" -gt 0 ] && broken+=("$1")
  printf '%-40s %4d passed %3d failed %3d skipped\n' "$1" "$p" "$f" "$s"
}

run() {  # $1 = display name, rest = command
  local name=$1; shift
  "$@" >"$log" 2>&1
  local rc=$?
  tally "$name" "$rc"
  skip_reasons "$name"
  if [ "$rc" -ne 0 ] || grep -qaE '^\[  FAILED  \]' "$log"; then
    sed 's/^/    | /' "$log" | tail -60
  fi
}

for t in "$@"; do run "$(basename "$t")" "$t"; done
if [ -x "$BIN" ]; then
  for t in tests/lua/test_*.lua; do [ -f "$t" ] && run "$(basename "$t")" "$BIN" tests/lua/harness.lua "$t"; done
  for t in tests/repl/test_*.sh; do [ -f "$t" ] && run "$(basename "$t")" bash "$t"; done
  # MPI suite (mpirun -np 2 and 3; skips itself with the reason when built without MPI)
  for t in tests/mpi/test_*.sh; do [ -f "$t" ] && run "$(basename "$t")" bash "$t"; done
  # Jupyter kernel and notebooks: Debian's python3 (jupyter_client, nbclient), not a pyenv one.
  if [ -x /usr/bin/python3 ]; then
    for t in tests/kernel/test_*.py; do [ -f "$t" ] && run "$(basename "$t")" /usr/bin/python3 "$t"; done
  else
    skip_suite "no /usr/bin/python3 (apt-get install python3-jupyter-client python3-nbclient)" tests/kernel/test_*.py
  fi
else
  why="no towerlab binary at $BIN (make builds it)"
  skip_suite "$why" tests/lua/test_*.lua tests/repl/test_*.sh tests/kernel/test_*.py
fi
rm -f "$log" "$TOWERLAB_HISTORY"

if [ ${#skip_notes[@]} -gt 0 ]; then
  echo "skipped:"
  for n in "${skip_notes[@]}"; do echo "  $n"; done
fi
[ ${#broken[@]} -gt 0 ] && echo "failing: ${broken[*]}"
if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
