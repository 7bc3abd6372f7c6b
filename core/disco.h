/*
 * disco core: the whole public C API in one header.
 *
 * The core is plain C99 on libuv (and, from the ZooKeeper work on,
 * libzookeeper_mt). It never includes a Lua header, so everything here can be
 * tested from C alone; bindings/ translate it to Lua.
 *
 * Conventions (after libuv):
 * - Functions return 0 or a negative DISCO_E* code. A call that returns an
 *   error never runs its callback.
 * - Handles (loop-owned, long-lived: timers, signals, fs events, queues) are
 *   allocated by the core with disco_<noun>_new() and freed by the core after
 *   they close. The close callback given at creation runs exactly once,
 *   whether the owner closed the handle or disco_loop_close() did, and is the
 *   owner's last look at the handle.
 * - Everything runs on the loop thread except where a comment says otherwise
 *   (disco_queue_push() and disco_log() are safe from any thread).
 */
#ifndef DISCO_H
#define DISCO_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DISCO_VERSION_MAJOR 0
#define DISCO_VERSION_MINOR 1
#define DISCO_VERSION_PATCH 0
#define DISCO_VERSION_STRING "0.1.0"

/* ---------------------------------------------------------------- errors */

/*
 * The one list of error codes: XX(name, value, message). Values are negative
 * and stay clear of libuv's (negated errno) range so the two never collide.
 * Foreign codes (libuv now, ZooKeeper later) are translated to these in one
 * place each: disco_translate_uv_error() in core/error.c.
 */
#define DISCO_ERRNO_MAP(XX)                                                    \
  XX(EINVAL, -4001, "invalid argument")                                        \
  XX(ENOMEM, -4002, "out of memory")                                           \
  XX(ECLOSED, -4003, "handle is closed or closing")                            \
  XX(ECANCELED, -4004, "operation canceled")                                   \
  XX(ETIMEDOUT, -4005, "operation timed out")                                  \
  XX(EBUSY, -4006, "resource busy")                                            \
  XX(EAGAIN, -4007, "resource temporarily unavailable")                        \
  XX(ENOENT, -4008, "no such file or directory")                               \
  XX(EACCES, -4009, "permission denied")                                       \
  XX(EADDRINUSE, -4010, "address already in use")                              \
  XX(ECONNREFUSED, -4011, "connection refused")                                \
  XX(ECONNRESET, -4012, "connection reset by peer")                            \
  XX(EPIPE, -4013, "broken pipe")                                              \
  XX(EOF, -4014, "end of file")                                                \
  XX(ENOSYS, -4015, "function not implemented")                                \
  XX(ERANGE, -4016, "value out of range")                                      \
  XX(EIO, -4017, "input/output error")

typedef enum {
#define DISCO__ERR_ENUM(name, value, msg) DISCO_##name = (value),
  DISCO_ERRNO_MAP(DISCO__ERR_ENUM)
#undef DISCO__ERR_ENUM
      DISCO__ERR_END
} disco_errno_t;

/* "EINVAL"; "EUNKNOWN" for a code not in the map. Never NULL. */
const char *disco_err_name(int err);
/* "invalid argument"; "unknown error" for a code not in the map. */
const char *disco_strerror(int err);
/* Maps a negative libuv code to a DISCO_E* code (0 stays 0). Codes with no
 * close equivalent become DISCO_EIO; the libuv name is lost, so callers that
 * want it must log it before translating. */
int disco_translate_uv_error(int uv_err);

/* ---------------------------------------------------------------- logger */

typedef enum {
  DISCO_LOG_ERROR = 0,
  DISCO_LOG_WARN = 1,
  DISCO_LOG_INFO = 2,
  DISCO_LOG_DEBUG = 3,
  DISCO_LOG_TRACE = 4
} disco_log_level_t;

typedef struct disco_loop_s disco_loop_t;

/* Private: an intrusive doubly-linked list link (libuv's struct uv__queue). */
struct disco__list {
  struct disco__list *next;
  struct disco__list *prev;
};

/*
 * Receives one formatted message. Always called on the loop thread: messages
 * logged from other threads travel through the loop's event queue first, so a
 * sink may call into single-threaded code (a Lua state). `component` names
 * the part of disco (or the plugin) that logged; `msg` has no newline.
 */
typedef void (*disco_log_sink_cb)(void *ud, disco_log_level_t level,
                                  const char *component, const char *msg);

/* "error", "warn", "info", "debug", "trace". */
const char *disco_log_level_name(disco_log_level_t level);
/* Parses a level name (as above); returns 0 or DISCO_EINVAL. */
int disco_log_level_parse(const char *name, disco_log_level_t *level);

/* Messages longer than this are cut and end in "...". */
#define DISCO_LOG_MAX_MESSAGE 4096

/* Thread-safe. Drops the message when `level` is above the loop's level. */
void disco_log(disco_loop_t *loop, disco_log_level_t level,
               const char *component, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
/* Loop thread only. A NULL sink restores the default (stderr). */
void disco_log_set_sink(disco_loop_t *loop, disco_log_sink_cb sink, void *ud);
/* Thread-safe. */
void disco_log_set_level(disco_loop_t *loop, disco_log_level_t level);
disco_log_level_t disco_log_get_level(disco_loop_t *loop);
/* The default sink: "2026-11-21T10:00:00.123Z WARN  [component] message" on
 * stderr. Exposed so that a custom sink can fall back to it. */
void disco_log_stderr_sink(void *ud, disco_log_level_t level,
                           const char *component, const char *msg);

/* ----------------------------------------------------------- event queue */

/*
 * A thread-safe queue that hands work from any thread to the loop thread:
 * a mutex-protected FIFO plus a uv_async_t. Producers push on any thread;
 * uv_async_send() coalesces wake-ups, so the loop side drains everything that
 * is queued on each wake. Items from one producer are delivered in the order
 * that producer pushed them.
 *
 * Items are intrusive: embed a disco_qitem_t in your own struct and recover it
 * in the callback. The callback owns the item from then on (frees it).
 */
typedef struct disco_qitem_s disco_qitem_t;
typedef struct disco_queue_s disco_queue_t;

/* `status` is 0 when delivered, DISCO_ECANCELED when the queue closed before
 * the item could be delivered (release what the item holds, nothing more). */
typedef void (*disco_qitem_cb)(disco_qitem_t *item, int status);

struct disco_qitem_s {
  disco_qitem_t *next; /* private to the queue */
  disco_qitem_cb cb;
};

typedef struct {
  uint64_t pushed;    /* accepted by disco_queue_push() */
  uint64_t rejected;  /* refused because the queue was closing */
  uint64_t delivered; /* callbacks run with status 0 */
  uint64_t canceled;  /* callbacks run with DISCO_ECANCELED */
  uint64_t wakeups;   /* async callbacks (drains); <= pushed */
} disco_queue_stats_t;

typedef void (*disco_queue_close_cb)(disco_queue_t *queue, void *data);

/*
 * Creates a queue on `loop`. The queue is reference counted: the loop side
 * holds one reference, dropped when the queue's close completes. A producer
 * thread that may outlive the close must take its own reference with
 * disco_queue_retain() before it starts and drop it with
 * disco_queue_release() when it will push no more; the memory is freed when
 * the last reference goes.
 */
int disco_queue_new(disco_loop_t *loop, disco_queue_close_cb close_cb,
                    void *data, disco_queue_t **out);
/* Any thread. 0, or DISCO_ECLOSED once closing began (the caller keeps the
 * item). Never blocks beyond the queue's mutex. */
int disco_queue_push(disco_queue_t *queue, disco_qitem_t *item);
/* Any thread. */
void disco_queue_retain(disco_queue_t *queue);
void disco_queue_release(disco_queue_t *queue);
/* Loop thread. Stops accepting pushes, runs every queued item's callback with
 * DISCO_ECANCELED, then closes the async handle; close_cb runs after that.
 * Idempotent. */
void disco_queue_close(disco_queue_t *queue);
/* Any thread; a consistent snapshot. */
void disco_queue_stats(disco_queue_t *queue, disco_queue_stats_t *stats);
void *disco_queue_data(const disco_queue_t *queue);

/* ------------------------------------------------------------------- loop */

/*
 * A disco loop owns a uv_loop_t, the loop's own event queue (used by the
 * logger and by the ZooKeeper sessions) and the list of core handles, so that
 * disco_loop_close() can close every one of them.
 * The struct is the caller's memory; treat its fields as private.
 */
struct disco_loop_s {
  uv_loop_t uv;
  disco_queue_t *queue;
  uv_thread_t thread; /* the thread that initialised the loop */
  /* Logger. `log_level` is read from any thread. */
  volatile int log_level;
  disco_log_sink_cb log_sink;
  void *log_ud;
  /* Every open core handle, so that close can walk them. */
  struct disco__list handles;
  /* Threads inside the short window where they take a reference on `queue`;
   * disco_loop_close() waits for it to drop to 0 before freeing the queue. */
  int queue_users;
  int closing;
  void *data; /* for the owner */
};

int disco_loop_init(disco_loop_t *loop);
/* Runs until stopped or nothing is left to do. Returns non-zero when there
 * is still work (stopped early), 0 otherwise. */
int disco_loop_run(disco_loop_t *loop);
/* Runs one iteration, blocking for I/O if there is nothing ready. */
int disco_loop_run_once(disco_loop_t *loop);
/* Runs one iteration without blocking. */
int disco_loop_run_nowait(disco_loop_t *loop);
void disco_loop_stop(disco_loop_t *loop);
int disco_loop_alive(disco_loop_t *loop);
/* Loop time in milliseconds (cached per iteration, as libuv). */
uint64_t disco_loop_now(disco_loop_t *loop);
void disco_loop_update_time(disco_loop_t *loop);
/* True when called on the thread that runs the loop. */
int disco_loop_on_thread(disco_loop_t *loop);
/*
 * Closes the loop's queue and every open core handle (each close callback
 * runs), closes any other libuv handle still open on it, runs the loop until
 * all of those have closed and releases libuv's resources. Returns 0 or
 * DISCO_EBUSY if libuv still reports busy handles after the bounded drain.
 * Idempotent.
 */
int disco_loop_close(disco_loop_t *loop);

/* --------------------------------------------------------------- handles */

/* Called once when a handle has closed, just before the core frees it. */
typedef void (*disco_handle_close_cb)(void *handle, void *data);

/* --------------------------------------------------------------- timers */

typedef struct disco_timer_s disco_timer_t;
typedef void (*disco_timer_cb)(disco_timer_t *timer);

int disco_timer_new(disco_loop_t *loop, disco_handle_close_cb close_cb,
                    void *data, disco_timer_t **out);
/* `timeout_ms` until the first call, then every `repeat_ms` (0: once).
 * Restarting an active timer re-arms it. DISCO_ECLOSED after close. */
int disco_timer_start(disco_timer_t *timer, disco_timer_cb cb,
                      uint64_t timeout_ms, uint64_t repeat_ms);
int disco_timer_stop(disco_timer_t *timer);
int disco_timer_is_active(const disco_timer_t *timer);
/* Whether this timer alone keeps disco_loop_run() going (libuv's ref);
 * handles are ref'ed when created. */
void disco_timer_set_ref(disco_timer_t *timer, int ref);
/* Idempotent; the close callback runs on a later loop iteration. */
void disco_timer_close(disco_timer_t *timer);
void *disco_timer_data(const disco_timer_t *timer);

/* --------------------------------------------------------------- signals */

typedef struct disco_signal_s disco_signal_t;
typedef void (*disco_signal_cb)(disco_signal_t *signal, int signum);

int disco_signal_new(disco_loop_t *loop, disco_handle_close_cb close_cb,
                     void *data, disco_signal_t **out);
/* Watches `signum` until stopped or closed. */
int disco_signal_start(disco_signal_t *signal, disco_signal_cb cb, int signum);
int disco_signal_stop(disco_signal_t *signal);
/* Whether this watch alone keeps disco_loop_run() going; a daemon's
 * SIGTERM watch is usually unref'ed. */
void disco_signal_set_ref(disco_signal_t *signal, int ref);
void disco_signal_close(disco_signal_t *signal);
void *disco_signal_data(const disco_signal_t *signal);

/* ------------------------------------------------------------- fs events */

/*
 * Watches a file or a directory (not recursively) for changes, on libuv's
 * uv_fs_event_t (inotify on Linux). Events about one change may be split or
 * coalesced as the platform reports them: a new file typically yields a
 * RENAME then one or more CHANGEs.
 */
typedef struct disco_fs_event_s disco_fs_event_t;

/* Bits of the callback's `events` mask; their own values, not libuv's. */
enum { DISCO_FS_RENAME = 1, DISCO_FS_CHANGE = 2 };

/* `filename` is the name of the entry that changed, relative to the watched
 * path (may be NULL; valid only during the call); `events` is a mask of
 * DISCO_FS_RENAME | DISCO_FS_CHANGE; `status` is 0 or a DISCO_E* code. */
typedef void (*disco_fs_event_cb)(disco_fs_event_t *handle,
                                  const char *filename, int events, int status);

int disco_fs_event_new(disco_loop_t *loop, disco_handle_close_cb close_cb,
                       void *data, disco_fs_event_t **out);
/* Watches `path`, a file or a directory (not recursive), until stopped or
 * closed. Starting an active watch moves it to `path`; if that fails the
 * handle is left stopped. DISCO_ENOENT when `path` does not exist. */
int disco_fs_event_start(disco_fs_event_t *handle, disco_fs_event_cb cb,
                         const char *path);
/* No callback runs after this returns, until the next start. */
int disco_fs_event_stop(disco_fs_event_t *handle);
/* Whether this watch alone keeps disco_loop_run() going. */
void disco_fs_event_set_ref(disco_fs_event_t *handle, int ref);
/* Idempotent; the close callback runs on a later loop iteration. */
void disco_fs_event_close(disco_fs_event_t *handle);
void *disco_fs_event_data(const disco_fs_event_t *handle);

/* ------------------------------------------- queue probe (diagnostic) */

/*
 * Shows the event queue working across real threads: starts `producers`
 * threads that each push `per_producer` items tagged (producer, sequence)
 * onto a queue of its own, checks on the loop thread that every producer's
 * items arrive once each and in order, then calls `cb` once with the counts.
 * A clean run has received == producers * per_producer and zero
 * out_of_order, duplicates and missing. If the loop closes first, `cb` still
 * runs once (from disco_loop_close()) with what had arrived by then.
 */
typedef struct {
  uint64_t producers;
  uint64_t per_producer;
  uint64_t received;     /* items delivered to the loop thread */
  uint64_t out_of_order; /* items that skipped ahead of their producer */
  uint64_t duplicates;   /* items at or behind a sequence already seen */
  uint64_t missing;      /* expected items that never arrived */
  uint64_t wakeups;      /* the queue's drains */
  double elapsed_ms;     /* from start to the last item */
} disco_queue_probe_result_t;

typedef void (*disco_queue_probe_cb)(const disco_queue_probe_result_t *result,
                                     void *data);

/* Loop thread. `producers` must be 1..64 and `per_producer` 1..10,000,000
 * (else DISCO_EINVAL). */
int disco_queue_probe_start(disco_loop_t *loop, unsigned producers,
                            uint64_t per_producer, disco_queue_probe_cb cb,
                            void *data);

#ifdef __cplusplus
}
#endif
#endif /* DISCO_H */
