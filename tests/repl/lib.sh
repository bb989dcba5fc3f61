# lib.sh — helpers for the REPL tests (sourced by tests/repl/test_*.sh).
# Each test script calls pass/fail/skip per check and `finish` at the end,
# which prints the cmocka-style summary lines tests/run_tests.sh counts and
# exits non-zero on failure. Interactive checks drive the real program in a
# private tmux server (socket tl<pid>), polling the pane instead of sleeping.

set -u
cd "$(dirname "$0")/../.."
BIN=$(realpath "${TL_TEST_BIN:-./towerlab}")
export TERM=xterm
export TL_NO_RC=1
TMPD=$(mktemp -d "${TMPDIR:-/tmp}/tl-repl-test.XXXXXX")
export TOWERLAB_HISTORY="$TMPD/history"
TMUX_SOCK="tl$$"
n_pass=0; n_fail=0; n_skip=0; failed_names=()

tm() { tmux -L "$TMUX_SOCK" -f /dev/null "$@"; }

cleanup() {
  tm kill-server >/dev/null 2>&1
  rm -rf "$TMPD"
}
trap cleanup EXIT

pass() { n_pass=$((n_pass + 1)); echo "ok $1"; }
fail() {
  n_fail=$((n_fail + 1)); failed_names+=("$1"); echo "FAIL $1: $2"
  if [ -n "${SESSION_UP:-}" ]; then echo "    pane:"; pane | awk 'NF{last=NR} {l[NR]=$0} END{for(i=1;i<=last;i++)print l[i]}' | tail -25 | sed 's/^/    | /'; fi
}
skip() { n_skip=$((n_skip + 1)); echo "SKIP $1: $2"; }

finish() {
  echo "[==========] $((n_pass + n_fail + n_skip)) test(s) run."
  echo "[  PASSED  ] $n_pass test(s)."
  [ "$n_skip" -gt 0 ] && echo "[  SKIPPED ] $n_skip test(s)."
  if [ "$n_fail" -gt 0 ]; then
    echo "[  FAILED  ] $n_fail test(s), listed below:"
    for n in "${failed_names[@]}"; do echo "[  FAILED  ] $n"; done
    exit 1
  fi
  exit 0
}

# Start the program in a 120x50 pane; the pane stays after the program exits
# so its end can be observed.
start_repl() {
  tm new-session -d -s t -x 120 -y 50 "$BIN $*" || return 1
  tm set-option -t t remain-on-exit on >/dev/null
  SESSION_UP=1
}

# Whole pane including scrollback, lines joined where they wrapped.
pane() { tm capture-pane -p -J -S - -t t 2>/dev/null; }

# wait_for REGEX [SECONDS]: poll the pane until an (extended) regex matches.
wait_for() {
  local re=$1 limit=${2:-5} i=0 n
  n=$(awk -v s="$limit" 'BEGIN{print int(s*50)}')
  while [ "$i" -lt "$n" ]; do
    pane | grep -qE -- "$re" && return 0
    pane_dead && return 1
    sleep 0.02; i=$((i + 1))
  done
  return 1
}

# count_of REGEX: how many pane lines match.
count_of() { pane | grep -cE -- "$1"; }

# type_text TEXT: literal keystrokes (no tmux key-name or ';' parsing).
# A trailing ';' would end the tmux command, so it is escaped.
type_text() {
  local s=$1
  case $s in *\;) s="${s%;}\;" ;; esac
  tm send-keys -t t -l -- "$s"
}
key() { tm send-keys -t t "$@"; }
# line TEXT: type a line and press Enter.
line() { type_text "$1"; key Enter; }

# wait_prompts N [SECONDS]: wait until N lines start with the prompt "> "
# (a bare ">" too: tmux drops trailing spaces).
wait_prompts() {
  local n=$1 limit=${2:-5} i=0 m
  m=$(awk -v s="$limit" 'BEGIN{print int(s*50)}')
  while [ "$i" -lt "$m" ]; do
    [ "$(count_of '^>( |$)')" -ge "$n" ] && return 0
    pane_dead && return 1
    sleep 0.02; i=$((i + 1))
  done
  return 1
}

# expect NAME REGEX [SECONDS]: pass when the pane shows REGEX in time.
expect() {
  if wait_for "$2" "${3:-5}"; then pass "$1"; else fail "$1" "no match for /$2/"; fi
}

pane_dead() { [ "$(tm display-message -p -t t '#{pane_dead}' 2>/dev/null)" = 1 ]; }
