/*
 * The event queue: a mutex-protected FIFO plus a uv_async_t, the one way
 * work reaches the loop thread from other threads.
 *
 * Locking: `mutex` guards the list, `closing` and the stats. Item callbacks
 * always run outside it, so a callback may push to the same queue. Pushes
 * call uv_async_send() while holding it, and close sets `closing` under it
 * before uv_close(): no send can then race with the async handle's close.
 */
#include <stdlib.h>

#include "internal.h"

struct disco_queue_s {
  disco__handle_t handle; /* in loop->handles until the async has closed */
  uv_async_t async;
  uv_mutex_t mutex;
  disco_qitem_t *head;
  disco_qitem_t *tail;
  /* Loop thread only: what is left of the batch being delivered. */
  disco_qitem_t *draining;
  int closing;
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

static void disco__queue_async_cb(uv_async_t *async) {
  disco_queue_t *queue;
  disco_qitem_t *item;
  uint64_t delivered;

  queue = disco__container_of(async, disco_queue_t, async);
  uv_mutex_lock(&queue->mutex);
  queue->draining = queue->head;
  queue->head = NULL;
  queue->tail = NULL;
  queue->stats.wakeups++;
  uv_mutex_unlock(&queue->mutex);

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

static void disco__queue_close_cb(uv_handle_t *handle) {
  disco_queue_t *queue;

  queue = disco__container_of(handle, disco_queue_t, async);
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
   * uv_async_send() only fails on a closing handle, which this rules out. */
  err = uv_async_send(&queue->async);
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
}

void disco_queue_stats(disco_queue_t *queue, disco_queue_stats_t *stats) {
  uv_mutex_lock(&queue->mutex);
  *stats = queue->stats;
  uv_mutex_unlock(&queue->mutex);
}

void *disco_queue_data(const disco_queue_t *queue) {
  return queue->data;
}
