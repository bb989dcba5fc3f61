#!/usr/bin/env bash
# tl.sweep under a real terminal: Ctrl-C during a sweep (worker processes and
# in-process) stops it cleanly, keeps the finished rows, leaves no workers
# behind, and the session goes on.
source "$(dirname "$0")/lib.sh"

start_repl || { fail start "tmux"; finish; }
wait_prompts 1 10 || fail prompt "no prompt"

tl_pid=$(tm display-message -p -t t '#{pane_pid}')
[ "$(ps -o comm= -p "$tl_pid" 2>/dev/null)" = towerlab ] || tl_pid=$(pgrep -P "$tl_pid" | head -1)

# Workers: x=1,2 finish at once, x>=3 spin until Ctrl-C reaches them.
line "spin = function(s) local t = os.time() + s while os.time() < t do end end"
line "r = tl.sweep{grid={x={1,2,3,4,5,6}}, jobs=2, out=\"$TMPD/runs/ic\", run=function(cfg) if cfg.x >= 3 then spin(60) end return {v=cfg.x} end}"
if wait_for '\[2/6\] x=[12] seed=1 ok' 30; then
  sleep 0.3
  key C-c
  expect interrupt_jobs2_message "tl\.sweep: interrupted after 2 of 6 runs \(rows kept in $TMPD/runs/ic\.csv\)" 15
else
  fail interrupt_jobs2_message "the first two runs did not finish"
fi
wait_prompts 4 15
kids=$(pgrep -P "$tl_pid" | wc -l)
if [ "$kids" -eq 0 ]; then pass no_workers_left; else fail no_workers_left "$kids child processes"; fi
if [ "$(wc -l <"$TMPD/runs/ic.csv")" -eq 3 ] && [ "$(grep -c ',ok,' "$TMPD/runs/ic.csv")" -eq 2 ]; then
  pass finished_rows_kept; else fail finished_rows_kept "$(cat "$TMPD/runs/ic.csv")"; fi

# The session goes on and the sweep resumes from the CSV.
line "r = tl.sweep{grid={x={1,2,3,4,5,6}}, jobs=2, out=\"$TMPD/runs/ic\", verbose=false, run=function(cfg) return {v=cfg.x} end}; print(#r.rows, r.rows[6].v)"
expect resume_after_interrupt '^6[[:space:]]+6$' 10

# In-process (jobs=1): the run is cut short and not recorded.
line "r = tl.sweep{grid={x={1,2,3}}, out=\"$TMPD/runs/ip\", run=function(cfg) if cfg.x == 2 then spin(60) end return {v=cfg.x} end}"
if wait_for '\[1/3\] x=1 seed=1 ok' 10; then
  sleep 0.3
  key C-c
  expect interrupt_inprocess_message "tl\.sweep: interrupted after 1 of 3 runs \(rows kept in $TMPD/runs/ip\.csv\)" 15
else
  fail interrupt_inprocess_message "the first run did not finish"
fi
if [ "$(wc -l <"$TMPD/runs/ip.csv")" -eq 2 ]; then pass inprocess_rows_kept
else fail inprocess_rows_kept "$(cat "$TMPD/runs/ip.csv")"; fi
line "print('still' .. ' alive', tl.cancelled())"
expect session_goes_on '^still alive[[:space:]]+false$' 15

finish
