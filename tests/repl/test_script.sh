#!/usr/bin/env bash
# Script mode as the lua program does it: arg, -e, -l, -i, -v, --threads,
# --seed, '-', exit statuses and tracebacks, usage; start-up time; the
# towerlab.so module from plain lua5.4.
source "$(dirname "$0")/lib.sh"

out="$TMPD/out"; err="$TMPD/err"
run() { "$BIN" "$@" >"$out" 2>"$err"; }

cat >"$TMPD/args.lua" <<'LUA'
print("arg0=" .. arg[0], "n=" .. #arg, "dots=" .. table.concat({...}, ","))
print("argm1=" .. tostring(arg[-1] ~= nil))
LUA
run "$TMPD/args.lua" a "b c"
if [ $? -eq 0 ] && grep -qxF "arg0=$TMPD/args.lua	n=2	dots=a,b c" "$out" && grep -qx 'argm1=true' "$out"; then
  pass script_arg_table; else fail script_arg_table "$(cat "$out" "$err")"; fi

cat >"$TMPD/bad.lua" <<'LUA'
local function inner() error("deliberate failure") end
inner()
LUA
run "$TMPD/bad.lua"; rc=$?
if [ $rc -ne 0 ] && grep -qF "bad.lua:1: deliberate failure" "$err" && grep -q '^stack traceback:' "$err" \
   && grep -qF "in local 'inner'" "$err"; then
  pass script_error_exit_and_traceback; else fail script_error_exit_and_traceback "rc=$rc $(cat "$err")"; fi

run "$TMPD/missing.lua"; rc=$?
if [ $rc -ne 0 ] && grep -qF "cannot open" "$err"; then pass missing_script_fails
else fail missing_script_fails "rc=$rc $(cat "$err")"; fi

printf 'x = = 1\n' >"$TMPD/syntax.lua"
run "$TMPD/syntax.lua"; rc=$?
if [ $rc -ne 0 ] && grep -qF "syntax.lua:1:" "$err"; then pass script_syntax_error
else fail script_syntax_error "rc=$rc $(cat "$err")"; fi

run -e 'print(1 + 1)' -e 'print(tl.version)'
if [ $? -eq 0 ] && [ "$(head -1 "$out")" = 2 ] && grep -qE '^[0-9]+\.[0-9]+\.[0-9]+$' "$out"; then
  pass dash_e_in_order; else fail dash_e_in_order "$(cat "$out" "$err")"; fi

run -e 'error("from -e")'; rc=$?
if [ $rc -ne 0 ] && grep -qF "from -e" "$err"; then pass dash_e_error_status
else fail dash_e_error_status "rc=$rc"; fi

run -e 'os.exit(3)'; rc=$?
if [ $rc -eq 3 ]; then pass os_exit_status; else fail os_exit_status "rc=$rc"; fi

mkdir -p "$TMPD/lib"
printf 'return {answer = 42}\n' >"$TMPD/lib/mymod.lua"
LUA_PATH="$TMPD/lib/?.lua;;" run -l mymod -l alias=mymod -e 'print(mymod.answer + alias.answer)'
if [ $? -eq 0 ] && [ "$(cat "$out")" = 84 ]; then pass dash_l_library
else fail dash_l_library "$(cat "$out" "$err")"; fi

run -v
if [ $? -eq 0 ] && grep -qE '^towerlab [0-9]+\.[0-9]+\.[0-9]+ \(Lua 5\.4' "$out"; then pass version_flag
else fail version_flag "$(cat "$out")"; fi
run --version
if grep -qE '^towerlab ' "$out"; then pass version_long_flag; else fail version_long_flag "$(cat "$out")"; fi

run --bogus; rc=$?
if [ $rc -ne 0 ] && grep -qF "unrecognized option '--bogus'" "$err" && grep -q '^usage:' "$err"; then
  pass unknown_option_usage; else fail unknown_option_usage "rc=$rc $(cat "$err")"; fi

run -e; rc=$?
if [ $rc -ne 0 ] && grep -qF "'-e' needs argument" "$err"; then pass dash_e_needs_argument
else fail dash_e_needs_argument "rc=$rc $(cat "$err")"; fi

run --seed 42 -e 'print(tl.seed)'
if [ "$(cat "$out")" = 42 ]; then pass seed_option; else fail seed_option "$(cat "$out" "$err")"; fi
run --seed 7 -e 'print(tl.tensor.randn(3):sum())'; a=$(cat "$out")
run --seed 7 -e 'print(tl.tensor.randn(3):sum())'; b=$(cat "$out")
run --seed 8 -e 'print(tl.tensor.randn(3):sum())'; c=$(cat "$out")
if [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" != "$c" ]; then pass seed_makes_runs_reproducible
else fail seed_makes_runs_reproducible "$a / $b / $c"; fi

run --seed x; rc=$?
if [ $rc -ne 0 ] && grep -qF "'--seed' needs" "$err"; then pass seed_option_checked
else fail seed_option_checked "rc=$rc"; fi

run --threads 2 -e 'print(tl.threads())'
if [ "$(cat "$out")" = 2 ]; then pass threads_option; else fail threads_option "$(cat "$out" "$err")"; fi

echo 'print("from " .. "stdin", ...)' | "$BIN" - x y >"$out" 2>"$err"
if [ "$(cat "$out")" = "from stdin	x	y" ]; then pass dash_reads_stdin
else fail dash_reads_stdin "$(cat "$out" "$err")"; fi

echo 'print(6 * 7)' | "$BIN" >"$out" 2>"$err"
if [ "$(cat "$out")" = 42 ]; then pass piped_stdin_runs_as_script
else fail piped_stdin_runs_as_script "$(cat "$out" "$err")"; fi

printf 'x = 41\n' >"$TMPD/setx.lua"
printf 'x + 1\n' | "$BIN" -i "$TMPD/setx.lua" >"$out" 2>"$err"
if grep -q '^42$' "$out"; then pass dash_i_prompt_after_script
else fail dash_i_prompt_after_script "$(cat "$out" "$err")"; fi

run -e 'tl.tensor.zeros(0)'; rc=$?
if [ $rc -ne 0 ] && grep -qF "tl.tensor.zeros: dimension 1 must be a positive integer" "$err"; then
  pass binding_error_message; else fail binding_error_message "$(cat "$err")"; fi

# Start-up time is measured by `make bench`, never by a timed test.

# The same library as a plain Lua module.
so="$(dirname "$BIN")/towerlab.so"
if ! command -v lua5.4 >/dev/null || [ ! -f "$so" ]; then
  skip plain_lua_require "lua5.4 or $so missing"
elif nm "$BIN" 2>/dev/null | grep -q __asan_init; then
  skip plain_lua_require "sanitizer build (lua5.4 is not instrumented)"
else
  LUA_CPATH="$(dirname "$so")/?.so;;" lua5.4 -e \
    'local tl = require "towerlab"; print(tl.version, tl.tensor{{1,2},{3,4}}:get(2,1), type(tl.pretty))' \
    >"$out" 2>"$err"
  if grep -qE '^[0-9.]+	3.0	function$' "$out"; then pass plain_lua_require
  else fail plain_lua_require "$(cat "$out" "$err")"; fi
fi

finish
