/*
 * Private to core/: the pieces the core files share. Nothing here is API;
 * bindings/ and users include disco.h only.
 */
#ifndef DISCO_INTERNAL_H
#define DISCO_INTERNAL_H

#include <pthread.h>
#include <stddef.h>

#include "disco.h"

/* Recovers the struct that embeds `ptr` as `member`. */
#define disco__container_of(ptr, type, member)                                 \
  ((type *)((char *)(ptr)-offsetof(type, member)))

/*
 * Fields shared with other threads (reference counts, the loop's log level
 * and queue pointer) go through these, so that every such access is visibly
 * atomic and sequentially consistent. C99 has no <stdatomic.h>; the GCC
 * builtins are what libuv itself relies on.
 */
#define disco__atomic_load(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define disco__atomic_store(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define disco__atomic_add(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)
#define disco__atomic_sub(p, v) __atomic_sub_fetch((p), (v), __ATOMIC_SEQ_CST)

/* ------------------------------------------------------------------ list */

static inline void disco__list_init(struct disco__list *head) {
  head->next = head;
  head->prev = head;
}

static inline void disco__list_insert_tail(struct disco__list *head,
                                           struct disco__list *node) {
  node->next = head;
  node->prev = head->prev;
  head->prev->next = node;
  head->prev = node;
}

static inline void disco__list_remove(struct disco__list *node) {
  node->prev->next = node->next;
  node->next->prev = node->prev;
  /* A removed node points at itself, so that removing it twice is harmless
   * and a stale node never reaches back into the list. */
  disco__list_init(node);
}

/* --------------------------------------------------------------- handles */

/* disco_loop_t.closing: the loop refuses new handles once it is closing. */
enum { DISCO__LOOP_OPEN = 0, DISCO__LOOP_CLOSING = 1, DISCO__LOOP_CLOSED = 2 };

typedef struct disco__handle_s disco__handle_t;

/* A handle's own close path. It must be idempotent and must not unlink the
 * handle synchronously: disco_loop_close() walks the list while calling it. */
typedef void (*disco__handle_close_fn)(disco__handle_t *handle);

/*
 * The header every core handle (queue, timer, signal) embeds, so that
 * disco_loop_close() can find each open one and close it through the same
 * path its owner would, which runs the owner's close callback exactly once.
 */
struct disco__handle_s {
  struct disco__list link; /* in loop->handles until the handle has closed */
  disco_loop_t *loop;
  disco__handle_close_fn close;
};

/* Loop thread. Links `handle` into the loop's list; DISCO_ECLOSED once the
 * loop is closing, because disco_loop_close() could no longer close it. */
int disco__handle_register(disco_loop_t *loop, disco__handle_t *handle,
                           disco__handle_close_fn close);
/* Loop thread, from the handle's libuv close callback. */
void disco__handle_unregister(disco__handle_t *handle);

/*
 * What every core handle that wraps one libuv handle (timers, signals, fs
 * events, and the sockets to come) shares: registration with the loop, the
 * owner's close callback, the idempotent close, and freeing the wrapper
 * afterwards. Embed it first in the wrapper struct; `owner` is the wrapper
 * (what the public API hands out), which the core frees after the close
 * callback ran.
 */
typedef struct {
  disco__handle_t base;
  uv_handle_t *uv;
  void *owner;
  disco_handle_close_cb close_cb;
  void *data;
  int closing;
} disco__uvhandle_t;

/* Loop thread, after the libuv handle was initialised; the caller checked
 * that the loop is open, so registration cannot fail. */
void disco__uvhandle_open(disco_loop_t *loop, disco__uvhandle_t *handle,
                          uv_handle_t *uv, void *owner,
                          disco_handle_close_cb close_cb, void *data);
/* Idempotent; the close callback runs on a later loop iteration, then the
 * owner is freed. */
void disco__uvhandle_close(disco__uvhandle_t *handle);
void disco__uvhandle_set_ref(disco__uvhandle_t *handle, int ref);

/* ------------------------------------------------------------------ loop */

/*
 * Any thread. Returns the loop's queue with a reference the caller must
 * drop with disco_queue_release(), or NULL once disco_loop_close() has let
 * go of the queue. This is how a thread safely reaches loop->queue, which
 * the loop frees when it closes.
 */
disco_queue_t *disco__loop_queue_acquire(disco_loop_t *loop);

/* ----------------------------------------------------------------- queue */

/* Loop thread. Makes the queue's async handle stop keeping the loop alive,
 * as libuv's own internal handles do; used for the loop's queue. */
void disco__queue_unref(disco_queue_t *queue);

/* ---------------------------------------------------------------- logger */

/* Sets the level from DISCO_LOG_LEVEL (or INFO) and the default sink. */
void disco__log_init(disco_loop_t *loop);
/* Any thread. Queues `msg` (no level filtering, no formatting) for the
 * loop's sink even when called on the loop thread, for callers that must
 * not run the sink synchronously. */
void disco__log_post(disco_loop_t *loop, disco_log_level_t level,
                     const char *component, const char *msg);

/* ------------------------------------------------------------------ pool */

/* Fixed-size long-lived records from chunks of their own (core/pool.c):
 * `static disco_pool_t pool = DISCO_POOL_INIT(sizeof(record));`. Any
 * thread. Records come zeroed; chunks are never freed. */
typedef struct {
  size_t size;
  void *free_list;
  void *chunks;
  pthread_mutex_t mutex;
} disco_pool_t;

#define DISCO_POOL_INIT(record_size)                                           \
  { (record_size), NULL, NULL, PTHREAD_MUTEX_INITIALIZER }

void *disco_pool_alloc(disco_pool_t *pool);
void disco_pool_free(disco_pool_t *pool, void *record);

/* sockaddr.c: "host:port" of an address ("[::1]:80" for IPv6) into out;
 * returns the port (0 when unknown, out then "?"). */
int disco__sockaddr_text(const struct sockaddr_storage *addr, char *out,
                         size_t size);
/* The same for the peer of a connected TCP handle. */
int disco__tcp_peer_text(const uv_tcp_t *tcp, char *out, size_t size);

/* http_header.c: whether a header name (is_name) or value can be written
 * as it is: 1, or 0 when it would break the header section. */
int disco__http_header_ok(const char *s, size_t len, int is_name);

#endif /* DISCO_INTERNAL_H */
