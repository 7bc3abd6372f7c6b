/*
 * The MD5 digest (RFC 1321's test suite) and the revision cache.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "ctest.h"

/* ------------------------------------------------------------------ md5 */

void test_md5_vectors(ctest_t *t) {
  static const char *const vectors[][2] = {
    { "", "d41d8cd98f00b204e9800998ecf8427e" },
    { "a", "0cc175b9c0f1b6a831c399e269772661" },
    { "abc", "900150983cd24fb0d6963f7d28e17f72" },
    { "message digest", "f96b697d7cb7938d525a2f31aaf161d0" },
    { "abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b" },
    { "12345678901234567890123456789012345678901234567890123456789012345678901"
      "234567890",
      "57edf4a22be3c955ac49da2e2107b67a" },
    /* printf 'h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xe6\x9c\x8d\xe5\x8a\xa1'
     * | md5sum */
    { "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xe6\x9c\x8d\xe5\x8a\xa1",
      "1cadce35dcb0249bcbfea16600c104a9" },
  };
  char hex[33];
  size_t i;

  for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
    memset(hex, 'x', sizeof(hex));
    ASSERT_OK(t, disco_md5_hex(vectors[i][0], strlen(vectors[i][0]), hex));
    ASSERT_STR_EQ(t, hex, vectors[i][1]);
  }
  /* Bytes, not a C string: an embedded NUL counts. */
  ASSERT_OK(t, disco_md5_hex("a\0b", 3, hex));
  ASSERT(t, strcmp(hex, "0cc175b9c0f1b6a831c399e269772661") != 0);
  ASSERT_EQ(t, strlen(hex), 32);
  ASSERT_OK(t, disco_md5_hex(NULL, 0, hex));
  ASSERT_STR_EQ(t, hex, "d41d8cd98f00b204e9800998ecf8427e");
  ASSERT_EQ(t, disco_md5_hex(NULL, 1, hex), DISCO_EINVAL);
  ASSERT_EQ(t, disco_md5_hex("abc", 3, NULL), DISCO_EINVAL);
}

/* -------------------------------------------------------- revision cache */

#define RC_MAX_PENDING 16

enum { RC_HOLD = 0, RC_ASYNC = 1, RC_SYNC = 2 };

typedef struct {
  ctest_t *t;
  disco_loop_t *loop;
  disco_revcache_t *cache;
  disco_timer_t *owner; /* answers fetches a moment later (RC_ASYNC) */
  int mode;
  int fail_left; /* fetches to reject before resolving; -1: all */
  char pending[RC_MAX_PENDING][2][DISCO_REVCACHE_MAX_REVISION + 1];
  int npending;
  int fetch_calls;
  int completed;
  int completed_ok;
  int completed_err;
  int canceled;
  int last_status;
  char last_message[64];
  char last_bytes[64];
  int rewant;                /* want again from the callback of a failed want */
  uint64_t fetches_at_error; /* the fetch count when the last error came */
  int evicted;
  char evicted_rev[8][16];
  int reasons[8];
  int closed;
  int owner_closed;
  int done;
} rc_ctx_t;

static void rc_value(const char *rev, char *out, size_t size) {
  snprintf(out, size, "meta:%s", rev);
}

/* Answers every pending fetch: rejects while fail_left allows, else
 * resolves with "meta:<revision>". */
static void rc_answer(rc_ctx_t *ctx) {
  char app[DISCO_REVCACHE_MAX_REVISION + 1];
  char rev[DISCO_REVCACHE_MAX_REVISION + 1];
  char value[160];

  while (ctx->npending > 0) {
    ctx->npending--;
    memcpy(app, ctx->pending[ctx->npending][0], sizeof(app));
    memcpy(rev, ctx->pending[ctx->npending][1], sizeof(rev));
    if (ctx->fail_left != 0) {
      if (ctx->fail_left > 0)
        ctx->fail_left--;
      disco_revcache_reject(ctx->cache, app, rev, DISCO_EIO, "boom");
    } else {
      rc_value(rev, value, sizeof(value));
      disco_revcache_resolve(ctx->cache, app, rev, value, strlen(value));
    }
  }
}

static void rc_owner_cb(disco_timer_t *timer) {
  rc_answer(disco_timer_data(timer));
}

static void rc_owner_close_cb(void *handle, void *data) {
  (void)handle;
  ((rc_ctx_t *)data)->owner_closed++;
}

static void rc_fetch_cb(disco_revcache_t *cache, const char *app,
                        const char *rev) {
  rc_ctx_t *ctx = disco_revcache_data(cache);

  ctx->fetch_calls++;
  ASSERT(ctx->t, ctx->npending < RC_MAX_PENDING);
  snprintf(ctx->pending[ctx->npending][0], sizeof(ctx->pending[0][0]), "%s",
           app);
  snprintf(ctx->pending[ctx->npending][1], sizeof(ctx->pending[0][1]), "%s",
           rev);
  ctx->npending++;
  if (ctx->mode == RC_SYNC)
    rc_answer(ctx);
  else if (ctx->mode == RC_ASYNC)
    disco_timer_start(ctx->owner, rc_owner_cb, 1, 0);
}

static void rc_evict_cb(disco_revcache_t *cache, const char *app,
                        const char *rev, disco_revcache_evict_reason_t reason) {
  rc_ctx_t *ctx = disco_revcache_data(cache);

  ASSERT_STR_EQ(ctx->t, app, "app");
  ASSERT(ctx->t, ctx->evicted < 8);
  snprintf(ctx->evicted_rev[ctx->evicted], sizeof(ctx->evicted_rev[0]), "%s",
           rev);
  ctx->reasons[ctx->evicted] = (int)reason;
  ctx->evicted++;
}

static void rc_close_cb(void *handle, void *data) {
  rc_ctx_t *ctx = data;

  ASSERT(ctx->t, handle == ctx->cache);
  ctx->closed++;
}

static void rc_want_cb(disco_revcache_t *cache, const char *app,
                       const char *rev, int status, const char *message,
                       const char *bytes, size_t len, void *arg) {
  rc_ctx_t *ctx = arg;
  disco_revcache_value_t value;
  disco_revcache_stats_t st;
  char expect[160];

  ASSERT(ctx->t, disco_revcache_data(cache) == ctx);
  ctx->completed++;
  ctx->last_status = status;
  if (status == 0) {
    ctx->completed_ok++;
    rc_value(rev, expect, sizeof(expect));
    ASSERT_EQ(ctx->t, len, strlen(expect));
    ASSERT(ctx->t, memcmp(bytes, expect, len) == 0);
    snprintf(ctx->last_bytes, sizeof(ctx->last_bytes), "%.*s", (int)len, bytes);
  } else if (status == DISCO_ECANCELED) {
    ctx->canceled++;
  } else {
    ctx->completed_err++;
    disco_revcache_stats(cache, &st);
    ctx->fetches_at_error = st.fetches;
    snprintf(ctx->last_message, sizeof(ctx->last_message), "%s",
             message != NULL ? message : "");
    if (ctx->rewant) {
      /* The key is FAILED now: this waits for the next retry. */
      ASSERT_OK(ctx->t,
                disco_revcache_want(cache, app, rev, rc_want_cb, ctx, &value));
      ASSERT_EQ(ctx->t, value.ready, 0);
    }
  }
}

static void rc_setup(rc_ctx_t *ctx, ctest_t *t, disco_loop_t *loop) {
  memset(ctx, 0, sizeof(*ctx));
  ctx->t = t;
  ctx->loop = loop;
}

/* Options for tests: fast retries, no jitter. */
static void rc_test_options(disco_revcache_options_t *opts) {
  disco_revcache_options_init(opts);
  opts->fast_retry_ms = 20;
  opts->slow_retry_ms = 20;
  opts->jitter = 0;
  opts->persist_delay_ms = 20;
}

static int rc_open(rc_ctx_t *ctx, const disco_revcache_options_t *opts) {
  int err;

  err = disco_timer_new(ctx->loop, rc_owner_close_cb, ctx, &ctx->owner);
  if (err != 0)
    return err;
  return disco_revcache_new(ctx->loop, opts, rc_fetch_cb, rc_evict_cb,
                            rc_close_cb, ctx, &ctx->cache);
}

static void rc_close_all(rc_ctx_t *ctx) {
  disco_revcache_close(ctx->cache);
  disco_timer_close(ctx->owner);
}

/* A new loop with a cache (and its owner) on it; `opts` NULL for the
 * defaults. */
static int rc_start(rc_ctx_t *ctx, ctest_t *t, disco_loop_t *loop,
                    const disco_revcache_options_t *opts) {
  int err;

  err = disco_loop_init(loop);
  if (err != 0)
    return err;
  rc_setup(ctx, t, loop);
  return rc_open(ctx, opts);
}

/* rc_start() with an owner that answers a moment later, rejecting the
 * first `fail_left` fetches (-1: all). */
static int rc_start_async(rc_ctx_t *ctx, ctest_t *t, disco_loop_t *loop,
                          const disco_revcache_options_t *opts, int fail_left) {
  int err;

  err = rc_start(ctx, t, loop, opts);
  ctx->mode = RC_ASYNC;
  ctx->fail_left = fail_left;
  return err;
}

/* rc_start() with the test options and the file `path`. */
static int rc_start_persist(rc_ctx_t *ctx, ctest_t *t, disco_loop_t *loop,
                            disco_revcache_options_t *opts, const char *path) {
  rc_test_options(opts);
  opts->persist_path = path;
  return rc_start(ctx, t, loop, opts);
}

/* After rc_close_all(): runs the loop dry (the cache's close callback runs
 * once) and closes it. */
static void rc_drain(rc_ctx_t *ctx) {
  ASSERT_EQ(ctx->t, disco_loop_run(ctx->loop), 0);
  ASSERT_EQ(ctx->t, ctx->closed, 1);
  ASSERT_OK(ctx->t, disco_loop_close(ctx->loop));
}

/* Closes the cache and its owner, then the loop. */
static void rc_finish(rc_ctx_t *ctx) {
  rc_close_all(ctx);
  rc_drain(ctx);
}

/* Wants ("app", rev) with rc_want_cb. */
static int rc_want(rc_ctx_t *ctx, const char *rev,
                   disco_revcache_value_t *value) {
  return disco_revcache_want(ctx->cache, "app", rev, rc_want_cb, ctx, value);
}

/* rc_want() of a value that is not there yet. */
static void rc_want_pending(rc_ctx_t *ctx, const char *rev) {
  disco_revcache_value_t value;

  ASSERT_OK(ctx->t, rc_want(ctx, rev, &value));
  ASSERT_EQ(ctx->t, value.ready, 0);
}

/* rc_want() of a value that is there: `expect`, at once. */
static void rc_want_ready(rc_ctx_t *ctx, const char *rev, const char *expect) {
  disco_revcache_value_t value;

  ASSERT_OK(ctx->t, rc_want(ctx, rev, &value));
  ASSERT_EQ(ctx->t, value.ready, 1);
  ASSERT_EQ(ctx->t, value.len, strlen(expect));
  ASSERT(ctx->t, memcmp(value.bytes, expect, value.len) == 0);
}

/* Runs the loop until *counter reaches n. */
static void rc_run_until(rc_ctx_t *ctx, const int *counter, int n) {
  while (*counter < n)
    disco_loop_run_once(ctx->loop);
}

/* Puts ("app", rev) = the string `value`. */
static int rc_put(rc_ctx_t *ctx, const char *rev, const char *value) {
  return disco_revcache_put(ctx->cache, "app", rev, value, strlen(value));
}

/* The lookup result for ("app", rev); *len gets the value's length. */
static int rc_lookup(rc_ctx_t *ctx, const char *rev, size_t *len) {
  const char *bytes;

  return disco_revcache_lookup(ctx->cache, "app", rev, &bytes, len);
}

typedef struct {
  uv_timer_t timer;
  int expired;
  int closed;
} rc_sleep_t;

static void rc_sleep_cb(uv_timer_t *timer) {
  ((rc_sleep_t *)timer)->expired = 1;
}

static void rc_sleep_close_cb(uv_handle_t *handle) {
  ((rc_sleep_t *)handle)->closed = 1;
}

/* Runs the loop for `ms` milliseconds, with a raw libuv timer that the
 * cache does not see. */
static void rc_run_for(disco_loop_t *loop, uint64_t ms) {
  rc_sleep_t s;
  int i;

  memset(&s, 0, sizeof(s));
  uv_timer_init(&loop->uv, &s.timer);
  uv_timer_start(&s.timer, rc_sleep_cb, ms, 0);
  while (!s.expired)
    disco_loop_run_once(loop);
  uv_close((uv_handle_t *)&s.timer, rc_sleep_close_cb);
  for (i = 0; i < 10 && !s.closed; i++)
    disco_loop_run_nowait(loop);
}

/* A temporary file path under DISCO_TEST_TMPDIR (or /tmp); the directory is
 * removed by rc_rmdir. */
static int rc_tmpdir(char *dir, size_t size) {
  const char *root = getenv("DISCO_TEST_TMPDIR");

  snprintf(dir, size, "%s/revcache.XXXXXX", root != NULL ? root : "/tmp");
  return mkdtemp(dir) != NULL ? 0 : -1;
}

static void rc_rmdir(const char *dir, const char *file) {
  char path[512];

  snprintf(path, sizeof(path), "%s/%s", dir, file);
  unlink(path);
  snprintf(path, sizeof(path), "%s/%s.tmp", dir, file);
  unlink(path);
  rmdir(dir);
}

static void rc_stats(rc_ctx_t *ctx, disco_revcache_stats_t *st) {
  disco_revcache_stats(ctx->cache, st);
}

void test_revcache_single_flight(ctest_t *t) {
  disco_revcache_stats_t st;
  disco_loop_t loop;
  rc_ctx_t ctx;
  size_t len;
  int i;

  ASSERT_OK(t, rc_start(&ctx, t, &loop, NULL));
  for (i = 0; i < 100; i++)
    rc_want_pending(&ctx, "r1");
  rc_stats(&ctx, &st);
  ASSERT_EQ(t, ctx.fetch_calls, 1);
  ASSERT_EQ(t, st.fetches, 1);
  ASSERT_EQ(t, st.inflight, 1);
  ASSERT_EQ(t, st.misses, 100);
  ASSERT_EQ(t, ctx.completed, 0);
  ASSERT_EQ(t, rc_lookup(&ctx, "r1", &len), DISCO_ENOENT);
  /* The owner answers later, from the loop. */
  ASSERT_OK(t, disco_timer_start(ctx.owner, rc_owner_cb, 5, 0));
  ctx.done = 0;
  rc_run_until(&ctx, &ctx.completed, 100);
  ASSERT_EQ(t, ctx.completed, 100);
  ASSERT_EQ(t, ctx.completed_ok, 100);
  ASSERT_STR_EQ(t, ctx.last_bytes, "meta:r1");
  /* A hit answers at once and runs no callback. */
  rc_want_ready(&ctx, "r1", "meta:r1");
  ASSERT_OK(t, rc_lookup(&ctx, "r1", &len));
  ASSERT_EQ(t, len, 7);
  rc_stats(&ctx, &st);
  ASSERT_EQ(t, st.hits, 2);
  ASSERT_EQ(t, st.misses, 101);
  ASSERT_EQ(t, st.fetches, 1);
  ASSERT_EQ(t, st.inflight, 0);
  ASSERT_EQ(t, st.entries, 1);
  ASSERT_EQ(t, st.bytes, 7);
  ASSERT_EQ(t, ctx.completed, 100);
  rc_finish(&ctx);
}

void test_revcache_sync_answers(ctest_t *t) {
  disco_revcache_stats_t st;
  disco_loop_t loop;
  rc_ctx_t ctx;

  ASSERT_OK(t, rc_start(&ctx, t, &loop, NULL));
  /* An owner that answers inside the fetch callback: a resolve is a value
   * at once (no callback), a reject reaches the callback on the next loop
   * iteration, never from inside want. */
  ctx.mode = RC_SYNC;
  rc_want_ready(&ctx, "r1", "meta:r1");
  ctx.fail_left = 1;
  rc_want_pending(&ctx, "r2");
  ASSERT_EQ(t, ctx.completed, 0);
  rc_stats(&ctx, &st);
  ASSERT_EQ(t, st.failed, 1);
  ASSERT_EQ(t, st.failures, 1);
  disco_loop_run_nowait(&loop);
  ASSERT_EQ(t, ctx.completed, 1);
  ASSERT_EQ(t, ctx.last_status, DISCO_EIO);
  ASSERT_STR_EQ(t, ctx.last_message, "boom");
  /* One still deferred when the cache closes is canceled. */
  ctx.fail_left = 1;
  rc_want_pending(&ctx, "r3");
  rc_close_all(&ctx);
  ASSERT_EQ(t, ctx.completed, 2);
  ASSERT_EQ(t, ctx.canceled, 1);
  rc_drain(&ctx);
  ASSERT_EQ(t, ctx.completed, 2);
}

void test_revcache_evict_entries(ctest_t *t) {
  disco_revcache_options_t opts;
  disco_revcache_stats_t st;
  disco_loop_t loop;
  rc_ctx_t ctx;
  size_t len;

  rc_test_options(&opts);
  opts.max_entries = 3;
  ASSERT_OK(t, rc_start(&ctx, t, &loop, &opts));
  ASSERT_OK(t, rc_put(&ctx, "r1", "one"));
  ASSERT_OK(t, rc_put(&ctx, "r2", "two"));
  ASSERT_OK(t, rc_put(&ctx, "r3", "three"));
  /* r1 becomes the most recent, so r2 is the oldest. */
  ASSERT_OK(t, rc_lookup(&ctx, "r1", &len));
  ASSERT_OK(t, rc_put(&ctx, "r4", "four"));
  ASSERT_EQ(t, ctx.evicted, 1);
  ASSERT_STR_EQ(t, ctx.evicted_rev[0], "r2");
  ASSERT_EQ(t, ctx.reasons[0], DISCO_REVCACHE_EVICT_ENTRIES);
  ASSERT_STR_EQ(t, disco_revcache_evict_reason_name(ctx.reasons[0]), "entries");
  ASSERT_EQ(t, rc_lookup(&ctx, "r2", &len), DISCO_ENOENT);
  /* Replacing a value is no insertion. */
  ASSERT_OK(t, rc_put(&ctx, "r4", "FOUR!"));
  rc_stats(&ctx, &st);
  ASSERT_EQ(t, st.entries, 3);
  ASSERT_EQ(t, st.evictions, 1);
  ASSERT_EQ(t, st.bytes, 3 + 5 + 5);
  rc_finish(&ctx);
}

void test_revcache_evict_bytes(ctest_t *t) {
  disco_revcache_options_t opts;
  disco_revcache_stats_t st;
  disco_loop_t loop;
  rc_ctx_t ctx;

  rc_test_options(&opts);
  opts.max_bytes = 10;
  ASSERT_OK(t, rc_start(&ctx, t, &loop, &opts));
  ASSERT_OK(t, rc_put(&ctx, "a", "aaaa"));
  ASSERT_OK(t, rc_put(&ctx, "b", "bbbb"));
  ASSERT_EQ(t, ctx.evicted, 0);
  ASSERT_OK(t, rc_put(&ctx, "c", "cccccc"));
  /* 14 bytes: a goes (10), and the bound holds. */
  ASSERT_EQ(t, ctx.evicted, 1);
  ASSERT_STR_EQ(t, ctx.evicted_rev[0], "a");
  ASSERT_EQ(t, ctx.reasons[0], DISCO_REVCACHE_EVICT_BYTES);
  /* A value of exactly max_bytes empties the rest. */
  ASSERT_OK(t, rc_put(&ctx, "d", "dddddddddd"));
  ASSERT_EQ(t, ctx.evicted, 3);
  ASSERT_EQ(t, rc_put(&ctx, "e", "eeeeeeeeeee"), DISCO_ERANGE);
  rc_stats(&ctx, &st);
  ASSERT_EQ(t, st.entries, 1);
  ASSERT_EQ(t, st.bytes, 10);
  ASSERT_EQ(t, st.evictions, 3);
  rc_finish(&ctx);
}

void test_revcache_failure_retry(ctest_t *t) {
  disco_revcache_options_t opts;
  disco_revcache_stats_t st;
  disco_loop_t loop;
  rc_ctx_t ctx;

  rc_test_options(&opts);
  ASSERT_OK(t, rc_start_async(&ctx, t, &loop, &opts, 1));
  ctx.rewant = 1;
  rc_want_pending(&ctx, "r1");
  rc_want_pending(&ctx, "r1");
  /* Both waiters get the error; each wants again, which starts no fetch:
   * the cache's own retry (20 ms later) serves them. */
  rc_run_until(&ctx, &ctx.completed, 2);
  ASSERT_EQ(t, ctx.completed_err, 2);
  ASSERT_STR_EQ(t, ctx.last_message, "boom");
  ASSERT_EQ(t, ctx.fetches_at_error, 1);
  rc_run_until(&ctx, &ctx.completed, 4);
  ASSERT_EQ(t, ctx.completed_ok, 2);
  rc_stats(&ctx, &st);
  ASSERT_EQ(t, st.fetches, 2);
  ASSERT_EQ(t, st.failures, 1);
  ASSERT_EQ(t, st.failed, 0);
  ASSERT_EQ(t, st.entries, 1);
  rc_finish(&ctx);
  ASSERT_EQ(t, ctx.canceled, 0);
}

void test_revcache_retry_policy(ctest_t *t) {
  disco_revcache_options_t opts;
  disco_revcache_stats_t st;
  disco_loop_t loop;
  rc_ctx_t ctx;
  uint64_t start;

  rc_test_options(&opts);
  opts.fast_retries = 2;
  opts.fast_retry_ms = 20;
  opts.slow_retry_ms = 500;
  ASSERT_OK(t, rc_start_async(&ctx, t, &loop, &opts, -1));
  ctx.rewant = 1;
  disco_loop_update_time(&loop);
  start = disco_loop_now(&loop);
  rc_want_pending(&ctx, "r1");
  /* The first fetch and two fast retries, 20 ms apart... */
  rc_run_for(&loop, 150);
  rc_stats(&ctx, &st);
  ASSERT_EQ(t, st.fetches, 3);
  ASSERT_EQ(t, st.failures, 3);
  ASSERT_EQ(t, ctx.completed_err, 3);
  /* ...then the slow one, 500 ms after the third failure. */
  rc_run_until(&ctx, &ctx.fetch_calls, 4);
  ASSERT_CMP(t, disco_loop_now(&loop) - start, >=, 40 + 500);
  /* The waiter that the last failure re-armed is canceled by close. */
  rc_run_until(&ctx, &ctx.completed_err, 4);
  rc_close_all(&ctx);
  ASSERT_EQ(t, ctx.canceled, 1);
  rc_drain(&ctx);
}

void test_revcache_drop_unwanted(ctest_t *t) {
  disco_revcache_options_t opts;
  disco_revcache_stats_t st;
  disco_loop_t loop;
  rc_ctx_t ctx;

  rc_test_options(&opts);
  ASSERT_OK(t, rc_start_async(&ctx, t, &loop, &opts, -1));
  rc_want_pending(&ctx, "r1");
  rc_run_until(&ctx, &ctx.completed, 1);
  ASSERT_EQ(t, ctx.completed_err, 1);
  /* Nobody wants it again: one retry runs anyway, fails, and the entry
   * goes; nothing is retried after that. */
  rc_run_for(&loop, 150);
  rc_stats(&ctx, &st);
  ASSERT_EQ(t, st.fetches, 2);
  ASSERT_EQ(t, st.failures, 2);
  ASSERT_EQ(t, st.failed, 0);
  ASSERT_EQ(t, st.inflight, 0);
  ASSERT_EQ(t, ctx.completed, 1);
  /* A new want starts over with a fetch. */
  ctx.fail_left = 0;
  rc_want_pending(&ctx, "r1");
  ASSERT_EQ(t, ctx.fetch_calls, 3);
  rc_run_until(&ctx, &ctx.completed, 2);
  ASSERT_EQ(t, ctx.completed_ok, 1);
  rc_finish(&ctx);
}

/* Opens a cache on `path`, checks how many entries it loaded, closes it. */
static void rc_check_loaded(ctest_t *t, const char *path, uint64_t entries) {
  disco_revcache_options_t opts;
  disco_revcache_stats_t st;
  disco_loop_t loop;
  rc_ctx_t ctx;

  ASSERT_OK(t, rc_start_persist(&ctx, t, &loop, &opts, path));
  rc_stats(&ctx, &st);
  ASSERT_EQ(t, st.entries, entries);
  ASSERT_EQ(t, st.fetches, 0);
  rc_finish(&ctx);
}

void test_revcache_persist(ctest_t *t) {
  static const char binary[] = { 'x', '\0', 'y', '\377', '\n' };
  disco_revcache_options_t opts;
  disco_revcache_stats_t st;
  disco_loop_t loop;
  rc_ctx_t ctx;
  const char *bytes;
  size_t len;
  char dir[256];
  char path[300];

  ASSERT_EQ(t, rc_tmpdir(dir, sizeof(dir)), 0);
  snprintf(path, sizeof(path), "%s/revs.bin", dir);

  /* A missing file is an empty cache. */
  ASSERT_OK(t, rc_start_persist(&ctx, t, &loop, &opts, path));
  ASSERT_OK(t, rc_put(&ctx, "r1", "one"));
  ASSERT_OK(t, disco_revcache_put(ctx.cache, "app", "r2", binary, 5));
  ASSERT_OK(t, disco_revcache_put(ctx.cache, "other", "r1", "", 0));
  ASSERT_OK(t, disco_revcache_save(ctx.cache));
  ASSERT_EQ(t, access(path, F_OK), 0);
  rc_finish(&ctx);

  /* A restarted consumer knows every revision without a fetch. */
  ASSERT_OK(t, rc_start(&ctx, t, &loop, &opts));
  ASSERT_OK(t, disco_revcache_lookup(ctx.cache, "app", "r2", &bytes, &len));
  ASSERT_EQ(t, len, 5);
  ASSERT(t, memcmp(bytes, binary, 5) == 0);
  ASSERT_OK(t, disco_revcache_lookup(ctx.cache, "other", "r1", &bytes, &len));
  ASSERT_EQ(t, len, 0);
  rc_want_ready(&ctx, "r1", "one");
  rc_stats(&ctx, &st);
  ASSERT_EQ(t, st.entries, 3);
  ASSERT_EQ(t, st.hits, 3);
  ASSERT_EQ(t, st.fetches, 0);
  /* A change is written after persist_delay_ms, without a save. */
  ASSERT_OK(t, rc_put(&ctx, "r3", "three"));
  rc_run_for(&loop, 80);
  rc_check_loaded(t, path, 4);
  /* And on close. */
  ASSERT_OK(t, rc_put(&ctx, "r4", "four"));
  rc_finish(&ctx);
  rc_check_loaded(t, path, 5);
  rc_rmdir(dir, "revs.bin");
}

/* Writes `len` bytes of `data` to `path`. */
static int rc_write(const char *path, const char *data, size_t len) {
  FILE *f = fopen(path, "wb");
  int ok;

  if (f == NULL)
    return -1;
  ok = fwrite(data, 1, len, f) == len;
  return fclose(f) == 0 && ok ? 0 : -1;
}

static char *rc_read(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *data;

  if (f == NULL)
    return NULL;
  data = malloc(65536);
  *len = data != NULL ? fread(data, 1, 65536, f) : 0;
  fclose(f);
  return data;
}

static void rc_put_le(unsigned char *p, uint64_t v, int n) {
  int i;

  for (i = 0; i < n; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

/* Defect: a record whose value length is near 2^64 wrapped the length sum
 * in the payload check, so the file passed, and loading copied SIZE_MAX
 * bytes into a 0-byte buffer. With max_bytes = SIZE_MAX (the API allows
 * it), a record of lengths 1, 1 and UINT64_MAX followed by one byte must
 * be refused as truncated, whatever its checksum. */
static void rc_check_length_wrap(ctest_t *t, const char *path) {
  unsigned char file[56 + 16 + 1];
  disco_revcache_options_t opts;
  disco_revcache_stats_t st;
  disco_loop_t loop;
  rc_ctx_t ctx;
  unsigned dlen;

  memset(file, 0, sizeof(file));
  memcpy(file, "DISCORC\0", 8);
  rc_put_le(file + 8, 1, 4);
  rc_put_le(file + 12, 1, 4);
  rc_put_le(file + 16, 16 + 1, 8);
  rc_put_le(file + 56, 1, 4);
  rc_put_le(file + 60, 1, 4);
  rc_put_le(file + 64, UINT64_MAX, 8);
  file[72] = 'a';
  ASSERT(t, EVP_Digest(file + 56, 16 + 1, file + 24, &dlen, EVP_sha256(),
                       NULL) == 1);
  ASSERT_EQ(t, rc_write(path, (const char *)file, sizeof(file)), 0);
  rc_test_options(&opts);
  opts.persist_path = path;
  opts.max_bytes = SIZE_MAX;
  ASSERT_OK(t, rc_start(&ctx, t, &loop, &opts));
  rc_stats(&ctx, &st);
  ASSERT_EQ(t, st.entries, 0);
  ASSERT_EQ(t, st.bytes, 0);
  rc_finish(&ctx);
}

void test_revcache_persist_corrupt(ctest_t *t) {
  disco_revcache_options_t opts;
  ctest_capture_t capture;
  disco_loop_t loop;
  rc_ctx_t ctx;
  char dir[256];
  char path[300];
  char *good;
  char *log;
  size_t len;

  ASSERT_EQ(t, rc_tmpdir(dir, sizeof(dir)), 0);
  snprintf(path, sizeof(path), "%s/revs.bin", dir);
  ASSERT_OK(t, rc_start_persist(&ctx, t, &loop, &opts, path));
  ASSERT_OK(t, rc_put(&ctx, "r1", "one"));
  ASSERT_OK(t, rc_put(&ctx, "r2", "two"));
  rc_finish(&ctx);
  good = rc_read(path, &len);
  ASSERT(t, good != NULL);
  ASSERT_EQ(t, len, 56 + 2 * (16 + 3 + 2 + 3));
  rc_check_loaded(t, path, 2);

  ASSERT_EQ(t, ctest_capture_begin(&capture), 0);
  /* Truncated: in the header, and in the last record. */
  rc_write(path, good, 20);
  rc_check_loaded(t, path, 0);
  rc_write(path, good, len - 1);
  rc_check_loaded(t, path, 0);
  /* One flipped byte in a value: the checksum catches it. */
  good[len - 1] ^= 0x20;
  rc_write(path, good, len);
  rc_check_loaded(t, path, 0);
  good[len - 1] ^= 0x20;
  /* A wrong magic, and an empty file. */
  good[0] = 'X';
  rc_write(path, good, len);
  rc_check_loaded(t, path, 0);
  rc_write(path, good, 0);
  rc_check_loaded(t, path, 0);
  log = ctest_capture_end(&capture);
  free(good);
  ASSERT(t, log != NULL);
  ASSERT(t, strstr(log, "checksum mismatch") != NULL);
  ASSERT(t, strstr(log, "truncated") != NULL);
  ASSERT(t, strstr(log, "not a revision cache file") != NULL);
  free(log);

  ASSERT_EQ(t, ctest_capture_begin(&capture), 0);
  rc_check_length_wrap(t, path);
  log = ctest_capture_end(&capture);
  ASSERT(t, log != NULL);
  ASSERT(t, strstr(log, "truncated record") != NULL);
  free(log);
  rc_rmdir(dir, "revs.bin");
}

void test_revcache_close_cancels(ctest_t *t) {
  disco_revcache_value_t value;
  disco_revcache_stats_t st;
  disco_loop_t loop;
  rc_ctx_t ctx;

  ASSERT_OK(t, rc_start(&ctx, t, &loop, NULL));
  rc_want_pending(&ctx, "r1");
  rc_want_pending(&ctx, "r1");
  rc_want_pending(&ctx, "r2");
  rc_stats(&ctx, &st);
  ASSERT_EQ(t, st.inflight, 2);
  disco_revcache_close(ctx.cache);
  ASSERT_EQ(t, ctx.canceled, 3);
  ASSERT_EQ(t, ctx.completed, 3);
  /* Idempotent, and closed to everything. */
  disco_revcache_close(ctx.cache);
  ASSERT_EQ(t, disco_revcache_resolve(ctx.cache, "app", "r1", "x", 1),
            DISCO_ECLOSED);
  ASSERT_EQ(t, rc_want(&ctx, "r1", &value), DISCO_ECLOSED);
  ASSERT_EQ(t, ctx.closed, 0);
  disco_timer_close(ctx.owner);
  rc_drain(&ctx);
  ASSERT_EQ(t, ctx.completed, 3);
}

void test_revcache_loop_close(ctest_t *t) {
  disco_loop_t loop;
  rc_ctx_t ctx;

  ASSERT_OK(t, rc_start(&ctx, t, &loop, NULL));
  rc_want_pending(&ctx, "r1");
  /* The loop's close walk closes the cache like its owner would. */
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx.canceled, 1);
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_EQ(t, ctx.owner_closed, 1);
}

/* Defect: with max_bytes = SIZE_MAX, a length of SIZE_MAX passed the bound
 * and len + 1 wrapped to a 0-byte copy that memcpy then overran. It is
 * refused before any byte is read. */
static void rc_check_put_size_max(ctest_t *t) {
  disco_revcache_options_t opts;
  disco_revcache_stats_t st;
  disco_loop_t loop;
  rc_ctx_t ctx;

  rc_test_options(&opts);
  opts.max_bytes = SIZE_MAX;
  ASSERT_OK(t, rc_start(&ctx, t, &loop, &opts));
  ASSERT_EQ(t, disco_revcache_put(ctx.cache, "app", "r", "v", SIZE_MAX),
            DISCO_ERANGE);
  ASSERT_EQ(t, disco_revcache_resolve(ctx.cache, "app", "r", "v", SIZE_MAX),
            DISCO_ERANGE);
  rc_stats(&ctx, &st);
  ASSERT_EQ(t, st.entries, 0);
  rc_finish(&ctx);
}

void test_revcache_invalid(ctest_t *t) {
  disco_revcache_options_t opts;
  disco_revcache_value_t value;
  disco_revcache_t *cache;
  disco_loop_t loop;
  rc_ctx_t ctx;
  char app[DISCO_REVCACHE_MAX_APP + 2];
  char rev[DISCO_REVCACHE_MAX_REVISION + 2];

  ASSERT_OK(t, disco_loop_init(&loop));
  rc_setup(&ctx, t, &loop);
  ASSERT_EQ(t, disco_revcache_new(&loop, NULL, NULL, NULL, NULL, NULL, &cache),
            DISCO_EINVAL);
  disco_revcache_options_init(&opts);
  opts.jitter = 2;
  ASSERT_EQ(t, rc_open(&ctx, &opts), DISCO_EINVAL);
  opts.jitter = 0;
  opts.max_entries = 0;
  ASSERT_EQ(
      t,
      disco_revcache_new(&loop, &opts, rc_fetch_cb, NULL, NULL, NULL, &cache),
      DISCO_EINVAL);
  rc_test_options(&opts);
  opts.max_bytes = 16;
  ASSERT_OK(t, disco_revcache_new(&loop, &opts, rc_fetch_cb, rc_evict_cb,
                                  rc_close_cb, &ctx, &ctx.cache));

  memset(app, 'a', sizeof(app));
  app[DISCO_REVCACHE_MAX_APP] = '\0';
  memset(rev, 'r', sizeof(rev));
  rev[DISCO_REVCACHE_MAX_REVISION] = '\0';
  /* At the bounds is fine. */
  ASSERT_OK(t, disco_revcache_put(ctx.cache, app, rev, "v", 1));
  app[DISCO_REVCACHE_MAX_APP] = 'a';
  app[DISCO_REVCACHE_MAX_APP + 1] = '\0';
  rev[DISCO_REVCACHE_MAX_REVISION] = 'r';
  rev[DISCO_REVCACHE_MAX_REVISION + 1] = '\0';
  ASSERT_EQ(t, disco_revcache_put(ctx.cache, app, "r", "v", 1), DISCO_EINVAL);
  ASSERT_EQ(t, rc_put(&ctx, rev, "v"), DISCO_EINVAL);
  ASSERT_EQ(t, disco_revcache_put(ctx.cache, "", "r", "v", 1), DISCO_EINVAL);
  ASSERT_EQ(t, rc_want(&ctx, "", &value), DISCO_EINVAL);
  ASSERT_EQ(t, disco_revcache_want(ctx.cache, "app", "r", NULL, &ctx, &value),
            DISCO_EINVAL);
  ASSERT_EQ(t, rc_put(&ctx, "r", "0123456789abcdefX"), DISCO_ERANGE);
  ASSERT_EQ(t, disco_revcache_reject(ctx.cache, "app", "r", DISCO_EIO, "x"),
            DISCO_ENOENT);
  ASSERT_EQ(t, disco_revcache_save(ctx.cache), DISCO_EINVAL);
  /* An oversize answer to a fetch is that fetch's failure. */
  rc_want_pending(&ctx, "big");
  ASSERT_EQ(
      t,
      disco_revcache_resolve(ctx.cache, "app", "big", "0123456789abcdefX", 17),
      DISCO_ERANGE);
  ASSERT_EQ(t, ctx.completed, 1);
  ASSERT_EQ(t, ctx.last_status, DISCO_ERANGE);
  ASSERT_EQ(t, ctx.completed_err, 1);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx.closed, 1);
  rc_check_put_size_max(t);
}
