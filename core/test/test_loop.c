/*
 * The loop: init, run modes, stop, and close, which must close every core
 * handle through its own path (one close callback each) and foreign libuv
 * handles too.
 */
#include <signal.h>

#include "ctest.h"

typedef struct {
  ctest_t *t;
  disco_loop_t *loop;
  int fired;
  int closed[8]; /* close callbacks, per handle slot */
  int canceled;
  int delivered;
  int new_during_close;
} test_loop_ctx_t;

/* Handle data points at one slot of ctx->closed. */
static void test_loop_close_cb(void *handle, void *data) {
  (void)handle;
  (*(int *)data)++;
}

static void test_loop_queue_close_cb(disco_queue_t *queue, void *data) {
  (void)queue;
  (*(int *)data)++;
}

/* For handles whose data is a test_loop_ctx_t. */
static void test_loop_ctx_close_cb(void *handle, void *data) {
  test_loop_ctx_t *ctx;

  (void)handle;
  ctx = data;
  ctx->closed[0]++;
}

static void test_loop_timer_cb(disco_timer_t *timer) {
  test_loop_ctx_t *ctx;

  ctx = disco_timer_data(timer);
  ctx->fired++;
}

static void test_loop_count_cb(disco_timer_t *timer) {
  (*(int *)disco_timer_data(timer))++;
}

static void test_loop_signal_cb(disco_signal_t *sig, int signum) {
  (void)sig;
  (void)signum;
}

void test_loop_init_run_close(ctest_t *t) {
  disco_timer_t *timer;
  disco_loop_t loop;
  int marker;
  int fired;

  loop.data = &marker;
  ASSERT_OK(t, disco_loop_init(&loop));
  /* init keeps the owner's pointer, as uv_loop_init() does. */
  ASSERT(t, loop.data == &marker);
  /* The loop's own queue does not keep it alive. */
  ASSERT_EQ(t, disco_loop_alive(&loop), 0);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);

  fired = 0;
  ASSERT_OK(t, disco_timer_new(&loop, NULL, &fired, &timer));
  ASSERT_OK(t, disco_timer_start(timer, test_loop_count_cb, 1, 0));
  ASSERT(t, disco_loop_alive(&loop));
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, fired, 1);
  disco_timer_close(timer);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_OK(t, disco_loop_close(&loop));
}

typedef struct {
  disco_qitem_t item;
  test_loop_ctx_t *ctx;
} test_loop_item_t;

static void test_loop_item_cb(disco_qitem_t *qitem, int status) {
  test_loop_item_t *item;
  disco_timer_t *timer;

  item = (test_loop_item_t *)qitem;
  if (status == DISCO_ECANCELED) {
    item->ctx->canceled++;
    /* The loop is closing: it could not close a new handle any more. */
    if (disco_timer_new(item->ctx->loop, NULL, NULL, &timer) == DISCO_ECLOSED)
      item->ctx->new_during_close++;
  } else {
    item->ctx->delivered++;
  }
}

static void test_loop_raw_close_never(uv_timer_t *timer) {
  (void)timer;
}

void test_loop_close_walks_handles(ctest_t *t) {
  test_loop_item_t items[3];
  test_loop_ctx_t ctx;
  disco_timer_t *active;
  disco_timer_t *idle;
  disco_timer_t *closed_early;
  disco_signal_t *sig;
  disco_queue_t *queue;
  uv_timer_t raw;
  disco_loop_t loop;
  int i;

  memset(&ctx, 0, sizeof(ctx));
  ctx.t = t;
  ctx.loop = &loop;
  ASSERT_OK(t, disco_loop_init(&loop));

  ASSERT_OK(
      t, disco_timer_new(&loop, test_loop_close_cb, &ctx.closed[0], &active));
  ASSERT_OK(t, disco_timer_start(active, test_loop_count_cb, 3600000, 0));
  ASSERT_OK(t,
            disco_timer_new(&loop, test_loop_close_cb, &ctx.closed[1], &idle));
  /* Closed by its owner, close callback still pending when the loop
   * closes: it must still run once, not twice. */
  ASSERT_OK(t, disco_timer_new(&loop, test_loop_close_cb, &ctx.closed[2],
                               &closed_early));
  disco_timer_close(closed_early);
  ASSERT_OK(t,
            disco_signal_new(&loop, test_loop_close_cb, &ctx.closed[3], &sig));
  ASSERT_OK(t, disco_signal_start(sig, test_loop_signal_cb, SIGUSR2));
  ASSERT_OK(t, disco_queue_new(&loop, test_loop_queue_close_cb, &ctx.closed[4],
                               &queue));
  for (i = 0; i < 3; i++) {
    items[i].item.cb = test_loop_item_cb;
    items[i].ctx = &ctx;
    ASSERT_OK(t, disco_queue_push(queue, &items[i].item));
  }
  /* A foreign handle: a raw libuv timer that no core handle owns. */
  ASSERT_OK(t, uv_timer_init(&loop.uv, &raw));
  ASSERT_OK(t, uv_timer_start(&raw, test_loop_raw_close_never, 3600000, 0));

  ASSERT_OK(t, disco_loop_close(&loop));
  for (i = 0; i < 5; i++)
    ASSERT_EQ(t, ctx.closed[i], 1);
  ASSERT_EQ(t, ctx.canceled, 3);
  ASSERT_EQ(t, ctx.delivered, 0);
  ASSERT_EQ(t, ctx.new_during_close, 3);
  ASSERT(t, uv_is_closing((uv_handle_t *)&raw));

  /* Closing again changes nothing and runs no callback twice. */
  ASSERT_OK(t, disco_loop_close(&loop));
  for (i = 0; i < 5; i++)
    ASSERT_EQ(t, ctx.closed[i], 1);
}

void test_loop_close_idempotent(ctest_t *t) {
  disco_timer_t *timer;
  disco_loop_t loop;
  int closed;

  closed = 0;
  ASSERT_OK(t, disco_loop_init(&loop));
  ASSERT_OK(t, disco_timer_new(&loop, test_loop_close_cb, &closed, &timer));
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, closed, 1);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, closed, 1);
  /* A closed loop runs nothing and creates nothing. */
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, disco_loop_run_nowait(&loop), 0);
  ASSERT_EQ(t, disco_loop_alive(&loop), 0);
  ASSERT_EQ(t, disco_timer_new(&loop, NULL, NULL, &timer), DISCO_ECLOSED);
}

void test_loop_run_nowait(ctest_t *t) {
  test_loop_ctx_t ctx;
  disco_timer_t *timer;
  disco_loop_t loop;
  uint64_t start;

  memset(&ctx, 0, sizeof(ctx));
  ASSERT_OK(t, disco_loop_init(&loop));
  ASSERT_OK(t, disco_timer_new(&loop, test_loop_ctx_close_cb, &ctx, &timer));
  ASSERT_OK(t, disco_timer_start(timer, test_loop_timer_cb, 10000, 0));
  start = uv_hrtime();
  /* Still work to do (the timer), yet it returns without waiting for it. */
  ASSERT(t, disco_loop_run_nowait(&loop) != 0);
  ASSERT_CMP(t, (uv_hrtime() - start) / 1000000, <, 1000);
  ASSERT(t, disco_timer_is_active(timer));
  ASSERT_EQ(t, ctx.fired, 0);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx.fired, 0);
  ASSERT_EQ(t, ctx.closed[0], 1);
}

static void test_loop_stop_cb(disco_timer_t *timer) {
  test_loop_ctx_t *ctx;

  ctx = disco_timer_data(timer);
  ctx->fired++;
  if (ctx->fired == 3)
    disco_loop_stop(ctx->loop);
}

void test_loop_stop_from_callback(ctest_t *t) {
  test_loop_ctx_t ctx;
  disco_timer_t *timer;
  disco_loop_t loop;

  memset(&ctx, 0, sizeof(ctx));
  ctx.loop = &loop;
  ASSERT_OK(t, disco_loop_init(&loop));
  ASSERT_OK(t, disco_timer_new(&loop, NULL, &ctx, &timer));
  ASSERT_OK(t, disco_timer_start(timer, test_loop_stop_cb, 1, 1));
  /* Stopped early, with the repeating timer still active: non-zero. */
  ASSERT(t, disco_loop_run(&loop) != 0);
  ASSERT_EQ(t, ctx.fired, 3);
  ASSERT(t, disco_timer_is_active(timer));
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx.fired, 3);
}

typedef struct {
  disco_loop_t *loop;
  int on_thread;
} test_loop_thread_t;

static void test_loop_thread(void *arg) {
  test_loop_thread_t *th;

  th = arg;
  th->on_thread = disco_loop_on_thread(th->loop);
}

void test_loop_on_thread(ctest_t *t) {
  test_loop_thread_t th;
  uv_thread_t thread;
  disco_loop_t loop;
  uint64_t before;

  ASSERT_OK(t, disco_loop_init(&loop));
  ASSERT(t, disco_loop_on_thread(&loop));
  th.loop = &loop;
  th.on_thread = -1;
  ASSERT_OK(t, uv_thread_create(&thread, test_loop_thread, &th));
  uv_thread_join(&thread);
  ASSERT_EQ(t, th.on_thread, 0);

  before = disco_loop_now(&loop);
  uv_sleep(5);
  ASSERT_EQ(t, disco_loop_now(&loop), before);
  disco_loop_update_time(&loop);
  ASSERT_CMP(t, disco_loop_now(&loop), >=, before + 4);
  ASSERT_OK(t, disco_loop_close(&loop));
}
