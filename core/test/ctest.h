/*
 * ctest: the core's tiny test framework, and the list of core tests.
 *
 * A test is `void test_<name>(ctest_t *t)`. Assertions record the first
 * failure in `t` and return from the function they are in, so they work in
 * tests, callbacks and threads alike (all return void); a callback that
 * fails should also make its test stop waiting, which ctest_run_until()'s
 * deadline guarantees in any case.
 *
 * Output, parsed by a runner script: one line per test, "ok   <name>" or
 * "FAIL <name>: <file>:<line>: <message>", then "ctest: passed=N failed=M"
 * as the last line; the exit status is 1 when a test failed.
 * `core_tests NAME...` runs the named tests, `core_tests --list` lists them.
 */
#ifndef CTEST_H
#define CTEST_H

#include <stdint.h>
#include <string.h>

#include "disco.h"

typedef struct ctest_s ctest_t;

struct ctest_s {
  uv_mutex_t mutex; /* assertions may fail on any thread */
  int failed;
  char where[256];
  char message[512];
};

/* Any thread. Records a failure (the first one is the one reported). */
void ctest_fail(ctest_t *t, const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
int ctest_failed(ctest_t *t);

#define ASSERT(t, cond)                                                        \
  do {                                                                         \
    if (!(cond)) {                                                             \
      ctest_fail((t), __FILE__, __LINE__, "assertion failed: %s", #cond);      \
      return;                                                                  \
    }                                                                          \
  } while (0)

#define ASSERT_EQ(t, a, b)                                                     \
  do {                                                                         \
    long long ctest_a_ = (long long)(a);                                       \
    long long ctest_b_ = (long long)(b);                                       \
    if (ctest_a_ != ctest_b_) {                                                \
      ctest_fail((t), __FILE__, __LINE__, "%s == %s (%lld != %lld)", #a, #b,   \
                 ctest_a_, ctest_b_);                                          \
      return;                                                                  \
    }                                                                          \
  } while (0)

/* `op` is a comparison operator: ASSERT_CMP(t, n, <=, 10). */
#define ASSERT_CMP(t, a, op, b)                                                \
  do {                                                                         \
    long long ctest_a_ = (long long)(a);                                       \
    long long ctest_b_ = (long long)(b);                                       \
    if (!(ctest_a_ op ctest_b_)) {                                             \
      ctest_fail((t), __FILE__, __LINE__, "%s %s %s (%lld vs %lld)", #a, #op,  \
                 #b, ctest_a_, ctest_b_);                                      \
      return;                                                                  \
    }                                                                          \
  } while (0)

#define ASSERT_STR_EQ(t, a, b)                                                 \
  do {                                                                         \
    const char *ctest_a_ = (a);                                                \
    const char *ctest_b_ = (b);                                                \
    if (ctest_a_ == NULL || ctest_b_ == NULL ||                                \
        strcmp(ctest_a_, ctest_b_) != 0) {                                     \
      ctest_fail((t), __FILE__, __LINE__, "%s == %s (\"%s\" != \"%s\")", #a,   \
                 #b, ctest_a_ ? ctest_a_ : "(null)",                           \
                 ctest_b_ ? ctest_b_ : "(null)");                              \
      return;                                                                  \
    }                                                                          \
  } while (0)

/* `expr` returns 0 or a DISCO_E* code. */
#define ASSERT_OK(t, expr)                                                     \
  do {                                                                         \
    int ctest_err_ = (expr);                                                   \
    if (ctest_err_ != 0) {                                                     \
      ctest_fail((t), __FILE__, __LINE__, "%s failed: %s", #expr,              \
                 disco_err_name(ctest_err_));                                  \
      return;                                                                  \
    }                                                                          \
  } while (0)

/* ------------------------------------------------------ disco helpers */

/* Runs `loop` until `*done` is non-zero or `timeout_ms` have passed;
 * returns 0, or -1 on timeout (and records a failure). `*done` is set by
 * callbacks on the loop thread. */
int ctest_run_until_at(ctest_t *t, const char *file, int line,
                       disco_loop_t *loop, const int *done,
                       uint64_t timeout_ms);
#define ctest_run_until(t, loop, done, timeout_ms)                             \
  ctest_run_until_at((t), __FILE__, __LINE__, (loop), (done), (timeout_ms))

/* Divides event counts of the heavy tests by DISCO_CTEST_SCALE (default 1),
 * for slow runs such as valgrind's; never returns less than `min`. */
uint64_t ctest_scaled(uint64_t n, uint64_t min);

/* Captures what is written to stderr (fd 2) between begin and end into a
 * NUL-terminated heap string the caller frees; NULL on failure. */
typedef struct {
  int saved_fd;
  int file_fd;
} ctest_capture_t;
int ctest_capture_begin(ctest_capture_t *capture);
char *ctest_capture_end(ctest_capture_t *capture);

/* ------------------------------------------------------- the test list */

/*
 * Every test, in the order they run. The list lives here, next to the
 * framework, because the build rebuilds test objects when this header
 * changes.
 */
#define CTEST_LIST(X)                                                          \
  X(error_names_distinct)                                                      \
  X(error_unknown_code)                                                        \
  X(error_uv_translation)                                                      \
  X(log_level_names)                                                           \
  X(log_level_from_env)                                                        \
  X(log_level_filter)                                                          \
  X(log_sink_on_loop_thread)                                                   \
  X(log_truncation)                                                            \
  X(log_from_threads)                                                          \
  X(log_stderr_format)                                                         \
  X(log_after_close)                                                           \
  X(loop_init_run_close)                                                       \
  X(loop_close_walks_handles)                                                  \
  X(loop_close_idempotent)                                                     \
  X(loop_run_nowait)                                                           \
  X(loop_stop_from_callback)                                                   \
  X(loop_on_thread)                                                            \
  X(timer_once)                                                                \
  X(timer_repeat)                                                              \
  X(timer_stop)                                                                \
  X(timer_restart)                                                             \
  X(timer_close_in_callback)                                                   \
  X(timer_start_after_close)                                                   \
  X(timer_ref)                                                                 \
  X(signal_delivered)                                                          \
  X(signal_close)                                                              \
  X(signal_ref)                                                                \
  X(fs_event_change)                                                           \
  X(fs_event_restart)                                                          \
  X(fs_event_missing_path)                                                     \
  X(fs_event_stop)                                                             \
  X(fs_event_close)                                                            \
  X(fs_event_ref)                                                              \
  X(fs_event_loop_close)                                                       \
  X(queue_million_from_threads)                                                \
  X(queue_close_while_pushing)                                                 \
  X(queue_reentrant_push)                                                      \
  X(queue_close_cancels_pending)                                               \
  X(queue_push_after_close)                                                    \
  X(queue_bursts_and_lone_items)                                               \
  X(queue_close_during_burst)                                                  \
  X(queue_probe)                                                               \
  X(queue_probe_loop_close)                                                    \
  X(queue_probe_invalid)                                                       \
  X(pool_records)                                                              \
  X(zk_error_translation)                                                      \
  X(zk_options_invalid)                                                        \
  X(zk_close_before_connect)                                                   \
  X(zk_requests_after_close)                                                   \
  X(zk_close_with_requests)                                                    \
  X(zk_loop_close)                                                             \
  X(zk_handles_close)                                                          \
  X(zk_ephemeral_state_names)                                                  \
  X(md5_vectors)                                                               \
  X(revcache_single_flight)                                                    \
  X(revcache_sync_answers)                                                     \
  X(revcache_evict_entries)                                                    \
  X(revcache_evict_bytes)                                                      \
  X(revcache_failure_retry)                                                    \
  X(revcache_retry_policy)                                                     \
  X(revcache_drop_unwanted)                                                    \
  X(revcache_persist)                                                          \
  X(revcache_persist_corrupt)                                                  \
  X(revcache_close_cancels)                                                    \
  X(revcache_loop_close)                                                       \
  X(revcache_invalid)                                                          \
  X(h2_scalar_vectors)                                                         \
  X(h2_null_bool_double_forms)                                                 \
  X(h2_strings)                                                                \
  X(h2_chunked_strings)                                                        \
  X(h2_binary)                                                                 \
  X(h2_lists)                                                                  \
  X(h2_maps)                                                                   \
  X(h2_objects)                                                                \
  X(h2_refs_and_cycles)                                                        \
  X(h2_multi_values)                                                           \
  X(h2_truncated_everywhere)                                                   \
  X(h2_garbage)                                                                \
  X(h2_limits)                                                                 \
  X(h2_depth_bomb)                                                             \
  X(h2_roundtrip)                                                              \
  X(dubbo_frame_codec)                                                         \
  X(dubbo_status_and_desc)                                                     \
  X(dubbo_bodies)                                                              \
  X(dubbo_call_reply)                                                          \
  X(dubbo_concurrent_calls)                                                    \
  X(dubbo_reconnect)                                                           \
  X(dubbo_heartbeat_timeout)                                                   \
  X(dubbo_server_abuse)                                                        \
  X(http_keep_alive)                                                           \
  X(http_bodies)                                                               \
  X(http_byte_by_byte)                                                         \
  X(http_pipelined_in_order)                                                   \
  X(http_malformed)                                                            \
  X(http_limits)                                                               \
  X(http_request_timeout)                                                      \
  X(http_idle_timeout)                                                         \
  X(http_max_connections)                                                      \
  X(http_async_reply)                                                          \
  X(http_client_gone)                                                          \
  X(http_half_close)                                                           \
  X(http_close_with_connections)                                               \
  X(http_invalid)                                                              \
  X(http_client_keep_alive)                                                    \
  X(http_client_chunked_split)                                                 \
  X(http_client_until_close)                                                   \
  X(http_client_close_mid_body)                                                \
  X(http_client_read_timeout)                                                  \
  X(http_client_limits)                                                        \
  X(http_client_garbage)                                                       \
  X(http_client_refused)                                                       \
  X(http_client_connect_timeout)                                               \
  X(http_client_cancel)                                                        \
  X(http_client_close_pending)                                                 \
  X(http_client_close_in_callback)                                             \
  X(http_client_queue)                                                         \
  X(http_client_stale_retry)                                                   \
  X(http_client_loop_close)

#define CTEST_DECLARE(name) void test_##name(ctest_t *t);
CTEST_LIST(CTEST_DECLARE)
#undef CTEST_DECLARE

#endif /* CTEST_H */
