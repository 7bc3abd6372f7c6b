/*
 * The event queue across real threads: every item delivered exactly once and
 * in each producer's order, close racing with producers, re-entrant pushes,
 * and the queue probe built on it.
 */
#include <sched.h>
#include <stdlib.h>

#include "ctest.h"

#define TEST_QUEUE_PRODUCERS 4

typedef struct test_queue_ctx_s test_queue_ctx_t;

typedef struct {
  test_queue_ctx_t *ctx;
  unsigned id;
  uv_thread_t thread;
  uint64_t accepted; /* pushes that returned 0 */
  uint64_t rejected; /* pushes that returned DISCO_ECLOSED */
} test_queue_producer_t;

struct test_queue_ctx_s {
  ctest_t *t;
  disco_loop_t *loop;
  disco_queue_t *queue;
  uint64_t per_producer; /* 0: push until the queue refuses */
  uint64_t total;
  uint64_t close_after; /* close the queue after this many deliveries */
  int max_outstanding;  /* producers wait while more items are queued */
  int outstanding;      /* atomic: pushed, callback not run yet */
  /* Loop thread only. */
  uint64_t next[TEST_QUEUE_PRODUCERS]; /* detects loss, duplicates, order */
  uint64_t delivered;
  uint64_t canceled;
  uint64_t order_errors;
  uint64_t off_thread;
  int done;
  int closed;
  test_queue_producer_t producer[TEST_QUEUE_PRODUCERS];
};

typedef struct {
  disco_qitem_t item;
  test_queue_ctx_t *ctx;
  unsigned producer;
  uint64_t seq;
} test_queue_item_t;

static void test_queue_item_cb(disco_qitem_t *qitem, int status) {
  test_queue_item_t *item;
  test_queue_ctx_t *ctx;

  item = (test_queue_item_t *)qitem;
  ctx = item->ctx;
  __atomic_sub_fetch(&ctx->outstanding, 1, __ATOMIC_SEQ_CST);
  /* Counted here, asserted by the test: a failed assertion would return
   * before the free. */
  if (item->seq != ctx->next[item->producer])
    ctx->order_errors++;
  ctx->next[item->producer] = item->seq + 1;
  if (!disco_loop_on_thread(ctx->loop))
    ctx->off_thread++;
  if (status == 0)
    ctx->delivered++;
  else if (status == DISCO_ECANCELED)
    ctx->canceled++;
  else
    ctest_fail(ctx->t, __FILE__, __LINE__, "unexpected status %d", status);
  free(item);

  if (ctx->total != 0 && ctx->delivered + ctx->canceled == ctx->total)
    ctx->done = 1;
  if (ctx->close_after != 0 && ctx->delivered == ctx->close_after)
    disco_queue_close(ctx->queue);
}

static void test_queue_close_cb(disco_queue_t *queue, void *data) {
  test_queue_ctx_t *ctx;

  ctx = data;
  ASSERT(ctx->t, queue == ctx->queue);
  ctx->closed++;
}

static void test_queue_producer(void *arg) {
  test_queue_producer_t *p;
  test_queue_item_t *item;
  uint64_t seq;
  int err;

  p = arg;
  for (seq = 0; p->ctx->per_producer == 0 || seq < p->ctx->per_producer;
       seq++) {
    /* Producers that push until refused would otherwise fill memory while
     * the loop thread waits for a turn (valgrind runs one thread at a
     * time). Waiting here still leaves them pushing when the close comes. */
    while (p->ctx->max_outstanding != 0 &&
           __atomic_load_n(&p->ctx->outstanding, __ATOMIC_SEQ_CST) >=
               p->ctx->max_outstanding)
      sched_yield();
    item = malloc(sizeof(*item));
    ASSERT(p->ctx->t, item != NULL);
    item->item.cb = test_queue_item_cb;
    item->ctx = p->ctx;
    item->producer = p->id;
    item->seq = seq;
    __atomic_add_fetch(&p->ctx->outstanding, 1, __ATOMIC_SEQ_CST);
    err = disco_queue_push(p->ctx->queue, &item->item);
    if (err != 0) {
      /* Refused: the item is still ours. */
      __atomic_sub_fetch(&p->ctx->outstanding, 1, __ATOMIC_SEQ_CST);
      free(item);
      ASSERT_EQ(p->ctx->t, err, DISCO_ECLOSED);
      p->rejected++;
      break;
    }
    p->accepted++;
  }
  disco_queue_release(p->ctx->queue);
}

static void test_queue_ctx_init(test_queue_ctx_t *ctx, ctest_t *t,
                                disco_loop_t *loop) {
  unsigned i;

  memset(ctx, 0, sizeof(*ctx));
  ctx->t = t;
  ctx->loop = loop;
  for (i = 0; i < TEST_QUEUE_PRODUCERS; i++) {
    ctx->producer[i].ctx = ctx;
    ctx->producer[i].id = i;
  }
}

/* Starts the producers, each with a reference of its own on the queue. */
static void test_queue_start_producers(test_queue_ctx_t *ctx) {
  unsigned i;

  for (i = 0; i < TEST_QUEUE_PRODUCERS; i++) {
    disco_queue_retain(ctx->queue);
    ASSERT_OK(ctx->t, uv_thread_create(&ctx->producer[i].thread,
                                       test_queue_producer, &ctx->producer[i]));
  }
}

static void test_queue_join_producers(test_queue_ctx_t *ctx) {
  unsigned i;

  for (i = 0; i < TEST_QUEUE_PRODUCERS; i++)
    uv_thread_join(&ctx->producer[i].thread);
}

void test_queue_million_from_threads(ctest_t *t) {
  disco_queue_stats_t stats;
  test_queue_ctx_t *ctx;
  disco_loop_t loop;
  unsigned i;

  ctx = malloc(sizeof(*ctx));
  ASSERT(t, ctx != NULL);
  ASSERT_OK(t, disco_loop_init(&loop));
  test_queue_ctx_init(ctx, t, &loop);
  ctx->per_producer =
      ctest_scaled(1000000, 1000 * TEST_QUEUE_PRODUCERS) / TEST_QUEUE_PRODUCERS;
  ctx->total = ctx->per_producer * TEST_QUEUE_PRODUCERS;
  ASSERT_OK(t, disco_queue_new(&loop, test_queue_close_cb, ctx, &ctx->queue));
  ASSERT(t, disco_queue_data(ctx->queue) == ctx);

  test_queue_start_producers(ctx);
  ctest_run_until(t, &loop, &ctx->done, 60000);
  test_queue_join_producers(ctx);
  /* Anything extra (a duplicate) would show up now. */
  disco_loop_run_nowait(&loop);

  disco_queue_stats(ctx->queue, &stats);
  ASSERT_EQ(t, ctx->order_errors, 0);
  ASSERT_EQ(t, ctx->off_thread, 0);
  ASSERT_EQ(t, ctx->delivered, ctx->total);
  ASSERT_EQ(t, ctx->canceled, 0);
  ASSERT_EQ(t, ctx->outstanding, 0);
  for (i = 0; i < TEST_QUEUE_PRODUCERS; i++) {
    ASSERT_EQ(t, ctx->producer[i].accepted, ctx->per_producer);
    ASSERT_EQ(t, ctx->producer[i].rejected, 0);
    ASSERT_EQ(t, ctx->next[i], ctx->per_producer);
  }
  ASSERT_EQ(t, stats.pushed, ctx->total);
  ASSERT_EQ(t, stats.delivered, ctx->total);
  ASSERT_EQ(t, stats.canceled, 0);
  ASSERT_EQ(t, stats.rejected, 0);
  ASSERT_CMP(t, stats.wakeups, >=, 1);
  ASSERT_CMP(t, stats.wakeups, <=, stats.pushed);

  disco_queue_close(ctx->queue);
  ctest_run_until(t, &loop, &ctx->closed, 10000);
  ASSERT_EQ(t, ctx->closed, 1);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx->closed, 1);
  free(ctx);
}

void test_queue_close_while_pushing(ctest_t *t) {
  disco_queue_stats_t stats;
  test_queue_ctx_t *ctx;
  uint64_t accepted;
  uint64_t rejected;
  disco_loop_t loop;
  unsigned i;

  ctx = malloc(sizeof(*ctx));
  ASSERT(t, ctx != NULL);
  ASSERT_OK(t, disco_loop_init(&loop));
  test_queue_ctx_init(ctx, t, &loop);
  /* Producers push until refused; the loop closes the queue from an item's
   * callback, in the middle of a drain, while they are still at it. */
  ctx->per_producer = 0;
  ctx->close_after = ctest_scaled(50000, 1000);
  ctx->max_outstanding = 20000;
  ASSERT_OK(t, disco_queue_new(&loop, test_queue_close_cb, ctx, &ctx->queue));
  /* The test's own reference: the stats are read after the close. */
  disco_queue_retain(ctx->queue);

  test_queue_start_producers(ctx);
  ctest_run_until(t, &loop, &ctx->closed, 60000);
  test_queue_join_producers(ctx);
  disco_loop_run_nowait(&loop);
  disco_queue_stats(ctx->queue, &stats);
  disco_queue_release(ctx->queue);

  /* Checked first: an order error explains any count below. */
  ASSERT_EQ(t, ctx->order_errors, 0);
  accepted = 0;
  rejected = 0;
  for (i = 0; i < TEST_QUEUE_PRODUCERS; i++) {
    accepted += ctx->producer[i].accepted;
    rejected += ctx->producer[i].rejected;
    /* Every accepted item's callback ran exactly once, in order. */
    ASSERT_EQ(t, ctx->next[i], ctx->producer[i].accepted);
    ASSERT_EQ(t, ctx->producer[i].rejected, 1);
  }
  ASSERT_EQ(t, ctx->closed, 1);
  ASSERT_EQ(t, ctx->off_thread, 0);
  ASSERT_EQ(t, ctx->delivered, ctx->close_after);
  ASSERT_EQ(t, ctx->outstanding, 0);
  ASSERT_EQ(t, accepted, ctx->delivered + ctx->canceled);
  ASSERT_EQ(t, stats.pushed, accepted);
  ASSERT_EQ(t, stats.rejected, rejected);
  ASSERT_EQ(t, stats.delivered, ctx->delivered);
  ASSERT_EQ(t, stats.canceled, ctx->canceled);
  ASSERT_CMP(t, stats.wakeups, <=, stats.pushed);

  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx->closed, 1);
  free(ctx);
}

/* ------------------------------------------------ re-entrant push */

typedef struct {
  ctest_t *t;
  disco_queue_t *queue;
  int next;
  int limit;
  int received;
  int done;
  int pushed_on_cancel;
  int canceled;
  int closed;
} test_queue_chain_t;

typedef struct {
  disco_qitem_t item;
  test_queue_chain_t *chain;
  int seq;
} test_queue_link_t;

static void test_queue_chain_cb(disco_qitem_t *qitem, int status) {
  test_queue_link_t *link;
  test_queue_link_t *child;
  test_queue_chain_t *chain;
  int seq;

  link = (test_queue_link_t *)qitem;
  chain = link->chain;
  if (status != 0) {
    chain->canceled++;
    free(link);
    return;
  }
  chain->received++;
  if (link->seq != chain->next)
    ctest_fail(chain->t, __FILE__, __LINE__, "seq %d, expected %d", link->seq,
               chain->next);
  chain->next = link->seq + 1;
  /* Each delivery pushes its two children in a binary tree onto the queue
   * it came from; FIFO order then visits the tree breadth first, which is
   * the order of the sequence numbers. */
  for (seq = 2 * link->seq + 1; seq <= 2 * link->seq + 2; seq++) {
    if (seq >= chain->limit)
      break;
    child = malloc(sizeof(*child));
    if (child == NULL)
      break;
    child->item.cb = test_queue_chain_cb;
    child->chain = chain;
    child->seq = seq;
    if (disco_queue_push(chain->queue, &child->item) != 0)
      free(child);
  }
  if (chain->received == chain->limit)
    chain->done = 1;
  free(link);
}

static void test_queue_chain_close_cb(disco_queue_t *queue, void *data) {
  test_queue_chain_t *chain;

  (void)queue;
  chain = data;
  chain->closed++;
}

void test_queue_reentrant_push(ctest_t *t) {
  disco_queue_stats_t stats;
  test_queue_chain_t chain;
  test_queue_link_t *first;
  disco_loop_t loop;

  memset(&chain, 0, sizeof(chain));
  chain.t = t;
  chain.limit = 255; /* a full binary tree of 8 levels, breadth first */
  ASSERT_OK(t, disco_loop_init(&loop));
  ASSERT_OK(t, disco_queue_new(&loop, test_queue_chain_close_cb, &chain,
                               &chain.queue));
  first = malloc(sizeof(*first));
  ASSERT(t, first != NULL);
  first->item.cb = test_queue_chain_cb;
  first->chain = &chain;
  first->seq = 0;
  ASSERT_OK(t, disco_queue_push(chain.queue, &first->item));
  ctest_run_until(t, &loop, &chain.done, 10000);
  disco_loop_run_nowait(&loop);

  disco_queue_stats(chain.queue, &stats);
  ASSERT_EQ(t, chain.received, chain.limit);
  ASSERT_EQ(t, stats.pushed, chain.limit);
  ASSERT_EQ(t, stats.delivered, chain.limit);
  /* Pushes made during a drain wake the loop again: at least one drain per
   * tree level. */
  ASSERT_CMP(t, stats.wakeups, >=, 8);
  ASSERT_CMP(t, stats.wakeups, <=, stats.pushed);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, chain.closed, 1);
  ASSERT_EQ(t, chain.canceled, 0);
}

/* ------------------------------------------------ close and after close */

typedef struct {
  disco_qitem_t item;
  test_queue_chain_t *chain;
  int status;
  int calls;
} test_queue_plain_t;

static void test_queue_plain_cb(disco_qitem_t *qitem, int status) {
  test_queue_plain_t *item;
  test_queue_plain_t again;

  item = (test_queue_plain_t *)qitem;
  item->status = status;
  item->calls++;
  if (status == DISCO_ECANCELED) {
    item->chain->canceled++;
    /* The queue is closing: a push from a cancel callback is refused. */
    memset(&again, 0, sizeof(again));
    again.item.cb = test_queue_plain_cb;
    if (disco_queue_push(item->chain->queue, &again.item) == DISCO_ECLOSED)
      item->chain->pushed_on_cancel++;
  }
}

/* A loop and a queue for `n` plain items, none pushed yet. */
static void test_queue_plain_setup(ctest_t *t, disco_loop_t *loop,
                                   test_queue_chain_t *chain,
                                   test_queue_plain_t *items, int n) {
  int i;

  memset(chain, 0, sizeof(*chain));
  memset(items, 0, sizeof(*items) * (size_t)n);
  ASSERT_OK(t, disco_loop_init(loop));
  ASSERT_OK(t, disco_queue_new(loop, test_queue_chain_close_cb, chain,
                               &chain->queue));
  for (i = 0; i < n; i++) {
    items[i].item.cb = test_queue_plain_cb;
    items[i].chain = chain;
    items[i].status = 1;
  }
}

/* Closes the queue of `chain` (keeping a reference to read its stats
 * after) and checks that items[first..n) were canceled by the close
 * itself, once each, before any loop run. */
static void test_queue_close_expecting_canceled(ctest_t *t,
                                                test_queue_chain_t *chain,
                                                test_queue_plain_t *items,
                                                int first, int n) {
  int i;

  disco_queue_retain(chain->queue);
  disco_queue_close(chain->queue);
  for (i = first; i < n; i++) {
    ASSERT_EQ(t, items[i].calls, 1);
    ASSERT_EQ(t, items[i].status, DISCO_ECANCELED);
  }
}

/* ------------------------------------------------ bursts */

/* A producer that pushes bursts of items a few microseconds apart (as the
 * replies to pipelined reads arrive), each burst followed by a pause and
 * one lone item: the loop must deliver every item in order, the lone ones
 * too, which a burst mode that outlived its timer would strand. */
typedef struct {
  disco_qitem_t item;
  struct test_queue_burst_s *burst;
  int seq;
} test_queue_burst_item_t;

typedef struct test_queue_burst_s {
  ctest_t *t;
  disco_queue_t *queue;
  uv_thread_t thread;
  int per_burst;
  int bursts;
  int total;
  int delivered; /* atomic: the producer waits on it between bursts */
  int next;
  int order_errors;
  int done;
  int closed;
} test_queue_burst_t;

static void test_queue_burst_cb(disco_qitem_t *qitem, int status) {
  test_queue_burst_item_t *item;
  test_queue_burst_t *b;

  item = (test_queue_burst_item_t *)qitem;
  b = item->burst;
  if (status == 0) {
    if (item->seq != b->next)
      b->order_errors++;
    b->next = item->seq + 1;
    if (__atomic_add_fetch(&b->delivered, 1, __ATOMIC_SEQ_CST) == b->total)
      b->done = 1;
  }
  free(item);
}

static void test_queue_burst_push(test_queue_burst_t *b, int seq) {
  test_queue_burst_item_t *item;

  item = malloc(sizeof(*item));
  ASSERT(b->t, item != NULL);
  item->item.cb = test_queue_burst_cb;
  item->burst = b;
  item->seq = seq;
  ASSERT_OK(b->t, disco_queue_push(b->queue, &item->item));
}

/* Waits until `n` items were delivered; 0 after 25 s (the loop thread's
 * own wait has failed by then, and the producer stops). */
static int test_queue_burst_wait(test_queue_burst_t *b, int n) {
  int waited;

  for (waited = 0; waited < 25000; waited++) {
    if (__atomic_load_n(&b->delivered, __ATOMIC_SEQ_CST) >= n)
      return 1;
    uv_sleep(1);
  }
  return 0;
}

static void test_queue_burst_producer(void *arg) {
  test_queue_burst_t *b;
  int seq;
  int i;
  int k;

  b = arg;
  seq = 0;
  for (k = 0; k < b->bursts; k++) {
    for (i = 0; i < b->per_burst; i++) {
      test_queue_burst_push(b, seq++);
      uv_sleep(0);
      if (i % 8 == 0)
        sched_yield();
    }
    /* Everything delivered, then a quiet spell longer than a batch
     * window, then one item alone. */
    if (!test_queue_burst_wait(b, seq))
      break;
    uv_sleep(20);
    test_queue_burst_push(b, seq++);
    if (!test_queue_burst_wait(b, seq))
      break;
  }
  disco_queue_release(b->queue);
}

static void test_queue_burst_close_cb(disco_queue_t *queue, void *data) {
  (void)queue;
  ((test_queue_burst_t *)data)->closed++;
}

void test_queue_bursts_and_lone_items(ctest_t *t) {
  disco_queue_stats_t stats;
  test_queue_burst_t b;
  disco_loop_t loop;

  memset(&b, 0, sizeof(b));
  b.t = t;
  b.per_burst = (int)ctest_scaled(2000, 200);
  b.bursts = 3;
  b.total = b.bursts * (b.per_burst + 1);
  ASSERT_OK(t, disco_loop_init(&loop));
  ASSERT_OK(t, disco_queue_new(&loop, test_queue_burst_close_cb, &b, &b.queue));
  disco_queue_retain(b.queue);
  ASSERT_OK(t, uv_thread_create(&b.thread, test_queue_burst_producer, &b));
  ctest_run_until(t, &loop, &b.done, 20000);
  uv_thread_join(&b.thread);
  disco_loop_run_nowait(&loop);

  disco_queue_stats(b.queue, &stats);
  ASSERT_EQ(t, b.order_errors, 0);
  ASSERT_EQ(t, b.delivered, b.total);
  ASSERT_EQ(t, stats.pushed, (uint64_t)b.total);
  ASSERT_EQ(t, stats.delivered, (uint64_t)b.total);
  ASSERT_CMP(t, stats.wakeups, >=, (uint64_t)b.bursts);
  ASSERT_CMP(t, stats.wakeups, <=, stats.pushed);
  disco_queue_close(b.queue);
  ctest_run_until(t, &loop, &b.closed, 10000);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, b.closed, 1);
}

/* Items queued while the loop drains back to back (a burst, so the timer
 * may be the one to drain them) are canceled by a close like any others,
 * and the queue closes once. */
void test_queue_close_during_burst(ctest_t *t) {
  test_queue_plain_t items[10];
  disco_queue_stats_t stats;
  test_queue_chain_t chain;
  disco_loop_t loop;
  int i;

  test_queue_plain_setup(t, &loop, &chain, items, 10);
  /* Six drains in a row: the last ones usually count as a burst, and are
   * then the timer's (a run that blocks until the next event). */
  for (i = 0; i < 6; i++) {
    ASSERT_OK(t, disco_queue_push(chain.queue, &items[i].item));
    disco_loop_run_once(&loop);
    ASSERT_EQ(t, items[i].calls, 1);
    ASSERT_EQ(t, items[i].status, 0);
  }
  for (i = 6; i < 10; i++)
    ASSERT_OK(t, disco_queue_push(chain.queue, &items[i].item));
  test_queue_close_expecting_canceled(t, &chain, items, 6, 10);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, chain.closed, 1);
  disco_queue_stats(chain.queue, &stats);
  ASSERT_EQ(t, stats.pushed, 10);
  ASSERT_EQ(t, stats.delivered, 6);
  ASSERT_EQ(t, stats.canceled, 4);
  disco_queue_release(chain.queue);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, chain.closed, 1);
}

void test_queue_close_cancels_pending(ctest_t *t) {
  test_queue_plain_t items[10];
  disco_queue_stats_t stats;
  test_queue_chain_t chain;
  disco_loop_t loop;
  int i;

  test_queue_plain_setup(t, &loop, &chain, items, 10);
  ASSERT(t, disco_queue_data(chain.queue) == &chain);
  for (i = 0; i < 10; i++)
    ASSERT_OK(t, disco_queue_push(chain.queue, &items[i].item));
  /* Canceled synchronously, in order; the close callback comes later. */
  test_queue_close_expecting_canceled(t, &chain, items, 0, 10);
  ASSERT_EQ(t, chain.canceled, 10);
  ASSERT_EQ(t, chain.pushed_on_cancel, 10);
  ASSERT_EQ(t, chain.closed, 0);
  disco_queue_close(chain.queue);
  ASSERT_EQ(t, chain.canceled, 10);

  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, chain.closed, 1);
  for (i = 0; i < 10; i++)
    ASSERT_EQ(t, items[i].calls, 1);
  disco_queue_stats(chain.queue, &stats);
  ASSERT_EQ(t, stats.pushed, 10);
  ASSERT_EQ(t, stats.delivered, 0);
  ASSERT_EQ(t, stats.canceled, 10);
  ASSERT_EQ(t, stats.rejected, 10);
  ASSERT_EQ(t, stats.wakeups, 0);
  disco_queue_release(chain.queue);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, chain.closed, 1);
}

void test_queue_push_after_close(ctest_t *t) {
  disco_queue_stats_t stats;
  test_queue_chain_t chain;
  test_queue_plain_t item;
  disco_loop_t loop;

  memset(&chain, 0, sizeof(chain));
  memset(&item, 0, sizeof(item));
  item.chain = &chain;
  ASSERT_OK(t, disco_loop_init(&loop));
  ASSERT_OK(t, disco_queue_new(&loop, test_queue_chain_close_cb, &chain,
                               &chain.queue));
  ASSERT_EQ(t, disco_queue_push(chain.queue, NULL), DISCO_EINVAL);
  ASSERT_EQ(t, disco_queue_push(chain.queue, &item.item), DISCO_EINVAL);
  item.item.cb = test_queue_plain_cb;

  disco_queue_retain(chain.queue);
  disco_queue_close(chain.queue);
  ASSERT_EQ(t, disco_queue_push(chain.queue, &item.item), DISCO_ECLOSED);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, chain.closed, 1);
  /* Still refused once the close completed; our reference keeps the memory
   * valid for the call. */
  ASSERT_EQ(t, disco_queue_push(chain.queue, &item.item), DISCO_ECLOSED);
  ASSERT_EQ(t, item.calls, 0);
  disco_queue_stats(chain.queue, &stats);
  ASSERT_EQ(t, stats.pushed, 0);
  ASSERT_EQ(t, stats.rejected, 2);
  disco_queue_release(chain.queue);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, chain.closed, 1);
}

/* ----------------------------------------------------- queue probe */

typedef struct {
  ctest_t *t;
  disco_loop_t *loop;
  int calls;
  int on_thread;
  disco_queue_probe_result_t result;
} test_probe_ctx_t;

static void test_probe_cb(const disco_queue_probe_result_t *result,
                          void *data) {
  test_probe_ctx_t *ctx;

  ctx = data;
  ctx->calls++;
  ctx->on_thread = disco_loop_on_thread(ctx->loop);
  ctx->result = *result;
}

void test_queue_probe(ctest_t *t) {
  test_probe_ctx_t ctx;
  disco_loop_t loop;
  uint64_t per;

  memset(&ctx, 0, sizeof(ctx));
  ctx.t = t;
  ctx.loop = &loop;
  per = ctest_scaled(100000, 1000);
  ASSERT_OK(t, disco_loop_init(&loop));
  ASSERT_OK(t, disco_queue_probe_start(&loop, 4, per, test_probe_cb, &ctx));
  ctest_run_until(t, &loop, &ctx.calls, 60000);
  ASSERT_EQ(t, ctx.calls, 1);
  ASSERT(t, ctx.on_thread);
  ASSERT_EQ(t, ctx.result.producers, 4);
  ASSERT_EQ(t, ctx.result.per_producer, per);
  ASSERT_EQ(t, ctx.result.received, 4 * per);
  ASSERT_EQ(t, ctx.result.out_of_order, 0);
  ASSERT_EQ(t, ctx.result.duplicates, 0);
  ASSERT_EQ(t, ctx.result.missing, 0);
  ASSERT_CMP(t, ctx.result.wakeups, >=, 1);
  /* Items plus one end marker per producer. */
  ASSERT_CMP(t, ctx.result.wakeups, <=, 4 * per + 4);
  ASSERT(t, ctx.result.elapsed_ms > 0);
  /* The probe's queue is closed: nothing keeps the loop alive. */
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx.calls, 1);
}

void test_queue_probe_loop_close(ctest_t *t) {
  test_probe_ctx_t ctx;
  disco_loop_t loop;

  memset(&ctx, 0, sizeof(ctx));
  ctx.t = t;
  ctx.loop = &loop;
  ASSERT_OK(t, disco_loop_init(&loop));
  /* Far more than can arrive before the loop closes under the probe. */
  ASSERT_OK(t,
            disco_queue_probe_start(&loop, 2, 10000000, test_probe_cb, &ctx));
  disco_loop_run_nowait(&loop);
  ASSERT_OK(t, disco_loop_close(&loop));
  /* The callback still runs exactly once, with partial counts. */
  ASSERT_EQ(t, ctx.calls, 1);
  ASSERT(t, ctx.on_thread);
  ASSERT_CMP(t, ctx.result.received, <, 20000000);
  ASSERT_EQ(t, ctx.result.received + ctx.result.missing, 20000000);
  ASSERT_EQ(t, ctx.result.out_of_order, 0);
  ASSERT_EQ(t, ctx.result.duplicates, 0);
}

void test_queue_probe_invalid(ctest_t *t) {
  test_probe_ctx_t ctx;
  disco_loop_t loop;

  memset(&ctx, 0, sizeof(ctx));
  ctx.t = t;
  ctx.loop = &loop;
  ASSERT_OK(t, disco_loop_init(&loop));
  ASSERT_EQ(t, disco_queue_probe_start(&loop, 0, 10, test_probe_cb, &ctx),
            DISCO_EINVAL);
  ASSERT_EQ(t, disco_queue_probe_start(&loop, 65, 10, test_probe_cb, &ctx),
            DISCO_EINVAL);
  ASSERT_EQ(t, disco_queue_probe_start(&loop, 1, 0, test_probe_cb, &ctx),
            DISCO_EINVAL);
  ASSERT_EQ(t, disco_queue_probe_start(&loop, 1, 10000001, test_probe_cb, &ctx),
            DISCO_EINVAL);
  ASSERT_EQ(t, disco_queue_probe_start(&loop, 1, 10, NULL, &ctx), DISCO_EINVAL);
  ASSERT_EQ(t, disco_queue_probe_start(NULL, 1, 10, test_probe_cb, &ctx),
            DISCO_EINVAL);
  /* The edges of the ranges are accepted. */
  ASSERT_OK(t, disco_queue_probe_start(&loop, 64, 1, test_probe_cb, &ctx));
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.calls, 1);
  ASSERT_EQ(t, ctx.result.received, 64);
  ASSERT_EQ(t, ctx.result.missing, 0);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx.calls, 1);
}
