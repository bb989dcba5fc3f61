#!/usr/bin/env bash
# golden.sh — golden predictions (scripts/golden.lua): the exact test-set
# predictions of a fixed set of short runs, keyed by platform.
#
#   scripts/golden.sh platform           print this machine's platform key
#   scripts/golden.sh record             write tests/golden/<platform>.txt.gz from ./towerlab
#   scripts/golden.sh check              compare ./towerlab with tests/golden/<platform>.txt.gz
#   scripts/golden.sh record BASE=commit build <commit> in a temporary git worktree and
#                                        record the golden file from its binary
#   scripts/golden.sh check BASE=commit  build <commit> in a temporary worktree and compare its
#                                        predictions with the current tree's (works on any
#                                        machine: both are computed here)
#   RUNS=pattern limits to the runs whose names match (a Lua pattern).
#
# Exit status: 0 identical (or recorded), 1 different, 3 skipped (no golden file for this
# platform: the message says how to record one), 2 usage or build error.
#
# The predictions depend on the CPU (OpenBLAS picks kernels per CPU model), the
# OpenBLAS version, the compiler and its flags, and the thread count (always 1 here).
# The platform key names all of them: OpenBLAS core (OPENBLAS_VERBOSE=2), OpenBLAS
# version, /proc/cpuinfo model name, compiler version, the Makefile's OPT flags.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${TL_GOLDEN_BIN:-./towerlab}
CC=${CC:-cc}

die() { echo "golden: $*" >&2; exit 2; }

# platform BIN -> the key (lower case, [a-z0-9._=+-] only). The compiler and flags
# come from the binary's DWARF producer string (gcc records its switches, with
# -march=native resolved to the CPU it chose); without one, from $CC and the Makefile.
platform() {
  local bin=$1 core ver cpu prod ccv opt
  core=$(OPENBLAS_VERBOSE=2 "$bin" -e '' 2>&1 >/dev/null | sed -n 's/^Core: //p' | head -1)
  ver=$(ldd "$bin" 2>/dev/null | awk '/libopenblas/ {print $3; exit}')
  ver=$( [ -n "$ver" ] && readlink -f "$ver" | sed -n 's/.*libopenblas[a-z]*-r\([0-9.]*\)\.so.*/\1/p')
  cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -1)
  prod=$(readelf --string-dump=.debug_str "$bin" 2>/dev/null | grep -m1 -o 'GNU C[0-9]* [0-9.]* .*')
  if [ -n "$prod" ]; then
    ccv=gcc-$(echo "$prod" | awk '{print $3}')
    opt=$(echo "$prod" | grep -o -e ' -O[0-9sgz]*' -e ' -march=[^ ]*' -e ' -fsanitize=[^ ]*' | tr -d ' ' | sort -u | tr '\n' ' ')
  else
    ccv=$("$CC" --version 2>/dev/null | head -1 | sed 's/([^)]*)//g')
    opt=$(sed -n 's/^OPT := //p' Makefile | head -1)
  fi
  printf '%s\n' "openblas-${core:-unknown}-${ver:-unknown}_${cpu:-unknown-cpu}_${ccv:-unknown-cc}_${opt}" |
    tr 'A-Z' 'a-z' | sed -e 's/(r)//g; s/(tm)//g; s/[^a-z0-9._=+-]\+/-/g; s/-\+/-/g; s/-_/_/g; s/_-/_/g; s/-$//'
}

mode=${1:-}
base=
for a in "${@:2}"; do
  case $a in
    BASE=*) base=${a#BASE=} ;;
    *) die "unknown argument '$a' (expected BASE=commit)" ;;
  esac
done
runs=${RUNS:-}

# build_base COMMIT -> sets BASE_BIN, BASE_DIR (a temporary worktree, removed at exit)
build_base() {
  local sha
  sha=$(git rev-parse --verify --quiet "$1^{commit}") || die "no such commit '$1'"
  BASE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tl-golden-base.XXXXXX")
  trap 'git -C "$ROOT" worktree remove --force "$BASE_DIR" >/dev/null 2>&1; rm -rf "$BASE_DIR"' EXIT
  git worktree add --detach "$BASE_DIR" "$sha" >/dev/null 2>&1 || die "git worktree add $sha failed"
  echo "golden: building $1 ($sha) in $BASE_DIR" >&2
  make -C "$BASE_DIR" -s -j"${JOBS:-2}" towerlab >"$BASE_DIR/build.log" 2>&1 ||
    { tail -20 "$BASE_DIR/build.log" >&2; die "the build of $1 failed"; }
  BASE_BIN=$BASE_DIR/towerlab
}

# produce BIN OUT [PLATFORM]: golden text of BIN (this tree's golden.lua and data)
produce() {
  "$1" scripts/golden.lua record "$2" "${3:-}" $runs >/dev/null ||
    die "the golden runs failed with $1"
}

current() {
  [ -x "$BIN" ] || make -s -j"${JOBS:-2}" towerlab >/dev/null || die "the build failed"
}

case $mode in
  platform)
    current
    platform "$BIN" ;;
  record)
    if [ -n "$base" ]; then build_base "$base"; bin=$BASE_BIN; else current; bin=$BIN; fi
    key=$(platform "$bin")
    mkdir -p tests/golden
    tmp=$(mktemp)
    produce "$bin" "$tmp" "$key"
    gzip -9 -n -c "$tmp" >"tests/golden/$key.txt.gz"
    rm -f "$tmp"
    echo "golden: recorded tests/golden/$key.txt.gz${base:+ from $base}" ;;
  check)
    current
    if [ -n "$base" ]; then
      build_base "$base"
      want=$(mktemp); got=$(mktemp)
      produce "$BASE_BIN" "$want" "$(platform "$BASE_BIN")"
      produce "$BIN" "$got" "$(platform "$BIN")"
      "$BIN" scripts/golden.lua compare "$want" "$got"
      rc=$?
      rm -f "$want" "$got"
      [ $rc -eq 0 ] && echo "golden: $base and the current tree agree bit for bit"
      exit $rc
    fi
    key=$(platform "$BIN")
    file=tests/golden/$key.txt.gz
    if [ ! -f "$file" ]; then
      echo "golden: SKIPPED: no golden file for this platform ($file);" \
           "record one at a trusted commit with: scripts/golden.sh record BASE=<commit>"
      exit 3
    fi
    want=$(mktemp)
    gzip -dc "$file" >"$want" || die "cannot read $file"
    "$BIN" scripts/golden.lua check "$want" $runs
    rc=$?
    rm -f "$want"
    exit $rc ;;
  *)
    sed -n '2,16s/^# \{0,1\}//p' "$0" >&2
    exit 2 ;;
esac
