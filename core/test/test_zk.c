/*
 * ZooKeeper sessions without a server: the error map, option checks, and
 * the close paths (before any connection, with requests in flight, from
 * disco_loop_close()). Everything that needs a real server is in
 * spec/02-integration/zk_session_spec.lua.
 */
#include <zookeeper/zookeeper.h>

#include "ctest.h"

/* Nothing listens on port 1 of the loopback: the handle keeps connecting. */
#define TEST_ZK_NOWHERE "127.0.0.1:1"

typedef struct {
  ctest_t *t;
  disco_zk_t *zk;
  int closed;
  int states[8];
  int completed;
  int last_err;
  int watch_ended;
  int watch_status;
} test_zk_ctx_t;

static void test_zk_state_cb(disco_zk_t *zk, disco_zk_state_t state,
                             uint64_t generation) {
  test_zk_ctx_t *ctx;

  (void)generation;
  ctx = disco_zk_data(zk);
  if ((int)state >= 0 && (int)state < 8)
    ctx->states[state]++;
}

static void test_zk_close_cb(void *handle, void *data) {
  test_zk_ctx_t *ctx;

  ctx = data;
  ASSERT(ctx->t, handle == ctx->zk);
  ctx->closed++;
}

static void test_zk_result_cb(disco_zk_t *zk, const disco_zk_result_t *result,
                              void *data) {
  test_zk_ctx_t *ctx;

  (void)zk;
  ctx = data;
  ctx->completed++;
  ctx->last_err = result->err;
}

static void test_zk_watch_cb(disco_zk_t *zk, const disco_zk_event_t *event,
                             void *data) {
  test_zk_ctx_t *ctx;

  (void)zk;
  ctx = data;
  ctx->watch_ended++;
  ctx->watch_status = event->status;
}

static void test_zk_opts(disco_zk_options_t *opts, const char *hosts) {
  memset(opts, 0, sizeof(*opts));
  opts->hosts = hosts;
}

/* Zeroes `ctx`, initialises `loop` and opens a session on a host nobody
 * listens on, so it stays CONNECTING. Returns 0, or -1 after reporting the
 * failure (the caller returns). */
static int test_zk_open(ctest_t *t, disco_loop_t *loop, test_zk_ctx_t *ctx) {
  disco_zk_options_t opts;
  int err;

  memset(ctx, 0, sizeof(*ctx));
  ctx->t = t;
  err = disco_loop_init(loop);
  if (err != 0) {
    ctest_fail(t, __FILE__, __LINE__, "disco_loop_init: %s",
               disco_err_name(err));
    return -1;
  }
  test_zk_opts(&opts, TEST_ZK_NOWHERE);
  err = disco_zk_new(loop, &opts, test_zk_state_cb, test_zk_close_cb, ctx,
                     &ctx->zk);
  if (err != 0) {
    ctest_fail(t, __FILE__, __LINE__, "disco_zk_new: %s", disco_err_name(err));
    return -1;
  }
  return 0;
}

void test_zk_error_translation(ctest_t *t) {
  static const struct {
    int zk;
    int disco;
  } map[] = {
    { ZOK, 0 },
    { ZNONODE, DISCO_ENONODE },
    { ZNODEEXISTS, DISCO_ENODEEXISTS },
    { ZBADVERSION, DISCO_EBADVERSION },
    { ZNOTEMPTY, DISCO_ENOTEMPTY },
    { ZNOAUTH, DISCO_ENOAUTH },
    { ZCONNECTIONLOSS, DISCO_ECONNLOSS },
    { ZOPERATIONTIMEOUT, DISCO_ECONNLOSS },
    { ZSESSIONEXPIRED, DISCO_ESESSIONEXPIRED },
    { ZINVALIDSTATE, DISCO_ESESSIONEXPIRED },
    { ZAUTHFAILED, DISCO_EAUTHFAILED },
    { ZCLOSING, DISCO_ECLOSED },
    { ZBADARGUMENTS, DISCO_EINVAL },
    { ZMARSHALLINGERROR, DISCO_EZK },
    { ZSYSTEMERROR, DISCO_EZK },
    { -9999, DISCO_EZK },
  };
  size_t i;

  for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
    ASSERT_EQ(t, disco_translate_zk_error(map[i].zk), map[i].disco);
  ASSERT_STR_EQ(t, disco_err_name(DISCO_ECONNLOSS), "ECONNLOSS");
  ASSERT_STR_EQ(t, disco_err_name(DISCO_EZK), "EZK");
  ASSERT_STR_EQ(t, disco_zk_state_name(DISCO_ZK_EXPIRED), "expired");
  ASSERT_STR_EQ(t, disco_zk_event_name(DISCO_ZK_EVENT_CHILD), "child");
}

void test_zk_options_invalid(ctest_t *t) {
  static const char *const bad_hosts[] = {
    "",      "localhost", "h:",       ":2181", "h:0",    "h:65536",
    "h:12x", "h:1,",      "h:1,,h:2", "h:1/",  "h:1/a/", "/chroot",
  };
  disco_zk_options_t opts;
  disco_loop_t loop;
  disco_zk_t *zk;
  size_t i;

  ASSERT_OK(t, disco_loop_init(&loop));
  zk = NULL;
  test_zk_opts(&opts, NULL);
  ASSERT_EQ(t, disco_zk_new(&loop, &opts, NULL, NULL, NULL, &zk), DISCO_EINVAL);
  for (i = 0; i < sizeof(bad_hosts) / sizeof(bad_hosts[0]); i++) {
    test_zk_opts(&opts, bad_hosts[i]);
    if (disco_zk_new(&loop, &opts, NULL, NULL, NULL, &zk) != DISCO_EINVAL) {
      ctest_fail(t, __FILE__, __LINE__, "hosts \"%s\" accepted", bad_hosts[i]);
      return;
    }
  }
  test_zk_opts(&opts, TEST_ZK_NOWHERE);
  opts.session_timeout_ms = -1;
  ASSERT_EQ(t, disco_zk_new(&loop, &opts, NULL, NULL, NULL, &zk), DISCO_EINVAL);
  test_zk_opts(&opts, TEST_ZK_NOWHERE);
  opts.acl = DISCO_ZK_ACL_CREATOR_ALL;
  ASSERT_EQ(t, disco_zk_new(&loop, &opts, NULL, NULL, NULL, &zk), DISCO_EINVAL);
  opts.auth = "nocolon";
  ASSERT_EQ(t, disco_zk_new(&loop, &opts, NULL, NULL, NULL, &zk), DISCO_EINVAL);
  ASSERT(t, zk == NULL);
  ASSERT_EQ(t, disco_loop_alive(&loop), 0);
  ASSERT_OK(t, disco_loop_close(&loop));
}

void test_zk_close_before_connect(ctest_t *t) {
  disco_zk_options_t opts;
  test_zk_ctx_t ctx;
  disco_loop_t loop;

  memset(&ctx, 0, sizeof(ctx));
  ctx.t = t;
  ASSERT_OK(t, disco_loop_init(&loop));
  test_zk_opts(&opts, TEST_ZK_NOWHERE "/chroot");
  opts.auth = "user:secret";
  opts.acl = DISCO_ZK_ACL_CREATOR_ALL;
  ASSERT_OK(t, disco_zk_new(&loop, &opts, test_zk_state_cb, test_zk_close_cb,
                            &ctx, &ctx.zk));
  ASSERT_EQ(t, disco_zk_state(ctx.zk), DISCO_ZK_CONNECTING);
  ASSERT_EQ(t, disco_zk_generation(ctx.zk), 1);
  ASSERT_EQ(t, disco_zk_session_id(ctx.zk), 0);
  {
    int64_t id;
    char passwd[DISCO_ZK_PASSWD_LEN];
    size_t len;
    ASSERT_EQ(t, disco_zk_debug_session(ctx.zk, &id, passwd, &len),
              DISCO_EAGAIN);
  }
  disco_zk_close(ctx.zk);
  disco_zk_close(ctx.zk); /* idempotent */
  ASSERT_EQ(t, disco_zk_state(ctx.zk), DISCO_ZK_CLOSED);
  ASSERT_EQ(t, ctx.closed, 0);
  ASSERT_EQ(t, ctest_run_until(t, &loop, &ctx.closed, 10000), 0);
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_EQ(t, ctx.states[DISCO_ZK_CLOSED], 1);
  ASSERT_EQ(t, ctx.states[DISCO_ZK_CONNECTED], 0);
  /* Nothing is left: run returns at once. */
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_OK(t, disco_loop_close(&loop));
}

void test_zk_requests_after_close(ctest_t *t) {
  test_zk_ctx_t ctx;
  disco_loop_t loop;

  if (test_zk_open(t, &loop, &ctx) != 0)
    return;
  /* Bad arguments are refused before anything is sent. */
  ASSERT_EQ(t, disco_zk_get(ctx.zk, "relative", NULL, test_zk_result_cb, &ctx),
            DISCO_EINVAL);
  ASSERT_EQ(t,
            disco_zk_get(ctx.zk, "/trailing/", NULL, test_zk_result_cb, &ctx),
            DISCO_EINVAL);
  ASSERT_EQ(t,
            disco_zk_create(ctx.zk, "/c", "x", 1,
                            DISCO_ZK_CONTAINER | DISCO_ZK_EPHEMERAL,
                            test_zk_result_cb, &ctx),
            DISCO_EINVAL);
  ASSERT_EQ(t, disco_zk_get(ctx.zk, "/a", NULL, NULL, &ctx), DISCO_EINVAL);
  disco_zk_close(ctx.zk);
  ASSERT_EQ(t, disco_zk_get(ctx.zk, "/a", NULL, test_zk_result_cb, &ctx),
            DISCO_ECLOSED);
  ASSERT_EQ(
      t,
      disco_zk_exists(ctx.zk, "/a", test_zk_watch_cb, test_zk_result_cb, &ctx),
      DISCO_ECLOSED);
  ASSERT_EQ(t, disco_zk_children(ctx.zk, "/a", NULL, test_zk_result_cb, &ctx),
            DISCO_ECLOSED);
  ASSERT_EQ(t,
            disco_zk_create(ctx.zk, "/a", "x", 1, DISCO_ZK_EPHEMERAL,
                            test_zk_result_cb, &ctx),
            DISCO_ECLOSED);
  ASSERT_EQ(t, disco_zk_set(ctx.zk, "/a", "x", 1, -1, test_zk_result_cb, &ctx),
            DISCO_ECLOSED);
  ASSERT_EQ(t, disco_zk_delete(ctx.zk, "/a", -1, test_zk_result_cb, &ctx),
            DISCO_ECLOSED);
  ASSERT_EQ(t, ctest_run_until(t, &loop, &ctx.closed, 10000), 0);
  ASSERT_EQ(t, ctx.completed, 0);
  ASSERT_EQ(t, ctx.watch_ended, 0);
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_OK(t, disco_loop_close(&loop));
}

/* Requests queued on a handle that never connects complete once each when
 * the session closes, and their watches end too. */
void test_zk_close_with_requests(ctest_t *t) {
  test_zk_ctx_t ctx;
  disco_loop_t loop;

  if (test_zk_open(t, &loop, &ctx) != 0)
    return;
  ASSERT_OK(
      t, disco_zk_get(ctx.zk, "/a", test_zk_watch_cb, test_zk_result_cb, &ctx));
  ASSERT_OK(t, disco_zk_create(ctx.zk, "/a/b/c", "v", 1, DISCO_ZK_PARENTS,
                               test_zk_result_cb, &ctx));
  ASSERT_OK(t, disco_zk_delete(ctx.zk, "/a", 3, test_zk_result_cb, &ctx));
  /* Each failed attempt to connect fails what is queued with ECONNLOSS;
   * whichever comes first, each request completes exactly once. */
  disco_zk_close(ctx.zk);
  ASSERT_EQ(t, ctest_run_until(t, &loop, &ctx.closed, 10000), 0);
  ASSERT_EQ(t, ctx.completed, 3);
  ASSERT(t, ctx.last_err == DISCO_ECLOSED || ctx.last_err == DISCO_ECONNLOSS);
  ASSERT_EQ(t, ctx.watch_ended, 1);
  ASSERT(t, ctx.watch_status != 0);
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_OK(t, disco_loop_close(&loop));
}

/* disco_loop_close() closes an open session like any core handle: the
 * close callback runs once and the request in flight completes once. */
void test_zk_loop_close(ctest_t *t) {
  test_zk_ctx_t ctx;
  disco_loop_t loop;

  if (test_zk_open(t, &loop, &ctx) != 0)
    return;
  ASSERT_OK(t, disco_zk_children(ctx.zk, "/", test_zk_watch_cb,
                                 test_zk_result_cb, &ctx));
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_EQ(t, ctx.completed, 1);
  ASSERT(t, ctx.last_err == DISCO_ECLOSED || ctx.last_err == DISCO_ECONNLOSS);
  ASSERT_EQ(t, ctx.watch_ended, 1);
  ASSERT_EQ(t, ctx.states[DISCO_ZK_CLOSED], 1);
}

/* ------------------------------------- ephemeral nodes and caches */

typedef struct {
  ctest_t *t;
  int eph_closed; /* close_cb runs */
  int eph_states[8];
  int cache_closed;
  int diffs;
  int updates;
  int update_err;
  void *eph;
  void *cache;
} test_zk_handles_t;

static void test_zk_eph_state_cb(disco_zk_ephemeral_t *node,
                                 disco_zk_ephemeral_state_t state, int err) {
  test_zk_handles_t *h;

  (void)err;
  h = disco_zk_ephemeral_data(node);
  if ((int)state >= 0 && (int)state < 8)
    h->eph_states[state]++;
}

static void test_zk_eph_close_cb(void *handle, void *data) {
  test_zk_handles_t *h;

  h = data;
  ASSERT(h->t, handle == h->eph);
  /* CLOSED is the last state, reported just before. */
  ASSERT_EQ(h->t, h->eph_states[DISCO_ZK_EPHEMERAL_CLOSED], 1);
  h->eph_closed++;
}

static void test_zk_eph_update_cb(disco_zk_ephemeral_t *node, int err,
                                  void *arg) {
  test_zk_handles_t *h;

  (void)node;
  h = arg;
  h->updates++;
  h->update_err = err;
}

static void test_zk_cache_cb(disco_zk_cache_t *cache,
                             const disco_zk_cache_diff_t *diff) {
  test_zk_handles_t *h;

  (void)diff;
  h = disco_zk_cache_data(cache);
  h->diffs++;
}

static void test_zk_cache_close_cb(void *handle, void *data) {
  test_zk_handles_t *h;

  h = data;
  ASSERT(h->t, handle == h->cache);
  h->cache_closed++;
}

/* Handles on a session that never connects: they wait, report nothing,
 * and close once each: by themselves, with the session, or with the loop.
 * Their close callbacks never run inside the call that closed them. */
void test_zk_handles_close(ctest_t *t) {
  disco_zk_options_t opts;
  test_zk_ctx_t ctx;
  test_zk_handles_t h;
  disco_zk_ephemeral_t *node;
  disco_zk_ephemeral_t *node2;
  disco_zk_cache_t *cache;
  disco_zk_cache_t *cache2;
  disco_loop_t loop;

  memset(&ctx, 0, sizeof(ctx));
  memset(&h, 0, sizeof(h));
  ctx.t = t;
  h.t = t;
  ASSERT_OK(t, disco_loop_init(&loop));
  test_zk_opts(&opts, TEST_ZK_NOWHERE);
  ASSERT_OK(t, disco_zk_new(&loop, &opts, test_zk_state_cb, test_zk_close_cb,
                            &ctx, &ctx.zk));
  ASSERT_EQ(t,
            disco_zk_ephemeral_new(ctx.zk, "relative", "x", 1, NULL, NULL, NULL,
                                   &node),
            DISCO_EINVAL);
  ASSERT_EQ(
      t, disco_zk_ephemeral_new(ctx.zk, "/", "x", 1, NULL, NULL, NULL, &node),
      DISCO_EINVAL);
  ASSERT_EQ(t, disco_zk_cache_new(ctx.zk, "/x/", 0, NULL, NULL, NULL, &cache),
            DISCO_EINVAL);

  /* Closed by their owner. */
  ASSERT_OK(t, disco_zk_ephemeral_new(ctx.zk, "/svc/a", "x", 1,
                                      test_zk_eph_state_cb,
                                      test_zk_eph_close_cb, &h, &node));
  h.eph = node;
  ASSERT_EQ(t, strcmp(disco_zk_ephemeral_path(node), "/svc/a"), 0);
  ASSERT_EQ(t, disco_zk_ephemeral_owned(node), 0);
  ASSERT_OK(t,
            disco_zk_ephemeral_update(node, "y", 1, test_zk_eph_update_cb, &h));
  ASSERT_OK(t, disco_zk_cache_new(ctx.zk, "/svc", 1024, test_zk_cache_cb,
                                  test_zk_cache_close_cb, &h, &cache));
  h.cache = cache;
  ASSERT_EQ(t, disco_zk_cache_count(cache), 0);
  disco_zk_ephemeral_close(node);
  disco_zk_ephemeral_close(node); /* idempotent */
  disco_zk_cache_close(cache);
  disco_zk_cache_close(cache);
  ASSERT_EQ(t, h.eph_closed, 0);
  ASSERT_EQ(t, h.cache_closed, 0);
  ASSERT_EQ(t, ctest_run_until(t, &loop, &h.eph_closed, 10000), 0);
  ASSERT_EQ(t, ctest_run_until(t, &loop, &h.cache_closed, 10000), 0);
  ASSERT_EQ(t, h.eph_closed, 1);
  ASSERT_EQ(t, h.cache_closed, 1);
  ASSERT_EQ(t, h.updates, 1);
  ASSERT_EQ(t, h.update_err, DISCO_ECLOSED);
  ASSERT_EQ(t, h.diffs, 0);
  ASSERT_EQ(t, h.eph_states[DISCO_ZK_EPHEMERAL_CREATED], 0);

  /* Closed with their session. */
  memset(&h, 0, sizeof(h));
  h.t = t;
  ASSERT_OK(t, disco_zk_ephemeral_new(ctx.zk, "/svc/b", NULL, 0,
                                      test_zk_eph_state_cb,
                                      test_zk_eph_close_cb, &h, &node2));
  h.eph = node2;
  ASSERT_OK(t, disco_zk_cache_new(ctx.zk, "/", 0, test_zk_cache_cb,
                                  test_zk_cache_close_cb, &h, &cache2));
  h.cache = cache2;
  disco_zk_close(ctx.zk);
  ASSERT_EQ(t, h.eph_closed, 0);
  ASSERT_EQ(t, ctest_run_until(t, &loop, &ctx.closed, 10000), 0);
  ASSERT_EQ(t, h.eph_closed, 1);
  ASSERT_EQ(t, h.cache_closed, 1);
  ASSERT_OK(t, disco_loop_close(&loop));

  /* Closed by disco_loop_close(). */
  memset(&ctx, 0, sizeof(ctx));
  memset(&h, 0, sizeof(h));
  ctx.t = t;
  h.t = t;
  ASSERT_OK(t, disco_loop_init(&loop));
  ASSERT_OK(t, disco_zk_new(&loop, &opts, test_zk_state_cb, test_zk_close_cb,
                            &ctx, &ctx.zk));
  ASSERT_OK(t, disco_zk_ephemeral_new(ctx.zk, "/svc/c", "z", 1,
                                      test_zk_eph_state_cb,
                                      test_zk_eph_close_cb, &h, &node));
  h.eph = node;
  ASSERT_OK(t, disco_zk_cache_new(ctx.zk, "/svc", 0, test_zk_cache_cb,
                                  test_zk_cache_close_cb, &h, &cache));
  h.cache = cache;
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_EQ(t, h.eph_closed, 1);
  ASSERT_EQ(t, h.cache_closed, 1);
}

void test_zk_ephemeral_state_names(ctest_t *t) {
  ASSERT_EQ(t,
            strcmp(disco_zk_ephemeral_state_name(DISCO_ZK_EPHEMERAL_CREATED),
                   "created"),
            0);
  ASSERT_EQ(t,
            strcmp(disco_zk_ephemeral_state_name(DISCO_ZK_EPHEMERAL_RECREATED),
                   "recreated"),
            0);
  ASSERT_EQ(
      t, strcmp(disco_zk_ephemeral_state_name(DISCO_ZK_EPHEMERAL_LOST), "lost"),
      0);
  ASSERT_EQ(t,
            strcmp(disco_zk_ephemeral_state_name(DISCO_ZK_EPHEMERAL_CLOSED),
                   "closed"),
            0);
}
