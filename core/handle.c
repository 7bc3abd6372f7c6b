/*
 * The shared life cycle of core handles that wrap one libuv handle: open
 * (register with the loop), close (idempotent, from the owner or from
 * disco_loop_close()), and the close callback that tells the owner and
 * frees the wrapper.
 */
#include <stdlib.h>

#include "internal.h"

static void disco__uvhandle_close_cb(uv_handle_t *uv) {
  disco__uvhandle_t *handle;

  handle = (disco__uvhandle_t *)uv->data;
  disco__handle_unregister(&handle->base);
  if (handle->close_cb != NULL)
    handle->close_cb(handle->owner, handle->data);
  free(handle->owner);
}

static void disco__uvhandle_close_from_loop(disco__handle_t *base) {
  disco__uvhandle_close(disco__container_of(base, disco__uvhandle_t, base));
}

void disco__uvhandle_open(disco_loop_t *loop, disco__uvhandle_t *handle,
                          uv_handle_t *uv, void *owner,
                          disco_handle_close_cb close_cb, void *data) {
  handle->uv = uv;
  handle->owner = owner;
  handle->close_cb = close_cb;
  handle->data = data;
  handle->closing = 0;
  uv->data = handle;
  disco__handle_register(loop, &handle->base, disco__uvhandle_close_from_loop);
}

void disco__uvhandle_close(disco__uvhandle_t *handle) {
  if (handle->closing)
    return;
  handle->closing = 1;
  uv_close(handle->uv, disco__uvhandle_close_cb);
}

void disco__uvhandle_set_ref(disco__uvhandle_t *handle, int ref) {
  if (handle->closing)
    return;
  if (ref)
    uv_ref(handle->uv);
  else
    uv_unref(handle->uv);
}
