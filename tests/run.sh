#!/bin/sh
# Runs every suite (C unit tests, Lua specs, end-to-end tests, luacheck) and
# sums their "N passed, N failed" lines into the last line of the output.
BUILD=${BUILD:-build}
COGOS_BIN=$(pwd)/$BUILD/cogos
export COGOS_BIN
passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

suite() {
  name=$1
  shift
  echo "== $name"
  rc=$( { "$@" 2>&1; echo "rc=$?"; } | tee "$log" | grep -v '^rc=' >&2; sed -n 's/^rc=//p' "$log")
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  if [ -n "$line" ]; then
    p=$(echo "$line" | sed 's/ passed.*//')
    f=$(echo "$line" | sed 's/.* passed, \([0-9]*\) failed.*/\1/')
  else
    p=0
    f=0
  fi
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
    echo "!! $name exited with $rc" >&2
    f=1
  fi
  passed=$((passed + p))
  failed=$((failed + f))
}

for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] && suite "unit $(basename "$t")" "$t"
done
suite "spec" "$COGOS_BIN" lua tests/spec/run.lua
suite "e2e" "$COGOS_BIN" lua tests/spec/run.lua tests/e2e/*_spec.lua

echo "== luacheck"
if luacheck -q lua capabilities images tests >"$log" 2>&1; then
  passed=$((passed + 1))
else
  cat "$log" >&2
  failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
