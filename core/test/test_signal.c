/*
 * Signal watchers: a raised signal reaches the callback on the loop thread;
 * close is idempotent and ends the watcher's use; an unref'ed watch does
 * not keep the loop going but still sees its signal.
 */
#include <signal.h>

#include "ctest.h"

typedef struct {
  ctest_t *t;
  disco_loop_t *loop;
  disco_signal_t *sig;
  int received;
  int signum;
  int on_thread;
  int closed;
} test_signal_ctx_t;

static void test_signal_close_cb(void *handle, void *data) {
  test_signal_ctx_t *ctx;

  ctx = data;
  ASSERT(ctx->t, handle == ctx->sig);
  ctx->closed++;
}

static void test_signal_cb(disco_signal_t *sig, int signum) {
  test_signal_ctx_t *ctx;

  ctx = disco_signal_data(sig);
  ctx->received++;
  ctx->signum = signum;
  ctx->on_thread = disco_loop_on_thread(ctx->loop);
  ASSERT_OK(ctx->t, disco_signal_stop(sig));
}

void test_signal_delivered(ctest_t *t) {
  test_signal_ctx_t ctx;
  disco_loop_t loop;

  memset(&ctx, 0, sizeof(ctx));
  ctx.t = t;
  ctx.loop = &loop;
  ASSERT_OK(t, disco_loop_init(&loop));
  ASSERT_OK(t, disco_signal_new(&loop, test_signal_close_cb, &ctx, &ctx.sig));
  ASSERT(t, disco_signal_data(ctx.sig) == &ctx);
  ASSERT_EQ(t, disco_signal_start(ctx.sig, test_signal_cb, 0), DISCO_EINVAL);
  ASSERT_OK(t, disco_signal_start(ctx.sig, test_signal_cb, SIGUSR1));
  ASSERT_EQ(t, raise(SIGUSR1), 0);
  ctest_run_until(t, &loop, &ctx.received, 10000);
  ASSERT_EQ(t, ctx.received, 1);
  ASSERT_EQ(t, ctx.signum, SIGUSR1);
  ASSERT(t, ctx.on_thread);
  disco_signal_close(ctx.sig);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx.closed, 1);
}

void test_signal_close(ctest_t *t) {
  test_signal_ctx_t ctx;
  disco_loop_t loop;

  memset(&ctx, 0, sizeof(ctx));
  ctx.t = t;
  ctx.loop = &loop;
  ASSERT_OK(t, disco_loop_init(&loop));
  ASSERT_OK(t, disco_signal_new(&loop, test_signal_close_cb, &ctx, &ctx.sig));
  ASSERT_OK(t, disco_signal_start(ctx.sig, test_signal_cb, SIGUSR2));
  /* A started watcher keeps the loop alive; closing ends that. */
  ASSERT(t, disco_loop_alive(&loop));
  disco_signal_close(ctx.sig);
  disco_signal_close(ctx.sig);
  ASSERT_EQ(t, disco_signal_start(ctx.sig, test_signal_cb, SIGUSR2),
            DISCO_ECLOSED);
  ASSERT_EQ(t, disco_signal_stop(ctx.sig), DISCO_ECLOSED);
  ASSERT_EQ(t, ctx.closed, 0);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_EQ(t, ctx.received, 0);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx.closed, 1);
}

void test_signal_ref(ctest_t *t) {
  test_signal_ctx_t ctx;
  disco_loop_t loop;

  memset(&ctx, 0, sizeof(ctx));
  ctx.t = t;
  ctx.loop = &loop;
  ASSERT_OK(t, disco_loop_init(&loop));
  ASSERT_OK(t, disco_signal_new(&loop, test_signal_close_cb, &ctx, &ctx.sig));
  ASSERT_OK(t, disco_signal_start(ctx.sig, test_signal_cb, SIGUSR1));
  ASSERT(t, disco_loop_alive(&loop));
  /* Unref'ed, a started watch alone does not keep the run going... */
  disco_signal_set_ref(ctx.sig, 0);
  ASSERT_EQ(t, disco_loop_alive(&loop), 0);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.received, 0);
  /* ...but still sees its signal while something else does. */
  ASSERT_EQ(t, raise(SIGUSR1), 0);
  ctest_run_until(t, &loop, &ctx.received, 10000);
  ASSERT_EQ(t, ctx.received, 1);
  /* Ref'ed again, a started watch keeps the loop alive. */
  ASSERT_OK(t, disco_signal_start(ctx.sig, test_signal_cb, SIGUSR1));
  ASSERT_EQ(t, disco_loop_alive(&loop), 0);
  disco_signal_set_ref(ctx.sig, 1);
  ASSERT(t, disco_loop_alive(&loop));
  /* A no-op on NULL and on a closing watch. */
  disco_signal_set_ref(NULL, 0);
  disco_signal_close(ctx.sig);
  disco_signal_set_ref(ctx.sig, 0);
  disco_signal_set_ref(ctx.sig, 1);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx.closed, 1);
}
