#!/usr/bin/env bash
# The interactive program under tmux: expression printing, multi-line input,
# completion, Ctrl-C (running Lua, at the prompt, in a continuation), errors
# with tracebacks, help, history, and Ctrl-D.
source "$(dirname "$0")/lib.sh"

if ! command -v tmux >/dev/null; then skip all "tmux not installed"; finish; fi

has_data=$("$BIN" -e 'io.write(tl.data and "yes" or "no")' 2>/dev/null)

# help() pages through $PAGER at a terminal
if command -v less >/dev/null 2>&1; then export PAGER='less -R' TL_TEST_PAGER=1; else unset PAGER; fi
start_repl || { fail start "tmux could not start $BIN"; finish; }
expect banner '^towerlab [0-9]+\.[0-9]+\.[0-9]+ \(Lua 5\.4' 30
wait_prompts 1 30

line '6*7'
expect bare_expression_prints '^42$'

line '=100+23'
expect equals_expression_prints '^123$'

line 'kept = 5'
line 'kept*1000;'
line 'kept*1001'
if wait_for '^5005$' && ! pane | grep -qE '^5000$'; then pass trailing_semicolon_suppresses
else fail trailing_semicolon_suppresses "5000 printed or 5005 missing"; fi

line '{b = 2, a = "x", 10}'
expect table_pretty_printed '^\{10, a = "x", b = 2\}$'

line 'function sq(x)'
if wait_for '^>> ' 3; then pass continuation_prompt; else fail continuation_prompt "no >> prompt"; fi
line '  return x * x'
line 'end'
line 'sq(12)'
expect multiline_function_definition '^144$'

line 't = {1,'
line '2, 3}'
line '#t + 1000'
expect multiline_table_constructor '^1003$'

# Completion: tl.da<TAB> when the data module is linked, tl.ten<TAB> always.
if [ "$has_data" = yes ]; then
  type_text 'x = tl.da'; key Tab
  expect complete_tl_data '^> x = tl\.data$' 3
  key C-c
else
  skip complete_tl_data "tl.data not linked in this build"
fi
type_text 'x = tl.ten'; key Tab
expect complete_tl_field '^> x = tl\.tensor$' 3
key C-u
type_text 'x = tl.tensor.ze'; key Tab
expect complete_nested_field '^> x = tl\.tensor\.zeros$' 3
type_text '(2, 3)'; key Enter
key C-u
type_text 'x:sh'; key Tab
type_text '()'
expect complete_userdata_method '^> x:shape\(\)$' 3
key Enter
expect method_call_result '^\{2, 3\}$'
type_text 'dofile("tests/lua/harn'; key Tab
expect complete_file_name_in_string '^> dofile\("tests/lua/harness\.lua"' 3
key C-c

# Ctrl-C at the prompt clears the line: the next line must run alone.
type_text 'zzz_partial_garbage'
key C-c
line '1+776'
expect ctrl_c_clears_line '^777$'

# Ctrl-C in a continuation drops the unfinished statement.
line 'function broken('
wait_for '^>> ' 3
key C-c
line '1+664'
expect ctrl_c_drops_continuation '^665$'

# Ctrl-C stops a running Lua loop; globals stay.
line 'loops = 0 while true do loops = loops + 1 end'
sleep 0.3
key C-c
expect ctrl_c_interrupts_loop 'interrupted!' 5
line 'print(kept, loops > 0)'
expect state_kept_after_interrupt '^5[[:space:]]+true$'

# An error inside a function typed at the prompt prints the message and a
# traceback (it shows where); the session continues.
line 'function boom(n) error("boom" .. n) end boom(42)'
if wait_for 'stdin:1: boom42' && wait_for '^stack traceback:' && wait_for "in function 'boom'"; then
  pass error_with_traceback
else fail error_with_traceback "no message or traceback"; fi
# A bad argument straight from the prompt: the message alone (issue 19 item 13);
# no "stack traceback:", "[C]: in function" or "in main chunk" lines.
n_tb=$(count_of '^stack traceback:'); n_mc=$(count_of 'in main chunk')
line 'tl.mmoe{experts="many"}'
wait_for "tl\.mmoe: field 'experts'" 5
line 'nosuch.field = 1'
wait_for "attempt to index a nil value \(global 'nosuch'\)" 5
line '1+110'
wait_for '^111$' 5
if [ "$(count_of '^stack traceback:')" -eq "$n_tb" ] && [ "$(count_of "tl\.mmoe: field 'experts'")" -ge 1 ] &&
   [ "$(count_of 'in main chunk')" -eq "$n_mc" ]; then
  pass simple_error_without_traceback
else fail simple_error_without_traceback "a traceback after a bad argument at the prompt"; fi
line 'local ok = 1 +'
wait_for '^>> ' 3
line ')'
expect syntax_error_reported "stdin:[0-9]+: unexpected symbol near '\)'"
line '1+887'
expect session_continues_after_error '^888$'

line '?tl.threads'
expect help_question_mark 'tl\.threads\(\[n\]\) -> count'
line 'help()'
expect help_lists_topics '^Topics'
# The topic list is taller than the 50-row pane: it is shown in the pager
# (PAGER, set to less -R below; issue 19 item 11). q returns to the prompt.
# The prompt is the pane's last row; read it unjoined (pane() joins wrapped rows, and a
# long topic line wrapping into the last row would end in the prompt's ':').
pager_prompt() { tm capture-pane -p -t t 2>/dev/null | awk 'NF{last=$0} END{exit !(last ~ /^:$|\(END\)/)}'; }
if [ -n "${TL_TEST_PAGER:-}" ]; then
  i=0; while ! pager_prompt && [ $i -lt 250 ]; do sleep 0.02; i=$((i+1)); done
  if pager_prompt; then pass help_uses_pager; else fail help_uses_pager "no pager prompt after help()"; fi
  key q
  line '1+221'
  expect after_pager_prompt_back '^222$'
else
  skip help_uses_pager "less is not installed"
fi

if grep -qxF 'sq(12)' "$TOWERLAB_HISTORY" 2>/dev/null && grep -qxF '1+887' "$TOWERLAB_HISTORY"; then
  pass history_written_each_line
else
  fail history_written_each_line "history file $TOWERLAB_HISTORY lacks the lines"
fi

key C-d
i=0; while ! pane_dead && [ $i -lt 150 ]; do sleep 0.02; i=$((i+1)); done
if pane_dead; then pass ctrl_d_quits; else fail ctrl_d_quits "program still running"; fi

# History is read back by the next session (Up arrow recalls the last line).
# A new tmux server on its own socket: a new session on the old socket can reach
# the old server while it exits and vanish with it.
tm kill-server >/dev/null 2>&1
TMUX_SOCK="${TMUX_SOCK}b"
start_repl
# Up before the prompt would reach a cooked tty and be echoed as ^[[A (a busy
# machine can take seconds to start the program): wait for readline first.
wait_prompts 1 30 || fail second_session_prompt "no prompt in the second session"
key Up
expect history_recalled '^> 1\+221$' 3
line ''
line 'os.exit(0)'
i=0; while ! pane_dead && [ $i -lt 150 ]; do sleep 0.02; i=$((i+1)); done
if pane_dead; then pass os_exit_quits; else fail os_exit_quits "program still running"; fi

finish
