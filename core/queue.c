/*
 * The event queue: a mutex-protected FIFO plus a uv_async_t, the one way
 * work reaches the loop thread from other threads.
 *
 * Locking: `mutex` guards the list, `closing`, `batching` and the stats.
 * Item callbacks always run outside it, so a callback may push to the same
 * queue. Pushes call uv_async_send() while holding it, and close sets
 * `closing` under it before uv_close(): no send can then race with the
 * async handle's close.
 *
 * Bursts: a stream of items (the replies to thousands of pipelined reads)
 * would otherwise wake the loop thread for every few items, and each
 * wakeup costs a context switch and an epoll round, more than the item's
 * own work (a cold read of 10,000 znodes: close to 4,000 wakeups). So when
 * the loop has woken for the queue BURST_DRAINS times in a row, each within
 * BATCH_MS of the drain before, producers stop waking it and a timer
 * drains the queue every BATCH_MS instead, until a whole window passes with
 * nothing pushed. An item then waits at most about BATCH_MS more; order is
 * unchanged. A short chain of requests, each sent when the last one's reply
 * arrives (a watch event, then a list, then a read), never counts as a
 * burst, so it pays nothing.
 */
#include <stdlib.h>

#include "internal.h"

#define DISCO__QUEUE_BATCH_MS 1
#define DISCO__QUEUE_BATCH_NS ((uint64_t)DISCO__QUEUE_BATCH_MS * 1000000)
#define DISCO__QUEUE_BURST_DRAINS 4

struct disco_queue_s {
  disco__handle_t handle; /* in loop->handles until both handles closed */
  uv_async_t async;
  uv_timer_t timer; /* drains during a burst */
  uv_mutex_t mutex;
  disco_qitem_t *head;
  disco_qitem_t *tail;
  /* Loop thread only: what is left of the batch being delivered, when the
   * last drain began, how many drains in a row came within BATCH_MS of the
   * one before, and how many of the two handles are still open. */
  disco_qitem_t *draining;
  uint64_t last_drain_ns;
  unsigned quick_drains;
  int open_handles;
  int closing;
  int batching; /* producers leave the wakeup to the timer */
  disco_queue_stats_t stats;
  unsigned refs; /* atomic */
  disco_queue_close_cb close_cb;
  void *data;
};

static void disco__queue_free(disco_queue_t *queue) {
  uv_mutex_destroy(&queue->mutex);
  free(queue);
}

void disco_queue_retain(disco_queue_t *queue) {
  disco__atomic_add(&queue->refs, 1);
}

void disco_queue_release(disco_queue_t *queue) {
  /* The last reference is either the loop side's, dropped after the async
   * handle closed, or a producer's dropped later still: libuv is done with
   * the memory in both cases. */
  if (disco__atomic_sub(&queue->refs, 1) == 0)
    disco__queue_free(queue);
}

/* Runs every item of `head` with `status`, outside the lock; returns how
 * many ran. */
static uint64_t disco__queue_run(disco_qitem_t *head, int status) {
  disco_qitem_t *item;
  uint64_t n;

  n = 0;
  while (head != NULL) {
    item = head;
    head = item->next;
    item->next = NULL;
    item->cb(item, status);
    n++;
  }
  return n;
}

/* Delivers the batch taken into `draining`. */
static void disco__queue_deliver(disco_queue_t *queue) {
  disco_qitem_t *item;
  uint64_t delivered;

  /* The batch is taken from `draining` one item at a time, because a
   * callback may close the queue: close then cancels the rest of it. */
  delivered = 0;
  while ((item = queue->draining) != NULL) {
    queue->draining = item->next;
    item->next = NULL;
    item->cb(item, 0);
    delivered++;
  }

  uv_mutex_lock(&queue->mutex);
  queue->stats.delivered += delivered;
  uv_mutex_unlock(&queue->mutex);
}

static void disco__queue_timer_cb(uv_timer_t *timer) {
  disco_queue_t *queue;

  queue = disco__container_of(timer, disco_queue_t, timer);
  uv_mutex_lock(&queue->mutex);
  queue->draining = queue->head;
  queue->head = NULL;
  queue->tail = NULL;
  if (queue->draining == NULL)
    queue->batching = 0; /* a quiet window: the burst is over */
  else
    queue->stats.wakeups++;
  uv_mutex_unlock(&queue->mutex);
  if (queue->draining == NULL) {
    queue->quick_drains = 0;
    return;
  }
  queue->last_drain_ns = uv_hrtime();
  disco__queue_deliver(queue);
  if (!queue->closing)
    uv_timer_start(&queue->timer, disco__queue_timer_cb, DISCO__QUEUE_BATCH_MS,
                   0);
}

static void disco__queue_async_cb(uv_async_t *async) {
  disco_queue_t *queue;
  uint64_t now;
  int burst;
  int start_timer;

  queue = disco__container_of(async, disco_queue_t, async);
  now = uv_hrtime();
  if (queue->last_drain_ns != 0 &&
      now - queue->last_drain_ns < DISCO__QUEUE_BATCH_NS)
    queue->quick_drains++;
  else
    queue->quick_drains = 0;
  burst = queue->quick_drains >= DISCO__QUEUE_BURST_DRAINS;
  queue->last_drain_ns = now;
  start_timer = 0;
  uv_mutex_lock(&queue->mutex);
  queue->draining = queue->head;
  queue->head = NULL;
  queue->tail = NULL;
  queue->stats.wakeups++;
  if (burst && !queue->batching) {
    /* From now on the pushes leave the wakeup to the timer. */
    queue->batching = 1;
    start_timer = 1;
  }
  uv_mutex_unlock(&queue->mutex);

  disco__queue_deliver(queue);
  if (start_timer && !queue->closing)
    uv_timer_start(&queue->timer, disco__queue_timer_cb, DISCO__QUEUE_BATCH_MS,
                   0);
}

static void disco__queue_close_cb(uv_handle_t *handle) {
  disco_queue_t *queue;

  queue = handle->data;
  if (--queue->open_handles > 0)
    return;
  disco__handle_unregister(&queue->handle);
  if (queue->close_cb != NULL)
    queue->close_cb(queue, queue->data);
  disco_queue_release(queue);
}

static void disco__queue_handle_close(disco__handle_t *handle) {
  disco_queue_close(disco__container_of(handle, disco_queue_t, handle));
}

int disco_queue_new(disco_loop_t *loop, disco_queue_close_cb close_cb,
                    void *data, disco_queue_t **out) {
  disco_queue_t *queue;
  int err;

  if (loop == NULL || out == NULL)
    return DISCO_EINVAL;
  if (loop->closing != DISCO__LOOP_OPEN)
    return DISCO_ECLOSED;
  queue = calloc(1, sizeof(*queue));
  if (queue == NULL)
    return DISCO_ENOMEM;
  err = uv_mutex_init(&queue->mutex);
  if (err != 0) {
    free(queue);
    return disco_translate_uv_error(err);
  }
  err = uv_async_init(&loop->uv, &queue->async, disco__queue_async_cb);
  if (err != 0) {
    disco__queue_free(queue);
    return disco_translate_uv_error(err);
  }
  /* uv_timer_init() cannot fail. */
  uv_timer_init(&loop->uv, &queue->timer);
  queue->async.data = queue;
  queue->timer.data = queue;
  queue->open_handles = 2;
  queue->refs = 1; /* the loop side's */
  queue->close_cb = close_cb;
  queue->data = data;
  /* Cannot fail: the loop was checked above and nothing ran since. */
  disco__handle_register(loop, &queue->handle, disco__queue_handle_close);
  *out = queue;
  return 0;
}

void disco__queue_unref(disco_queue_t *queue) {
  uv_unref((uv_handle_t *)&queue->async);
  uv_unref((uv_handle_t *)&queue->timer);
}

int disco_queue_push(disco_queue_t *queue, disco_qitem_t *item) {
  int err;

  if (queue == NULL || item == NULL || item->cb == NULL)
    return DISCO_EINVAL;
  item->next = NULL;
  uv_mutex_lock(&queue->mutex);
  if (queue->closing) {
    queue->stats.rejected++;
    uv_mutex_unlock(&queue->mutex);
    return DISCO_ECLOSED;
  }
  if (queue->tail != NULL)
    queue->tail->next = item;
  else
    queue->head = item;
  queue->tail = item;
  queue->stats.pushed++;
  /* Under the lock: close cannot have begun, so the handle is still open.
   * uv_async_send() only fails on a closing handle, which this rules out.
   * During a burst the timer drains the queue (see the top). */
  err = queue->batching ? 0 : uv_async_send(&queue->async);
  uv_mutex_unlock(&queue->mutex);
  (void)err;
  return 0;
}

void disco_queue_close(disco_queue_t *queue) {
  disco_qitem_t *draining;
  disco_qitem_t *head;
  uint64_t canceled;

  if (queue == NULL)
    return;
  uv_mutex_lock(&queue->mutex);
  if (queue->closing) {
    uv_mutex_unlock(&queue->mutex);
    return;
  }
  queue->closing = 1;
  head = queue->head;
  queue->head = NULL;
  queue->tail = NULL;
  uv_mutex_unlock(&queue->mutex);

  /*
   * When a callback closes the queue in the middle of a drain, the rest of
   * that batch was pushed before anything still queued: it is canceled
   * first, so that each producer's items still complete in push order.
   */
  draining = queue->draining;
  queue->draining = NULL;
  canceled = disco__queue_run(draining, DISCO_ECANCELED);
  canceled += disco__queue_run(head, DISCO_ECANCELED);
  uv_mutex_lock(&queue->mutex);
  queue->stats.canceled += canceled;
  uv_mutex_unlock(&queue->mutex);

  uv_close((uv_handle_t *)&queue->async, disco__queue_close_cb);
  uv_close((uv_handle_t *)&queue->timer, disco__queue_close_cb);
}

void disco_queue_stats(disco_queue_t *queue, disco_queue_stats_t *stats) {
  uv_mutex_lock(&queue->mutex);
  *stats = queue->stats;
  uv_mutex_unlock(&queue->mutex);
}

void *disco_queue_data(const disco_queue_t *queue) {
  return queue->data;
}
