#!/usr/bin/env bash
# The program outside the prompt: --help/-h, a file-size limit (SIGXFSZ),
# and Ctrl-C caught with pcall in script mode (issue 25 items 6 and 17,
# issue 19 item 11). No tmux: plain processes.
. "$(dirname "$0")/lib.sh"

# --help and -h print the usage on stdout and exit 0; a bad option exits 1.
for opt in --help -h; do
  out=$("$BIN" $opt 2>/dev/null); rc=$?
  if [ "$rc" -eq 0 ] && printf '%s\n' "$out" | grep -q '^usage: .* \[options\] \[script \[args\]\]' &&
     printf '%s\n' "$out" | grep -q -- '-h, --help'; then
    pass "usage_$opt"
  else fail "usage_$opt" "rc $rc, output: $(printf '%s' "$out" | head -3)"; fi
done
"$BIN" --no-such-option >/dev/null 2>"$TMPD/err"; rc=$?
if [ "$rc" -ne 0 ] && grep -q "unrecognized option '--no-such-option'" "$TMPD/err"; then pass bad_option_fails
else fail bad_option_fails "rc $rc"; fi

# Over `ulimit -f` a write fails with EFBIG instead of SIGXFSZ killing the
# program (and a session's unsaved work with it).
out=$(cd "$TMPD" && bash -c 'ulimit -f 8; "$0" -e "
  local f = assert(io.open(\"big.bin\", \"wb\"))
  local ok, err = f:write(string.rep(\"x\", 1 << 20))
  if ok then ok, err = f:flush() end
  print(\"write\", ok, err)
  print(\"alive\")"' "$BIN" 2>&1); rc=$?
if [ "$rc" -eq 0 ] && printf '%s\n' "$out" | grep -q 'File too large' && printf '%s\n' "$out" | grep -q '^alive$'; then
  pass file_size_limit_is_an_error
else fail file_size_limit_is_an_error "rc $rc (153 = SIGXFSZ), output: $out"; fi

# Script mode: a Ctrl-C caught by pcall is delivered once; the engine works
# afterwards (no "predict interrupted" on the next m:evaluate).
cat > "$TMPD/int.lua" <<'LUA'
local pid = debug.getregistry()["tl.private"].getpid()
local function ctrl_c_in(s) os.execute(string.format("(sleep %s; kill -INT %d) &", s, pid)) end
local d = tl.datasets.synthetic{n = 3000, seed = 3}
local m = tl.model{data = d, backbone = tl.shared_bottom{bottom = {8}}, emb = 4, batch = 64}
ctrl_c_in(0.3)
local ok, e = pcall(function() while true do end end)
print("lua", ok, e)
local r1 = m:evaluate(d.test)
print("evaluate after lua", type(r1))
ctrl_c_in(0.5)
ok, e = pcall(m.fit, m, {data = d.train, epochs = 100000, verbose = false})
print("fit", ok, e)
local r2 = m:evaluate(d.test)
print("evaluate after fit", type(r2))
print("cancelled", tl.cancelled())
LUA
out=$(timeout 120 "$BIN" "$TMPD/int.lua" 2>&1); rc=$?
if printf '%s\n' "$out" | grep -q '^lua[[:space:]]*false[[:space:]].*interrupted!' &&
   printf '%s\n' "$out" | grep -q '^evaluate after lua[[:space:]]*table$'; then
  pass script_pcall_ctrl_c_in_lua_then_evaluate
else fail script_pcall_ctrl_c_in_lua_then_evaluate "rc $rc, output: $out"; fi
if printf '%s\n' "$out" | grep -q '^fit[[:space:]]*false[[:space:]].*training interrupted at epoch' &&
   printf '%s\n' "$out" | grep -q '^evaluate after fit[[:space:]]*table$' &&
   printf '%s\n' "$out" | grep -q '^cancelled[[:space:]]*false$' && [ "$rc" -eq 0 ]; then
  pass script_pcall_ctrl_c_in_fit_then_evaluate
else fail script_pcall_ctrl_c_in_fit_then_evaluate "rc $rc, output: $out"; fi

# make PORTABLE=1 compiles for a generic target, never -march=native (issue
# 19 item 16); dry run into a scratch build tree. -v names the target.
if command -v make >/dev/null 2>&1 && [ -f Makefile ]; then
  # SAN= and no inherited MAKEFLAGS: under make check the sanitizer flags replace -march
  dry=$(env -u MAKEFLAGS -u MFLAGS make -n SAN= PORTABLE=1 BUILD="$TMPD/b" all 2>&1)
  if printf '%s\n' "$dry" | grep -q -- '-march=x86-64-v2 -mtune=generic\|-march=armv8-a -mtune=generic' &&
     ! printf '%s\n' "$dry" | grep -q -- '-march=native'; then pass portable_build_flags
  else fail portable_build_flags "$(printf '%s\n' "$dry" | grep -m1 -- ' -c ')"; fi
  native=$(env -u MAKEFLAGS -u MFLAGS make -n SAN= BUILD="$TMPD/n" all 2>&1)
  if printf '%s\n' "$native" | grep -q -- '-march=native'; then pass default_build_is_native
  else fail default_build_is_native "no -march=native in the default build"; fi
else
  skip portable_build_flags "no make or Makefile"
fi
if "$BIN" -v | grep -qE '^towerlab [0-9.]+ \(Lua [0-9.]+; built for (native|portable [a-z0-9-]+)\)$'; then
  pass version_names_target
else fail version_names_target "$("$BIN" -v)"; fi

# make deps JUPYTER=1 adds Debian's jupyter-notebook front end (dry run: no apt).
if command -v dpkg-query >/dev/null 2>&1; then
  with=$(DEPS_DRY_RUN=1 JUPYTER=1 bash scripts/deps.sh 2>&1)
  without=$(DEPS_DRY_RUN=1 bash scripts/deps.sh 2>&1)
  if dpkg-query -W -f='${Status}' jupyter-notebook 2>/dev/null | grep -q "ok installed"; then
    want='all [0-9]+ packages present'
  else
    want='would install .*jupyter-notebook'
  fi
  if printf '%s\n' "$with" | grep -qE "$want" && ! printf '%s\n' "$without" | grep -q jupyter-notebook &&
     make -n deps JUPYTER=1 | grep -q 'JUPYTER=1 bash scripts/deps.sh'; then
    pass deps_jupyter_front_end
  else fail deps_jupyter_front_end "with: $with / without: $without"; fi
else
  skip deps_jupyter_front_end "no dpkg-query (not Debian)"
fi

# The tl.* openers are strong references (issue 20): a renamed opener fails
# the link instead of silently dropping a table. No weak symbol in l_tl.o.
obj="${BUILD:-build}/obj/repl/l_tl.o"
if command -v nm >/dev/null 2>&1 && [ -f "$obj" ]; then
  weak=$(nm "$obj" | awk '$(NF-1) ~ /^[wWvV]$/ {print $NF}')
  if [ -z "$weak" ]; then pass no_weak_openers; else fail no_weak_openers "weak symbols in $obj: $weak"; fi
else
  skip no_weak_openers "no nm or no $obj"
fi

finish
