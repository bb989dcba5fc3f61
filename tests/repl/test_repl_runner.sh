#!/usr/bin/env bash
# tests/run_tests.sh itself (issue 19 item 17, issue 20): skipped tests are
# listed with their reason, and the Lua, REPL and kernel suites are reported
# as skipped, not silently dropped, when the binary is missing.
. "$(dirname "$0")/lib.sh"

# A stand-in C test that skips one test with a reason and one without.
fake="$TMPD/test_fake"
cat > "$fake" <<'SH'
#!/bin/sh
echo "[ RUN      ] needs_census"
echo "SKIP needs_census: data/census missing"
echo "[  SKIPPED ] needs_census"
echo "[ RUN      ] quiet_skip"
echo "[  SKIPPED ] quiet_skip"
echo "[  PASSED  ] 1 test(s)."
echo "[  SKIPPED ] 2 test(s)."
SH
chmod +x "$fake"

out=$(BIN=/nonexistent/towerlab bash tests/run_tests.sh "$fake" 2>&1); rc=$?
n_suites=$(ls tests/lua/test_*.lua tests/repl/test_*.sh tests/kernel/test_*.py 2>/dev/null | wc -l)
if [ "$rc" -eq 0 ] && printf '%s\n' "$out" | grep -qE "^1 passed, 0 failed, $((n_suites + 2)) skipped$"; then
  pass missing_binary_suites_count_as_skipped
else fail missing_binary_suites_count_as_skipped "rc $rc, expected $((n_suites + 2)) skipped: $(printf '%s' "$out" | tail -3)"; fi
for f in test_repl_api.lua test_repl.sh test_kernel.py; do
  if printf '%s\n' "$out" | grep -qF "  $f: not run: no towerlab binary at /nonexistent/towerlab"; then
    pass "suite_skip_reason_$f"
  else fail "suite_skip_reason_$f" "no reason line for $f"; fi
done
if printf '%s\n' "$out" | grep -qF "  test_fake: needs_census: data/census missing" &&
   printf '%s\n' "$out" | grep -qF "  test_fake: quiet_skip: no reason given" &&
   [ "$(printf '%s\n' "$out" | grep -c 'needs_census')" -eq 1 ]; then
  pass skip_reasons_listed
else fail skip_reasons_listed "$(printf '%s' "$out" | sed -n '/^skipped:/,$p' | head -8)"; fi
finish
