/*
 * Signal watchers: heap-allocated wrappers around uv_signal_t that the loop
 * can close when it closes, freed by the core after their close callback.
 */
#include <stdlib.h>

#include "internal.h"

struct disco_signal_s {
  disco__uvhandle_t handle; /* first: the core frees the watcher through it */
  uv_signal_t uv;
  disco_signal_cb cb;
};

static void disco__signal_cb(uv_signal_t *uv, int signum) {
  disco_signal_t *sig;

  sig = disco__container_of(uv, disco_signal_t, uv);
  sig->cb(sig, signum);
}

int disco_signal_new(disco_loop_t *loop, disco_handle_close_cb close_cb,
                     void *data, disco_signal_t **out) {
  disco_signal_t *sig;
  int err;

  if (loop == NULL || out == NULL)
    return DISCO_EINVAL;
  if (loop->closing != DISCO__LOOP_OPEN)
    return DISCO_ECLOSED;
  sig = calloc(1, sizeof(*sig));
  if (sig == NULL)
    return DISCO_ENOMEM;
  err = uv_signal_init(&loop->uv, &sig->uv);
  if (err != 0) {
    free(sig);
    return disco_translate_uv_error(err);
  }
  disco__uvhandle_open(loop, &sig->handle, (uv_handle_t *)&sig->uv, sig,
                       close_cb, data);
  *out = sig;
  return 0;
}

int disco_signal_start(disco_signal_t *signal, disco_signal_cb cb, int signum) {
  if (signal == NULL || cb == NULL)
    return DISCO_EINVAL;
  if (signal->handle.closing)
    return DISCO_ECLOSED;
  signal->cb = cb;
  /* Starting a watcher that watches another signal moves it, as libuv. */
  return disco_translate_uv_error(
      uv_signal_start(&signal->uv, disco__signal_cb, signum));
}

int disco_signal_stop(disco_signal_t *signal) {
  if (signal == NULL)
    return DISCO_EINVAL;
  if (signal->handle.closing)
    return DISCO_ECLOSED;
  return disco_translate_uv_error(uv_signal_stop(&signal->uv));
}

void disco_signal_set_ref(disco_signal_t *signal, int ref) {
  if (signal != NULL)
    disco__uvhandle_set_ref(&signal->handle, ref);
}

void disco_signal_close(disco_signal_t *signal) {
  if (signal != NULL)
    disco__uvhandle_close(&signal->handle);
}

void *disco_signal_data(const disco_signal_t *signal) {
  return signal->handle.data;
}
