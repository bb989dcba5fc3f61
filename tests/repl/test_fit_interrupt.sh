#!/usr/bin/env bash
# The README tour at a real prompt: load the shipped census data, build an MMoE
# with custom towers, fit with a progress line, change a loss weight, continue,
# interrupt a fit with Ctrl-C, continue again, evaluate per task — and tab
# completion of a model's methods.
. "$(dirname "$0")/lib.sh"

start_repl || { fail start "tmux could not start $BIN"; finish; }
wait_for '^> ' 30 || { fail start "no prompt"; finish; }

line 'd = tl.datasets.census()'
line 'm = tl.model{data=d, backbone=tl.mmoe{experts=2, expert={16}}, towers={income=tl.mlp{8}, never_married=tl.mlp{4}}, emb=4, batch=256}'
line 'print(#d.train)'
if wait_for '^79810$' 30; then pass census_loaded; else fail census_loaded "no row count"; fi

# Completion of a model's methods through its metatable.
type_text 'm:fi'
key Tab
if wait_for 'm:fit' 3; then pass complete_model_method; else fail complete_model_method "m:fi<TAB> did not complete"; fi
key C-u

# A short fit shows an epoch line on a terminal.
line 'm:fit{data=d.train, epochs=1, max_steps=20}'
if wait_for 'epoch 1/1 .*step 20 +loss income' 60; then pass fit_progress_line; else fail fit_progress_line "no epoch line"; fi
wait_for '^> $' 10

line 'm.weights.income = 2; print("w", m.weights.income)'
if wait_for '^w +2' 5; then pass weight_changed; else fail weight_changed "weight not set"; fi

# A long fit interrupted by Ctrl-C returns to the prompt, model kept.
line 'm:fit{data=d.train, epochs=1000}'
wait_for 'epoch ' 60
sleep 0.5
key C-c
if wait_for 'interrupted' 10 && wait_for '^> $' 10; then pass ctrl_c_stops_fit; else fail ctrl_c_stops_fit "no return to the prompt after Ctrl-C"; fi
# One calm line saying where fit stopped and how to go on: not Lua's bare
# "interrupted!" with a traceback, nor an error line starting "stdin:1:".
stop_re='^interrupted at epoch ([0-9]+), step ([0-9]+) .{1,3} continue with m:fit\{\.\.\.\}$'
if [ "$(count_of "$stop_re")" -eq 1 ] && [ "$(count_of 'interrupted!|stack traceback|^[[:space:]]+\[C\]|^stdin:')" -eq 0 ]; then
  pass ctrl_c_fit_message
else
  fail ctrl_c_fit_message "no single 'interrupted at epoch E, step S - continue with m:fit{...}' line, or a traceback / stdin: prefix"
fi
stop_step=$(pane | sed -nE "s/$stop_re/\2/p" | tail -1)

line 'h = m:history().steps; print("steps", #h > 20, "last", h[#h].step)'
if wait_for "^steps +true +last +${stop_step:-none}\$" 5; then pass model_kept_after_interrupt
else fail model_kept_after_interrupt "history lost or not at step ${stop_step:-?}"; fi

# Ctrl-C while a Lua progress callback runs, with pcall around fit: the script
# catches fit's own message (not "progress callback failed: interrupted!") and
# carries on.
line 'ok, e = pcall(m.fit, m, {data=d.train, epochs=1000, progress=function(p) end}); print("caught", ok, e)'
wait_for 'epoch ' 60
sleep 0.5
key C-c
if wait_for '^caught +false +m:fit: training interrupted at epoch [0-9]+, step [0-9]+' 10 && wait_for '^> $' 10 &&
   [ "$(count_of 'progress callback failed|interrupted!')" -eq 0 ]; then
  pass ctrl_c_in_callback_caught_by_pcall
else
  fail ctrl_c_in_callback_caught_by_pcall "pcall did not get fit's interrupt message"
fi

# Ctrl-C while the callback itself calls the engine (a prediction per step):
# the interrupt delivered inside the callback still stops fit with its own
# message.
line 'ok, e = pcall(m.fit, m, {data=d.train, epochs=1000, progress=function(p) m:predict(d.valid) end}); print("caught2", ok, e)'
wait_for 'epoch ' 60
sleep 1
key C-c
if wait_for '^caught2 +false +m:fit: training interrupted at epoch [0-9]+, step [0-9]+' 20 && wait_for '^> $' 10 &&
   [ "$(count_of 'progress callback failed')" -eq 0 ]; then
  pass ctrl_c_in_engine_call_inside_callback
else
  fail ctrl_c_in_engine_call_inside_callback "fit did not stop with its interrupt message: $(pane | grep caught2 | tail -2)"
fi

# ... and it continues training and evaluates.
line 'm:fit{data=d.train, epochs=1, max_steps=5}; r = m:evaluate(d.test); print("auc", r.income.auc > 0.5)'
if wait_for '^auc +true' 60; then pass continues_after_interrupt; else fail continues_after_interrupt "could not continue"; fi

line 'r'
if wait_for '^never_married +0\.[0-9]+' 10; then pass result_table_printed; else fail result_table_printed "no per-task table"; fi

finish
