#!/bin/sh
# `make chaos`: the long chaos run (spec/chaos/chaos_spec.lua) alone, with
# the same temporary directory and process-group bookkeeping as
# spec/run_all.sh. CHAOS_ROUNDS defaults to 200 and CHAOS_MINUTES to 30
# (the run stops starting rounds before that); CHAOS_SEED replays a run.
# Prints the summary (also written to $BUILD/chaos/report.txt) and exits
# non-zero on any violation.
set -u

BUILD=${BUILD:-build}
ROOT=$(pwd)
CHAOS_ROUNDS=${CHAOS_ROUNDS:-200}
CHAOS_MINUTES=${CHAOS_MINUTES:-30}
CHAOS_REPORT=${CHAOS_REPORT:-$ROOT/$BUILD/chaos/report.txt}
SCRATCH_NAME=disco-chaos
. "$ROOT/spec/scratch.sh"
export BUILD CHAOS_ROUNDS CHAOS_MINUTES CHAOS_REPORT

LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$ROOT/?.lua;;"
LUA_CPATH="$ROOT/$BUILD/lib/?.so;;"
export LUA_PATH LUA_CPATH
if [ "${SANITIZE:-0}" = 1 ]; then
  LD_PRELOAD="$(${CC:-cc} -print-file-name=libasan.so) $(${CC:-cc} -print-file-name=libubsan.so)"
  ASAN_OPTIONS=detect_leaks=0
  export LD_PRELOAD ASAN_OPTIONS
fi
rm -f "$CHAOS_REPORT"
# The spec stops starting rounds before CHAOS_MINUTES; the last round and
# the teardown get five more minutes before the run is killed.
timeout -s KILL $((CHAOS_MINUTES * 60 + 300)) luajit /usr/bin/busted --run=chaos --output=TAP
status=$?
unset LD_PRELOAD
echo "== chaos report ($CHAOS_REPORT)"
cat "$CHAOS_REPORT" 2>/dev/null || echo "no report: the run died before its end (status $status)"
exit $status
