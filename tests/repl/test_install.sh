#!/usr/bin/env bash
# make install PREFIX=<temp> and make uninstall (issue 24 item 7): the
# installed program, run from another directory with no TOWERLAB_DATA, loads
# tl.datasets.census() from <prefix>/share/towerlab/data; so does the
# installed Lua module from plain lua5.4; the kernelspec names the installed
# program; uninstall removes every installed file.
source "$(dirname "$0")/lib.sh"

P="$TMPD/prefix with space"
BUILD_DIR=${BUILD:-build}
# make with the flags this tree was built with (make check's SAN=1 also comes
# through MAKEFLAGS), so that installing never rebuilds it with others
SAN_ARG=; grep -q fsanitize "$BUILD_DIR/flags.stamp" 2>/dev/null && SAN_ARG=SAN=1
if ! [ -f data/census_income_kdd/census-income.test.gz ]; then
  skip install_and_run "data/census_income_kdd absent"
  finish
fi
if make --no-print-directory -s BUILD="$BUILD_DIR" $SAN_ARG install PREFIX="$P" >"$TMPD/make.log" 2>&1 \
   && [ -x "$P/bin/towerlab" ] && [ -f "$P/lib/lua/5.4/towerlab.so" ] \
   && [ -f "$P/share/towerlab/data/census_income_kdd/census-income.test.gz" ] \
   && ! ls "$P/share/towerlab/data/census_income_kdd" | grep -q tlcache; then
  pass install_files
else
  fail install_files "$(cat "$TMPD/make.log"; find "$P" 2>/dev/null)"
fi

mkdir -p "$TMPD/elsewhere"
out=$(cd "$TMPD/elsewhere" && env -u TOWERLAB_DATA "$P/bin/towerlab" -e 'print(tl.datasets.census())' 2>&1)
if printf '%s' "$out" | grep -qF "dataset census-income.test: 99762 rows" \
   && ls "$P/share/towerlab/data/census_income_kdd" | grep -q '\.tlcache$'; then
  pass installed_program_finds_its_data   # the cache written next to the installed copy: that copy was read
else
  fail installed_program_finds_its_data "$out"
fi

if nm "$BIN" 2>/dev/null | grep -q __asan_init; then
  skip installed_module_finds_its_data "sanitizer build (lua5.4 is not instrumented)"
elif command -v lua5.4 >/dev/null; then
  out=$(cd "$TMPD/elsewhere" && env -u TOWERLAB_DATA LUA_CPATH="$P/lib/lua/5.4/?.so" \
        lua5.4 -e 'local tl = require "towerlab"; print(#tl.datasets.census().all)' 2>&1)
  if [ "$out" = 99762 ]; then pass installed_module_finds_its_data
  else fail installed_module_finds_its_data "$out"; fi
else
  skip installed_module_finds_its_data "no lua5.4"
fi

k="$P/share/jupyter/kernels/towerlab/kernel.json"
if [ -f "$k" ] && grep -qF "\"$P/bin/towerlab\", \"--kernel\"" "$k"; then pass kernelspec_names_installed_program
else fail kernelspec_names_installed_program "$(cat "$k" 2>&1)"; fi

if make --no-print-directory -s BUILD="$BUILD_DIR" $SAN_ARG uninstall PREFIX="$P" >"$TMPD/make.log" 2>&1 \
   && [ -z "$(find "$P" -type f)" ]; then
  pass uninstall_removes_everything
else
  fail uninstall_removes_everything "$(cat "$TMPD/make.log"; find "$P" -type f)"
fi
finish
