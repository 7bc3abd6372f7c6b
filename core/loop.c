/*
 * The disco loop: a uv_loop_t, its event queue and the list of open core
 * handles, so that disco_loop_close() can take everything down in order.
 */
#include <sched.h>
#include <string.h>

#include "internal.h"

/* How many loop iterations disco_loop_close() allows for the handles it
 * closed to finish closing before it reports DISCO_EBUSY. */
#define DISCO__CLOSE_MAX_ITERATIONS 1000

int disco__handle_register(disco_loop_t *loop, disco__handle_t *handle,
                           disco__handle_close_fn close) {
  if (loop->closing != DISCO__LOOP_OPEN)
    return DISCO_ECLOSED;
  handle->loop = loop;
  handle->close = close;
  disco__list_insert_tail(&loop->handles, &handle->link);
  return 0;
}

void disco__handle_unregister(disco__handle_t *handle) {
  disco__list_remove(&handle->link);
}

disco_queue_t *disco__loop_queue_acquire(disco_loop_t *loop) {
  disco_queue_t *queue;

  /*
   * Announcing ourselves before reading the pointer pairs with
   * disco__loop_queue_detach(), which clears the pointer before it waits for
   * the count to drop: whoever still saw the queue has taken its reference
   * before the loop drops its own.
   */
  disco__atomic_add(&loop->queue_users, 1);
  queue = disco__atomic_load(&loop->queue);
  if (queue != NULL)
    disco_queue_retain(queue);
  disco__atomic_sub(&loop->queue_users, 1);
  return queue;
}

/* Loop thread, after the queue has closed: drops the loop's own reference
 * once no other thread is between reading loop->queue and retaining it. */
static void disco__loop_queue_detach(disco_loop_t *loop) {
  disco_queue_t *queue;

  queue = loop->queue;
  if (queue == NULL)
    return;
  disco__atomic_store(&loop->queue, NULL);
  /* The window being waited out is a few instructions long. */
  while (disco__atomic_load(&loop->queue_users) != 0)
    sched_yield();
  disco_queue_release(queue);
}

int disco_loop_init(disco_loop_t *loop) {
  void *data;
  int err;

  if (loop == NULL)
    return DISCO_EINVAL;
  /* `data` belongs to the owner, who may have set it before init. */
  data = loop->data;
  memset(loop, 0, sizeof(*loop));
  loop->data = data;
  disco__list_init(&loop->handles);
  loop->closing = DISCO__LOOP_OPEN;
  loop->thread = uv_thread_self();
  disco__log_init(loop);

  /* On failure the loop is left closed, so that disco_loop_close() and
   * disco_log() on it stay harmless. */
  err = uv_loop_init(&loop->uv);
  if (err != 0) {
    loop->closing = DISCO__LOOP_CLOSED;
    return disco_translate_uv_error(err);
  }

  err = disco_queue_new(loop, NULL, NULL, &loop->queue);
  if (err != 0) {
    uv_loop_close(&loop->uv);
    loop->closing = DISCO__LOOP_CLOSED;
    return err;
  }
  /* The loop's queue must not keep disco_loop_run() from returning. */
  disco__queue_unref(loop->queue);
  /* A second reference, held by the loop struct itself: the loop side's
   * reference goes when the queue closes, but threads may still reach the
   * queue through loop->queue until disco_loop_close() detaches it. */
  disco_queue_retain(loop->queue);
  return 0;
}

int disco_loop_run(disco_loop_t *loop) {
  if (loop->closing == DISCO__LOOP_CLOSED)
    return 0;
  return uv_run(&loop->uv, UV_RUN_DEFAULT);
}

int disco_loop_run_once(disco_loop_t *loop) {
  if (loop->closing == DISCO__LOOP_CLOSED)
    return 0;
  return uv_run(&loop->uv, UV_RUN_ONCE);
}

int disco_loop_run_nowait(disco_loop_t *loop) {
  if (loop->closing == DISCO__LOOP_CLOSED)
    return 0;
  return uv_run(&loop->uv, UV_RUN_NOWAIT);
}

void disco_loop_stop(disco_loop_t *loop) {
  if (loop->closing != DISCO__LOOP_CLOSED)
    uv_stop(&loop->uv);
}

int disco_loop_alive(disco_loop_t *loop) {
  if (loop->closing == DISCO__LOOP_CLOSED)
    return 0;
  return uv_loop_alive(&loop->uv);
}

uint64_t disco_loop_now(disco_loop_t *loop) {
  return uv_now(&loop->uv);
}

void disco_loop_update_time(disco_loop_t *loop) {
  uv_update_time(&loop->uv);
}

int disco_loop_on_thread(disco_loop_t *loop) {
  uv_thread_t self;

  self = uv_thread_self();
  return uv_thread_equal(&self, &loop->thread);
}

/* Closes a libuv handle that no core handle owns (a binding's or a user's
 * raw handle). Core handles and the queue's async are closing already. */
static void disco__loop_walk_close(uv_handle_t *handle, void *arg) {
  (void)arg;
  if (!uv_is_closing(handle))
    uv_close(handle, NULL);
}

/* Starts closing every core handle through its own close path, then any
 * foreign libuv handle. Safe to repeat: every step skips what is closing. */
static void disco__loop_close_handles(disco_loop_t *loop) {
  struct disco__list *node;
  struct disco__list *next;
  disco__handle_t *handle;

  /* Close callbacks cannot run yet (libuv defers them to the loop), so no
   * node leaves the list during the walk; `next` is kept all the same. */
  for (node = loop->handles.next; node != &loop->handles; node = next) {
    next = node->next;
    handle = disco__container_of(node, disco__handle_t, link);
    handle->close(handle);
  }
  uv_walk(&loop->uv, disco__loop_walk_close, NULL);
}

int disco_loop_close(disco_loop_t *loop) {
  int i;

  if (loop->closing == DISCO__LOOP_CLOSED)
    return 0;
  if (loop->closing == DISCO__LOOP_OPEN) {
    loop->closing = DISCO__LOOP_CLOSING;
    /* The queue goes first: its canceled items may still close handles. */
    disco_queue_close(loop->queue);
  }

  for (i = 0; i < DISCO__CLOSE_MAX_ITERATIONS; i++) {
    /* Close callbacks may have opened foreign handles; close them too. */
    disco__loop_close_handles(loop);
    if (uv_loop_close(&loop->uv) == 0) {
      loop->closing = DISCO__LOOP_CLOSED;
      disco__loop_queue_detach(loop);
      return 0;
    }
    /* Closing handles alone never block UV_RUN_ONCE (libuv polls with a
     * zero timeout then); pending requests, such as thread pool work, are
     * worth waiting for. */
    uv_run(&loop->uv, uv_loop_alive(&loop->uv) ? UV_RUN_ONCE : UV_RUN_NOWAIT);
  }
  return DISCO_EBUSY;
}
