# Sourced by the test runners (spec/run_all.sh, spec/run_tsan.sh,
# spec/chaos/run.sh): everything a run starts or writes lives under one
# temporary directory, removed at exit, and every process group the helpers
# start is recorded in $DISCO_TEST_PIDFILE and killed at exit, so that a
# crashed or interrupted run still leaves nothing behind.
# Set SCRATCH_NAME (the directory's prefix under /tmp) before sourcing.
DISCO_TEST_TMPDIR=$(mktemp -d "/tmp/${SCRATCH_NAME:-disco-test}.XXXXXX")
DISCO_TEST_PIDFILE=$DISCO_TEST_TMPDIR/pgids
export DISCO_TEST_TMPDIR DISCO_TEST_PIDFILE

cleanup() {
  if [ -f "$DISCO_TEST_PIDFILE" ]; then
    while read -r pgid; do
      case $pgid in
        '' | *[!0-9]*) ;;
        *) kill -KILL -- "-$pgid" 2>/dev/null ;;
      esac
    done <"$DISCO_TEST_PIDFILE"
  fi
  rm -rf "$DISCO_TEST_TMPDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
