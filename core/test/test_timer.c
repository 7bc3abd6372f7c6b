/*
 * Timers: one-shot, repeat, stop, restart, close from the callback, use
 * after close and ref/unref.
 */
#include "ctest.h"

typedef struct {
  ctest_t *t;
  disco_loop_t *loop;
  disco_timer_t *timer;
  disco_timer_t *other;
  int fired;
  int stopped;
  int closed;
  int limit;
  uint64_t start_ns;
  uint64_t fired_ns;
} test_timer_ctx_t;

static void test_timer_close_cb(void *handle, void *data) {
  test_timer_ctx_t *ctx;

  ctx = data;
  ASSERT(ctx->t, handle == ctx->timer || handle == ctx->other);
  ctx->closed++;
}

static void test_timer_count_cb(disco_timer_t *timer) {
  test_timer_ctx_t *ctx;

  ctx = disco_timer_data(timer);
  ctx->fired++;
  ctx->fired_ns = uv_hrtime();
}

static void test_timer_ctx_init(test_timer_ctx_t *ctx, ctest_t *t,
                                disco_loop_t *loop) {
  memset(ctx, 0, sizeof(*ctx));
  ctx->t = t;
  ctx->loop = loop;
  ctx->start_ns = uv_hrtime();
}

void test_timer_once(ctest_t *t) {
  test_timer_ctx_t ctx;
  disco_loop_t loop;

  ASSERT_OK(t, disco_loop_init(&loop));
  test_timer_ctx_init(&ctx, t, &loop);
  ASSERT_OK(t, disco_timer_new(&loop, test_timer_close_cb, &ctx, &ctx.timer));
  ASSERT(t, disco_timer_data(ctx.timer) == &ctx);
  ASSERT_EQ(t, disco_timer_is_active(ctx.timer), 0);
  /* Timers count from the loop's cached time: refreshed after start_ns, so
   * that it is not older than start_ns. */
  disco_loop_update_time(&loop);
  ASSERT_OK(t, disco_timer_start(ctx.timer, test_timer_count_cb, 20, 0));
  ASSERT(t, disco_timer_is_active(ctx.timer));
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.fired, 1);
  /* libuv's loop clock has millisecond granularity (and may be the coarse
   * system clock): 20 ms never fire before 18 ms have passed. */
  ASSERT_CMP(t, (ctx.fired_ns - ctx.start_ns) / 1000000, >=, 18);
  ASSERT_EQ(t, disco_timer_is_active(ctx.timer), 0);
  disco_timer_close(ctx.timer);
  ASSERT_EQ(t, ctx.closed, 0);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_EQ(t, ctx.fired, 1);
  ASSERT_OK(t, disco_loop_close(&loop));
}

static void test_timer_stopper_cb(disco_timer_t *timer) {
  test_timer_ctx_t *ctx;

  ctx = disco_timer_data(timer);
  ASSERT_OK(ctx->t, disco_timer_stop(ctx->timer));
  disco_timer_close(ctx->timer);
  disco_timer_close(ctx->other);
}

void test_timer_repeat(ctest_t *t) {
  test_timer_ctx_t ctx;
  disco_loop_t loop;

  ASSERT_OK(t, disco_loop_init(&loop));
  test_timer_ctx_init(&ctx, t, &loop);
  ASSERT_OK(t, disco_timer_new(&loop, test_timer_close_cb, &ctx, &ctx.timer));
  ASSERT_OK(t, disco_timer_new(&loop, test_timer_close_cb, &ctx, &ctx.other));
  /* Every 10 ms, for 125 ms: at most 12 calls, fewer on a loaded machine
   * since libuv does not catch up on missed intervals. */
  ASSERT_OK(t, disco_timer_start(ctx.timer, test_timer_count_cb, 10, 10));
  ASSERT_OK(t, disco_timer_start(ctx.other, test_timer_stopper_cb, 125, 0));
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_CMP(t, ctx.fired, >=, 3);
  ASSERT_CMP(t, ctx.fired, <=, 12);
  ASSERT_EQ(t, ctx.closed, 2);
  ASSERT_OK(t, disco_loop_close(&loop));
}

void test_timer_stop(ctest_t *t) {
  test_timer_ctx_t ctx;
  disco_loop_t loop;

  ASSERT_OK(t, disco_loop_init(&loop));
  test_timer_ctx_init(&ctx, t, &loop);
  ASSERT_OK(t, disco_timer_new(&loop, test_timer_close_cb, &ctx, &ctx.timer));
  ASSERT_OK(t, disco_timer_new(&loop, test_timer_close_cb, &ctx, &ctx.other));
  ASSERT_OK(t, disco_timer_start(ctx.timer, test_timer_count_cb, 10, 10));
  ASSERT_OK(t, disco_timer_stop(ctx.timer));
  ASSERT_EQ(t, disco_timer_is_active(ctx.timer), 0);
  /* Stopping a stopped timer is fine. */
  ASSERT_OK(t, disco_timer_stop(ctx.timer));
  /* Runs well past the stopped timer's first expiry. */
  ASSERT_OK(t, disco_timer_start(ctx.other, test_timer_stopper_cb, 50, 0));
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.fired, 0);
  ASSERT_EQ(t, ctx.closed, 2);
  ASSERT_OK(t, disco_loop_close(&loop));
}

static void test_timer_rearm_cb(disco_timer_t *timer) {
  test_timer_ctx_t *ctx;

  ctx = disco_timer_data(timer);
  ctx->fired++;
  if (ctx->fired == 1)
    ctx->fired_ns = uv_hrtime();
  /* Restarting from the callback re-arms a one-shot timer. */
  if (ctx->fired < ctx->limit)
    ASSERT_OK(ctx->t, disco_timer_start(timer, test_timer_rearm_cb, 1, 0));
}

void test_timer_restart(ctest_t *t) {
  test_timer_ctx_t ctx;
  disco_loop_t loop;

  ASSERT_OK(t, disco_loop_init(&loop));
  test_timer_ctx_init(&ctx, t, &loop);
  ctx.limit = 3;
  ASSERT_OK(t, disco_timer_new(&loop, test_timer_close_cb, &ctx, &ctx.timer));
  /* An hour, then re-armed to 10 ms: only the second start counts. */
  ASSERT_OK(t, disco_timer_start(ctx.timer, test_timer_count_cb, 3600000, 0));
  ASSERT_OK(t, disco_timer_start(ctx.timer, test_timer_rearm_cb, 10, 0));
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.fired, 3);
  ASSERT_CMP(t, (ctx.fired_ns - ctx.start_ns) / 1000000, <, 5000);
  disco_timer_close(ctx.timer);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx.closed, 1);
}

static void test_timer_self_close_cb(disco_timer_t *timer) {
  test_timer_ctx_t *ctx;

  ctx = disco_timer_data(timer);
  ctx->fired++;
  disco_timer_close(timer);
  disco_timer_close(timer);
  ASSERT_EQ(ctx->t, disco_timer_is_active(timer), 0);
  ASSERT_EQ(ctx->t, disco_timer_start(timer, test_timer_count_cb, 1, 0),
            DISCO_ECLOSED);
  /* Other timers can still be started from here. */
  ASSERT_OK(ctx->t, disco_timer_start(ctx->other, test_timer_count_cb, 1, 0));
}

void test_timer_close_in_callback(ctest_t *t) {
  test_timer_ctx_t ctx;
  disco_loop_t loop;

  ASSERT_OK(t, disco_loop_init(&loop));
  test_timer_ctx_init(&ctx, t, &loop);
  ASSERT_OK(t, disco_timer_new(&loop, test_timer_close_cb, &ctx, &ctx.timer));
  ASSERT_OK(t, disco_timer_new(&loop, test_timer_close_cb, &ctx, &ctx.other));
  ASSERT_OK(t, disco_timer_start(ctx.timer, test_timer_self_close_cb, 1, 1));
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  /* Once by the repeating timer that closed itself, once by the other. */
  ASSERT_EQ(t, ctx.fired, 2);
  ASSERT_EQ(t, ctx.closed, 1);
  disco_timer_close(ctx.other);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx.closed, 2);
}

void test_timer_start_after_close(ctest_t *t) {
  test_timer_ctx_t ctx;
  disco_loop_t loop;

  ASSERT_OK(t, disco_loop_init(&loop));
  test_timer_ctx_init(&ctx, t, &loop);
  ASSERT_OK(t, disco_timer_new(&loop, test_timer_close_cb, &ctx, &ctx.timer));
  ASSERT_EQ(t, disco_timer_start(ctx.timer, NULL, 1, 0), DISCO_EINVAL);
  ASSERT_OK(t, disco_timer_start(ctx.timer, test_timer_count_cb, 1, 0));
  disco_timer_close(ctx.timer);
  ASSERT_EQ(t, disco_timer_start(ctx.timer, test_timer_count_cb, 1, 0),
            DISCO_ECLOSED);
  ASSERT_EQ(t, disco_timer_stop(ctx.timer), DISCO_ECLOSED);
  ASSERT_EQ(t, disco_timer_is_active(ctx.timer), 0);
  disco_timer_close(ctx.timer);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.fired, 0);
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx.closed, 1);
}

static void test_timer_ref_stopper_cb(disco_timer_t *timer) {
  test_timer_ctx_t *ctx;

  ctx = disco_timer_data(timer);
  ctx->stopped++;
  ASSERT_OK(ctx->t, disco_timer_stop(ctx->timer));
}

void test_timer_ref(ctest_t *t) {
  test_timer_ctx_t ctx;
  disco_loop_t loop;

  ASSERT_OK(t, disco_loop_init(&loop));
  test_timer_ctx_init(&ctx, t, &loop);
  ASSERT_OK(t, disco_timer_new(&loop, test_timer_close_cb, &ctx, &ctx.timer));
  ASSERT_OK(t, disco_timer_new(&loop, test_timer_close_cb, &ctx, &ctx.other));
  ASSERT_OK(t, disco_timer_start(ctx.timer, test_timer_count_cb, 10, 10));
  ASSERT(t, disco_loop_alive(&loop));
  /* Unref'ed, an active repeating timer leaves nothing pending: the run
   * returns at once without calling it, and it stays active. Unref'ing
   * twice is the same as once. */
  disco_timer_set_ref(ctx.timer, 0);
  disco_timer_set_ref(ctx.timer, 0);
  ASSERT_EQ(t, disco_loop_alive(&loop), 0);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.fired, 0);
  ASSERT(t, disco_timer_is_active(ctx.timer));
  /* Ref'ed again, it alone keeps the run going: the one-shot stopper is
   * unref'ed, so it bounds the run without keeping it going itself. */
  disco_timer_set_ref(ctx.timer, 1);
  ASSERT(t, disco_loop_alive(&loop));
  ASSERT_OK(t, disco_timer_start(ctx.other, test_timer_ref_stopper_cb, 50, 0));
  disco_timer_set_ref(ctx.other, 0);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.stopped, 1);
  ASSERT_CMP(t, ctx.fired, >=, 1);
  ASSERT_EQ(t, disco_timer_is_active(ctx.timer), 0);
  /* A no-op on NULL and on a closing timer. */
  disco_timer_set_ref(NULL, 1);
  disco_timer_close(ctx.timer);
  disco_timer_set_ref(ctx.timer, 1);
  disco_timer_set_ref(ctx.timer, 0);
  disco_timer_close(ctx.other);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.closed, 2);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx.closed, 2);
}
