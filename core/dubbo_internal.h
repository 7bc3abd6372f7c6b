/*
 * What the dubbo server and client share beyond the public frame API: the
 * read buffers they hand libuv and the loop that turns one read chunk into
 * whole frames. Defined in dubbo_frame.c.
 */
#ifndef DISCO_DUBBO_INTERNAL_H
#define DISCO_DUBBO_INTERNAL_H

#include "internal.h"

/* The size of the buffer each read on a dubbo connection gets. */
#define DISCO__DUBBO_READ_BUF 65536

/* A uv_alloc_cb for dubbo connections: a fresh DISCO__DUBBO_READ_BUF
 * buffer (or none when out of memory); the read callback frees it. */
void disco__dubbo_alloc_cb(uv_handle_t *handle, size_t suggested,
                           uv_buf_t *buf);

/* Called for each whole frame; `frame` is valid only during the call. */
typedef void (*disco__dubbo_frame_cb)(void *data,
                                      const disco_dubbo_frame_t *frame);

/* Whether the connection still wants frames (it may close from inside a
 * frame callback). */
typedef int (*disco__dubbo_live_cb)(void *data);

/* Feeds data[0..len) to the framer, calling on_frame for each whole frame
 * while live(data) holds. Returns 0, or DISCO_EPROTO with "protocol error:
 * <why>" in why[0..why_len) when the framer refused the stream. */
int disco__dubbo_feed(disco_dubbo_framer_t *framer, const char *data,
                      size_t len, disco__dubbo_live_cb live,
                      disco__dubbo_frame_cb on_frame, void *cb_data, char *why,
                      size_t why_len);

#endif /* DISCO_DUBBO_INTERNAL_H */
