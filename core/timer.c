/*
 * Timers: heap-allocated wrappers around uv_timer_t that the loop can close
 * when it closes, freed by the core after their close callback.
 */
#include <stdlib.h>

#include "internal.h"

struct disco_timer_s {
  disco__handle_t handle; /* in loop->handles until closed */
  uv_timer_t uv;
  disco_timer_cb cb;
  disco_handle_close_cb close_cb;
  void *data;
  int closing;
};

static void disco__timer_cb(uv_timer_t *uv) {
  disco_timer_t *timer;

  timer = disco__container_of(uv, disco_timer_t, uv);
  timer->cb(timer);
}

static void disco__timer_close_cb(uv_handle_t *uv) {
  disco_timer_t *timer;

  timer = disco__container_of((uv_timer_t *)uv, disco_timer_t, uv);
  disco__handle_unregister(&timer->handle);
  if (timer->close_cb != NULL)
    timer->close_cb(timer, timer->data);
  free(timer);
}

static void disco__timer_handle_close(disco__handle_t *handle) {
  disco_timer_close(disco__container_of(handle, disco_timer_t, handle));
}

int disco_timer_new(disco_loop_t *loop, disco_handle_close_cb close_cb,
                    void *data, disco_timer_t **out) {
  disco_timer_t *timer;
  int err;

  if (loop == NULL || out == NULL)
    return DISCO_EINVAL;
  if (loop->closing != DISCO__LOOP_OPEN)
    return DISCO_ECLOSED;
  timer = calloc(1, sizeof(*timer));
  if (timer == NULL)
    return DISCO_ENOMEM;
  err = uv_timer_init(&loop->uv, &timer->uv);
  if (err != 0) {
    free(timer);
    return disco_translate_uv_error(err);
  }
  timer->close_cb = close_cb;
  timer->data = data;
  /* Cannot fail: the loop was checked above and nothing ran since. */
  disco__handle_register(loop, &timer->handle, disco__timer_handle_close);
  *out = timer;
  return 0;
}

int disco_timer_start(disco_timer_t *timer, disco_timer_cb cb,
                      uint64_t timeout_ms, uint64_t repeat_ms) {
  if (timer == NULL || cb == NULL)
    return DISCO_EINVAL;
  if (timer->closing)
    return DISCO_ECLOSED;
  timer->cb = cb;
  /* uv_timer_start() re-arms an active timer, which is what restart means. */
  return disco_translate_uv_error(
      uv_timer_start(&timer->uv, disco__timer_cb, timeout_ms, repeat_ms));
}

int disco_timer_stop(disco_timer_t *timer) {
  if (timer == NULL)
    return DISCO_EINVAL;
  if (timer->closing)
    return DISCO_ECLOSED;
  return disco_translate_uv_error(uv_timer_stop(&timer->uv));
}

int disco_timer_is_active(const disco_timer_t *timer) {
  if (timer == NULL || timer->closing)
    return 0;
  return uv_is_active((const uv_handle_t *)&timer->uv);
}

void disco_timer_set_ref(disco_timer_t *timer, int ref) {
  if (timer == NULL || timer->closing)
    return;
  if (ref)
    uv_ref((uv_handle_t *)&timer->uv);
  else
    uv_unref((uv_handle_t *)&timer->uv);
}

void disco_timer_close(disco_timer_t *timer) {
  if (timer == NULL || timer->closing)
    return;
  timer->closing = 1;
  uv_close((uv_handle_t *)&timer->uv, disco__timer_close_cb);
}

void *disco_timer_data(const disco_timer_t *timer) {
  return timer->data;
}
