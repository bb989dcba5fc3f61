#!/usr/bin/env bash
# Text plots at a real terminal (issue 19 item 10): fit{plot=true} on the
# dumb terminal starts each frame on its own line (not glued to the progress
# bar) and prints the final frame at the end (no stale frame); a plot call
# at the prompt echoes nothing (no `true`).
. "$(dirname "$0")/lib.sh"

if ! command -v gnuplot >/dev/null 2>&1; then skip plots "gnuplot not installed"; finish; fi
unset DISPLAY WAYLAND_DISPLAY
start_repl || { fail start "tmux could not start $BIN"; finish; }
wait_for '^> ' 30 || { fail start "no prompt"; finish; }

line 'tl.plot.terminal("dumb"); d = tl.datasets.synthetic{n = 16000, seed = 2}'
line 'm = tl.model{data=d, backbone=tl.shared_bottom{bottom={8}}, emb=4, batch=64}'
# ~3 ms per step: the fit lasts a few live-plot intervals (0.5 s)
line 'slow = function() local t = os.clock() + 0.003 while os.clock() < t do end end'
line 'm:fit{data=d.train, epochs=2, plot=true, verbose=true, progress=slow}; print("fit" .. "done")'
if wait_for '^fitdone$' 120; then pass fit_with_plot_returns; else fail fit_with_plot_returns "fit did not finish"; fi

# The frame title never shares a line with the progress bar.
if [ "$(count_of 'loss.*Training|Training.*loss')" -eq 0 ]; then pass frame_title_on_its_own_line
else fail frame_title_on_its_own_line "a frame's title glued to the progress line"; fi
# The last frame comes after the last epoch line: the end state is shown.
last_epoch=$(pane | grep -nE '^epoch 2/2' | tail -1 | cut -d: -f1)
last_frame=$(pane | grep -nE 'Training' | tail -1 | cut -d: -f1)
if [ -n "$last_epoch" ] && [ -n "$last_frame" ] && [ "$last_frame" -gt "$last_epoch" ]; then
  pass final_frame_after_training
else fail final_frame_after_training "last frame at line ${last_frame:-none}, last epoch line ${last_epoch:-none}"; fi

# A plot printed at the prompt: no `true` echoed after it.
line 'tl.plot.compare({{x=1, y=2}, {x=2, y=3}}, {x="x", y="y", title="CalAtPrompt"})'
wait_for 'CalAtPrompt' 20
line 'print("after" .. "plot")'
wait_for '^afterplot$' 10
if [ "$(count_of '^true$')" -eq 0 ]; then pass plot_echoes_nothing; else fail plot_echoes_nothing "a plot call printed true"; fi
line 'os.exit(0)'
finish
