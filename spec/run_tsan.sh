#!/bin/sh
# `make tsan`: the C core tests and the specs that drive the ZooKeeper
# thread handoff (libzookeeper_mt's I/O and completion threads pushing into
# the loop's event queue) against a real server, with disco built with
# -fsanitize=thread in $BUILD (build-tsan). Any ThreadSanitizer report, from
# this process or from a disco child process a spec starts, fails the run.
# Known races inside libzookeeper_mt are suppressed in core/test/tsan.supp.
set -u

BUILD=${BUILD:-build-tsan}
ROOT=$(pwd)

SCRATCH_NAME=disco-tsan
. "$ROOT/spec/scratch.sh"
export BUILD

# Reports go to files ($DISCO_TEST_TMPDIR/tsan.PID), not to stderr: specs
# send the stderr of the processes they start to /dev/null, and a report
# there must still fail the run. halt_on_error=0 lets a run collect them all.
REPORTS=$DISCO_TEST_TMPDIR/tsan
TSAN_OPTIONS="suppressions=$ROOT/core/test/tsan.supp log_path=$REPORTS halt_on_error=0 second_deadlock_stack=1"
export TSAN_OPTIONS

status=0

echo "== C core tests under TSan ($BUILD/test/core_tests)"
timeout -s KILL 300 "$BUILD/test/core_tests" >"$DISCO_TEST_TMPDIR/ctest.out" 2>&1 || status=1
grep '^FAIL ' "$DISCO_TEST_TMPDIR/ctest.out"

# The specs where a live session's threads hand results, watches and state
# changes to the loop: sessions, the cache, ephemerals, and the registry on
# top of them (which also starts `disco run` providers in other processes).
echo "== ZooKeeper specs under TSan"
LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$ROOT/?.lua;;"
LUA_CPATH="$ROOT/$BUILD/lib/?.so;;"
export LUA_PATH LUA_CPATH
# luajit is not instrumented, so the TSan runtime is preloaded. The
# variable is removed again as soon as luajit starts: a shell or a JVM that
# a TSan process starts with the runtime preloaded crashes (SIGSEGV) before
# it runs anything. disco child processes link the runtime themselves.
unset_preload='local ffi = require("ffi")
ffi.cdef("int unsetenv(const char *name);")
ffi.C.unsetenv("LD_PRELOAD")'
LD_PRELOAD=$(${CC:-cc} -print-file-name=libtsan.so) \
  timeout -s KILL 600 luajit -e "$unset_preload" /usr/bin/busted --output=TAP \
  spec/02-integration/zk_session_spec.lua \
  spec/02-integration/zk_cache_spec.lua \
  spec/02-integration/zk_ephemeral_spec.lua \
  spec/02-integration/registry_zookeeper_spec.lua \
  >"$DISCO_TEST_TMPDIR/busted.out" 2>&1
grep -E '^(not ok|1\.\.)' "$DISCO_TEST_TMPDIR/busted.out"
grep -A 12 '^not ok ' "$DISCO_TEST_TMPDIR/busted.out" | grep '^#' | head -n 60
bp=$(grep -c '^ok ' "$DISCO_TEST_TMPDIR/busted.out")
bf=$(grep -c '^not ok ' "$DISCO_TEST_TMPDIR/busted.out")
echo "busted: $bp ok, $bf not ok"
if [ "$bf" -ne 0 ] || ! grep -q '^1\.\.[0-9]*$' "$DISCO_TEST_TMPDIR/busted.out"; then
  status=1
fi

# One process that is provider and consumer at once: registration, the
# instance watch, the metadata fetch over dubbo, a provider leaving, close
# (the flow `make valgrind` runs; the ZooKeeper is started by the wrapper).
echo "== host flow under TSan (spec/valgrind/flow.lua)"
if timeout -s KILL 300 "$BUILD/disco" run spec/valgrind/with_zookeeper.lua 240 \
  "$BUILD/disco" run spec/valgrind/flow.lua >"$DISCO_TEST_TMPDIR/flow.out" 2>&1; then
  grep '^flow: all steps done' "$DISCO_TEST_TMPDIR/flow.out"
else
  grep -v ' INFO ' "$DISCO_TEST_TMPDIR/flow.out" | tail -n 20
  status=1
fi

reports=$(cat "$REPORTS".* 2>/dev/null | grep -c '^WARNING: ThreadSanitizer')
if [ "$reports" -ne 0 ]; then
  cat "$REPORTS".*
  status=1
fi
grep '^ctest: ' "$DISCO_TEST_TMPDIR/ctest.out"
echo "tsan: $reports ThreadSanitizer report(s)"
if [ "$status" -ne 0 ]; then
  echo "tsan: FAILED"
  exit 1
fi
echo "tsan: passed"
