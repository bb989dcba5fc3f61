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

passed=0; failed=0; skipped=0; broken=()
log=$(mktemp)

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
  if [ "$rc" -ne 0 ] || grep -qaE '^\[  FAILED  \]' "$log"; then
    sed 's/^/    | /' "$log" | tail -60
  fi
}

for t in "$@"; do run "$(basename "$t")" "$t"; done
if [ -f "$BIN" ]; then
  for t in tests/lua/test_*.lua; do [ -f "$t" ] && run "$(basename "$t")" "$BIN" tests/lua/harness.lua "$t"; done
  for t in tests/repl/test_*.sh; do [ -f "$t" ] && run "$(basename "$t")" bash "$t"; done
  # Jupyter kernel and notebooks: Debian's python3 (jupyter_client, nbclient), not a pyenv one.
  if [ -x /usr/bin/python3 ]; then
    for t in tests/kernel/test_*.py; do [ -f "$t" ] && run "$(basename "$t")" /usr/bin/python3 "$t"; done
  fi
fi
rm -f "$log" "$TOWERLAB_HISTORY"

[ ${#broken[@]} -gt 0 ] && echo "failing: ${broken[*]}"
if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
