/*
 * Timers: heap-allocated wrappers around uv_timer_t that the loop can close
 * when it closes, freed by the core after their close callback.
 */
#include <stdlib.h>

#include "internal.h"

struct disco_timer_s {
  disco__uvhandle_t handle; /* first: the core frees the timer through it */
  uv_timer_t uv;
  disco_timer_cb cb;
};

static void disco__timer_cb(uv_timer_t *uv) {
  disco_timer_t *timer;

  timer = disco__container_of(uv, disco_timer_t, uv);
  timer->cb(timer);
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
  disco__uvhandle_open(loop, &timer->handle, (uv_handle_t *)&timer->uv, timer,
                       close_cb, data);
  *out = timer;
  return 0;
}

int disco_timer_start(disco_timer_t *timer, disco_timer_cb cb,
                      uint64_t timeout_ms, uint64_t repeat_ms) {
  if (timer == NULL || cb == NULL)
    return DISCO_EINVAL;
  if (timer->handle.closing)
    return DISCO_ECLOSED;
  timer->cb = cb;
  /* uv_timer_start() re-arms an active timer, which is what restart means. */
  return disco_translate_uv_error(
      uv_timer_start(&timer->uv, disco__timer_cb, timeout_ms, repeat_ms));
}

int disco_timer_stop(disco_timer_t *timer) {
  if (timer == NULL)
    return DISCO_EINVAL;
  if (timer->handle.closing)
    return DISCO_ECLOSED;
  return disco_translate_uv_error(uv_timer_stop(&timer->uv));
}

int disco_timer_is_active(const disco_timer_t *timer) {
  if (timer == NULL || timer->handle.closing)
    return 0;
  return uv_is_active((const uv_handle_t *)&timer->uv);
}

void disco_timer_set_ref(disco_timer_t *timer, int ref) {
  if (timer != NULL)
    disco__uvhandle_set_ref(&timer->handle, ref);
}

void disco_timer_close(disco_timer_t *timer) {
  if (timer != NULL)
    disco__uvhandle_close(&timer->handle);
}

void *disco_timer_data(const disco_timer_t *timer) {
  return timer->handle.data;
}
