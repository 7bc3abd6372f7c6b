/*
 * File-system event watches: heap-allocated wrappers around uv_fs_event_t
 * that the loop can close when it closes, freed by the core after their
 * close callback. libuv's event bits are mapped to disco's here, so that the
 * public values never depend on libuv's.
 */
#include <stdlib.h>

#include "internal.h"

struct disco_fs_event_s {
  disco__uvhandle_t handle; /* first: the core frees the watch through it */
  uv_fs_event_t uv;
  disco_fs_event_cb cb;
};

static int disco__fs_event_mask(int uv_events) {
  int events;

  events = 0;
  if (uv_events & UV_RENAME)
    events |= DISCO_FS_RENAME;
  if (uv_events & UV_CHANGE)
    events |= DISCO_FS_CHANGE;
  return events;
}

static void disco__fs_event_cb(uv_fs_event_t *uv, const char *filename,
                               int events, int status) {
  disco_fs_event_t *fs;

  fs = disco__container_of(uv, disco_fs_event_t, uv);
  fs->cb(fs, filename, disco__fs_event_mask(events),
         disco_translate_uv_error(status));
}

int disco_fs_event_new(disco_loop_t *loop, disco_handle_close_cb close_cb,
                       void *data, disco_fs_event_t **out) {
  disco_fs_event_t *fs;
  int err;

  if (loop == NULL || out == NULL)
    return DISCO_EINVAL;
  if (loop->closing != DISCO__LOOP_OPEN)
    return DISCO_ECLOSED;
  fs = calloc(1, sizeof(*fs));
  if (fs == NULL)
    return DISCO_ENOMEM;
  err = uv_fs_event_init(&loop->uv, &fs->uv);
  if (err != 0) {
    free(fs);
    return disco_translate_uv_error(err);
  }
  disco__uvhandle_open(loop, &fs->handle, (uv_handle_t *)&fs->uv, fs, close_cb,
                       data);
  *out = fs;
  return 0;
}

int disco_fs_event_start(disco_fs_event_t *handle, disco_fs_event_cb cb,
                         const char *path) {
  int err;

  if (handle == NULL || cb == NULL || path == NULL)
    return DISCO_EINVAL;
  if (handle->handle.closing)
    return DISCO_ECLOSED;
  /* libuv refuses to start an active watch (UV_EINVAL); moving it to the
   * new path is what a restart means, as for signals. */
  if (uv_is_active((uv_handle_t *)&handle->uv)) {
    err = uv_fs_event_stop(&handle->uv);
    if (err != 0)
      return disco_translate_uv_error(err);
  }
  handle->cb = cb;
  return disco_translate_uv_error(
      uv_fs_event_start(&handle->uv, disco__fs_event_cb, path, 0));
}

int disco_fs_event_stop(disco_fs_event_t *handle) {
  if (handle == NULL)
    return DISCO_EINVAL;
  if (handle->handle.closing)
    return DISCO_ECLOSED;
  return disco_translate_uv_error(uv_fs_event_stop(&handle->uv));
}

void disco_fs_event_set_ref(disco_fs_event_t *handle, int ref) {
  if (handle != NULL)
    disco__uvhandle_set_ref(&handle->handle, ref);
}

void disco_fs_event_close(disco_fs_event_t *handle) {
  if (handle != NULL)
    disco__uvhandle_close(&handle->handle);
}

void *disco_fs_event_data(const disco_fs_event_t *handle) {
  return handle->handle.data;
}
