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
 * Foreign codes (libuv, ZooKeeper) are translated to these in one
 * place each: disco_translate_uv_error() in core/error.c and
 * disco_translate_zk_error() in core/zk_error.c.
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
  XX(EIO, -4017, "input/output error")                                         \
  XX(ENONODE, -4018, "ZooKeeper node does not exist")                          \
  XX(ENODEEXISTS, -4019, "ZooKeeper node already exists")                      \
  XX(EBADVERSION, -4020, "ZooKeeper version conflict")                         \
  XX(ENOTEMPTY, -4021, "ZooKeeper node has children")                          \
  XX(ENOAUTH, -4022, "ZooKeeper ACL denies the operation")                     \
  XX(ECONNLOSS, -4023,                                                         \
     "ZooKeeper connection lost (outcome of a write unknown)")                 \
  XX(ESESSIONEXPIRED, -4024, "ZooKeeper session expired")                      \
  XX(EAUTHFAILED, -4025, "ZooKeeper authentication failed")                    \
  XX(EZK, -4026, "ZooKeeper error")

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
/* Maps a ZooKeeper return code (ZOK, ZNONODE, ...) to a DISCO_E* code (ZOK
 * stays 0). ZCONNECTIONLOSS and ZOPERATIONTIMEOUT become DISCO_ECONNLOSS,
 * ZCLOSING becomes DISCO_ECLOSED; codes with no close equivalent become
 * DISCO_EZK, so callers that want the exact code log it first. */
int disco_translate_zk_error(int zk_rc);

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

/* -------------------------------------------------------------- ZooKeeper */

/*
 * A ZooKeeper session on libzookeeper_mt. The library's own threads (IO and
 * completion) only deep-copy what they receive into queue items; every
 * callback below runs on the loop thread.
 *
 * A disco_zk_t outlives the ZooKeeper handles under it: when the server
 * expires the session, the dead handle is closed off the loop thread and a
 * new one is created after a bounded, jittered backoff. Each handle has a
 * generation number (1 for the first, +1 for each new one); states, results
 * and watch events carry the generation they belong to. A connection loss
 * is not an expiry: the library reconnects by itself, keeping the session,
 * its watches and its ephemeral nodes, and the state goes CONNECTING then
 * CONNECTED with the same generation.
 */
typedef struct disco_zk_s disco_zk_t;

typedef enum {
  DISCO_ZK_CONNECTING = 1, /* no usable connection yet, or it dropped */
  DISCO_ZK_CONNECTED = 2,
  DISCO_ZK_EXPIRED = 3,     /* the server expired the session; a new
                             * handle follows after the backoff */
  DISCO_ZK_AUTH_FAILED = 4, /* terminal: the owner should close */
  DISCO_ZK_CLOSED = 5
} disco_zk_state_t;

/* "connecting", "connected", "expired", "auth_failed", "closed". */
const char *disco_zk_state_name(disco_zk_state_t state);

typedef enum {
  DISCO_ZK_ACL_OPEN = 0,       /* world:anyone, all permissions */
  DISCO_ZK_ACL_CREATOR_ALL = 1 /* auth:, all permissions; needs `auth` */
} disco_zk_acl_t;

typedef struct {
  /* "h1:p1,h2:p2" with an optional chroot suffix: "h1:p1,h2:p2/app".
   * Required. */
  const char *hosts;
  int session_timeout_ms; /* 0: 30000; the server clamps it */
  const char *auth;       /* digest "user:password", or NULL */
  disco_zk_acl_t acl;     /* the ACL of the nodes this session creates */
  int min_backoff_ms;     /* 0: 100; first delay before a new handle */
  int max_backoff_ms;     /* 0: 5000 */
  /* Testing only: join this existing session (see disco_zk_debug_session)
   * with the first handle instead of creating a new one. 0: none. */
  int64_t session_id;
  const char *session_passwd; /* DISCO_ZK_PASSWD_LEN bytes */
} disco_zk_options_t;

#define DISCO_ZK_PASSWD_LEN 16
/* Data returned by get() is cut to this (ZooKeeper's jute.maxbuffer). */
#define DISCO_ZK_MAX_DATA (1024 * 1024)

/* Runs on every state change of the current handle. */
typedef void (*disco_zk_state_cb)(disco_zk_t *zk, disco_zk_state_t state,
                                  uint64_t generation);

/*
 * Creates a session and starts connecting (zookeeper_init does not block on
 * the network). DISCO_EINVAL for missing or malformed hosts, a negative
 * timeout, or creator-all ACL without auth. The handle keeps the loop alive
 * until it is closed. `close_cb` gets the disco_zk_t.
 */
int disco_zk_new(disco_loop_t *loop, const disco_zk_options_t *opts,
                 disco_zk_state_cb state_cb, disco_handle_close_cb close_cb,
                 void *data, disco_zk_t **out);
/*
 * Idempotent. New requests fail with DISCO_ECLOSED at once; requests in
 * flight complete once each (with their result if it arrived, else
 * DISCO_ECLOSED); unfired watches end with DISCO_ECLOSED. zookeeper_close()
 * runs on a libuv worker thread, since it may block for up to 4.5 s on a
 * connected handle; the state callback sees CLOSED and then the close
 * callback runs, on the loop thread, once that has finished.
 */
void disco_zk_close(disco_zk_t *zk);
disco_zk_state_t disco_zk_state(const disco_zk_t *zk);
uint64_t disco_zk_generation(const disco_zk_t *zk);
/* The id of the current session, 0 before the first CONNECTED. */
int64_t disco_zk_session_id(const disco_zk_t *zk);
void *disco_zk_data(const disco_zk_t *zk);
/*
 * Testing only: the current session's id and password, so that a test can
 * open a second handle on the same session and close it, which makes the
 * server expire the session (the standard way to force an expiry).
 * `passwd` holds DISCO_ZK_PASSWD_LEN bytes. DISCO_EAGAIN before the first
 * CONNECTED.
 */
int disco_zk_debug_session(disco_zk_t *zk, int64_t *id, char *passwd,
                           size_t *passwd_len);

/* A node's metadata (ZooKeeper's struct Stat). */
typedef struct {
  int64_t czxid;
  int64_t mzxid;
  int64_t pzxid;
  int64_t ctime; /* ms since the epoch */
  int64_t mtime;
  int32_t version;
  int32_t cversion;
  int32_t aversion;
  int64_t ephemeral_owner; /* session id, 0 for a persistent node */
  int32_t data_length;
  int32_t num_children;
} disco_zk_stat_t;

typedef enum {
  DISCO_ZK_OP_GET = 1,
  DISCO_ZK_OP_EXISTS = 2,
  DISCO_ZK_OP_CHILDREN = 3,
  DISCO_ZK_OP_CREATE = 4,
  DISCO_ZK_OP_SET = 5,
  DISCO_ZK_OP_DELETE = 6
} disco_zk_op_t;

/* What a request completes with; valid only during the callback. */
typedef struct {
  int err;   /* 0 or DISCO_E* */
  int zk_rc; /* ZooKeeper's own code, for logs (0 if none) */
  disco_zk_op_t op;
  uint64_t generation; /* of the handle the request went to */
  const char *path;    /* as requested */
  int has_stat;        /* stat is set (get, exists, children, create, set) */
  disco_zk_stat_t stat;
  const char *data; /* get: the node's data, NULL for a null value */
  size_t data_len;
  char **children; /* children: names, not paths */
  size_t num_children;
  const char *created_path; /* create: the real path (sequential suffix) */
} disco_zk_result_t;

typedef void (*disco_zk_cb)(disco_zk_t *zk, const disco_zk_result_t *result,
                            void *data);

typedef enum {
  DISCO_ZK_EVENT_CREATED = 1,
  DISCO_ZK_EVENT_DELETED = 2,
  DISCO_ZK_EVENT_CHANGED = 3,
  DISCO_ZK_EVENT_CHILD = 4
} disco_zk_event_type_t;

/* "created", "deleted", "changed", "child". */
const char *disco_zk_event_name(disco_zk_event_type_t type);

/*
 * A watch ends exactly once: status 0 when it fired (type and path set), or
 * a DISCO_E* code when it is gone without firing: the request failed and
 * ZooKeeper did not set it, the session expired (DISCO_ESESSIONEXPIRED) or
 * the handle closed (DISCO_ECLOSED). Session events never reach watches.
 */
typedef struct {
  int status;
  disco_zk_event_type_t type;
  const char *path;
  uint64_t generation;
} disco_zk_event_t;

typedef void (*disco_zk_watch_cb)(disco_zk_t *zk, const disco_zk_event_t *event,
                                  void *data);

/* Create flags. */
enum {
  DISCO_ZK_PERSISTENT = 0,
  DISCO_ZK_EPHEMERAL = 1,
  DISCO_ZK_SEQUENTIAL = 2,
  DISCO_ZK_CONTAINER = 4,
  /* On ENONODE, create the missing parents (persistent, or container with
   * DISCO_ZK_PARENTS_CONTAINER) and retry. */
  DISCO_ZK_PARENTS = 8,
  DISCO_ZK_PARENTS_CONTAINER = 16
};

/*
 * Requests. Each returns 0 and then runs `cb` exactly once on the loop
 * thread, or returns an error (DISCO_ECLOSED after close, DISCO_EINVAL,
 * DISCO_ESESSIONEXPIRED between an expiry and the next handle, ...) and
 * runs nothing. `watch` (may be NULL) sets a one-shot watch; it ends after
 * `cb` ran. `data` goes to both. Any version: -1.
 */
int disco_zk_get(disco_zk_t *zk, const char *path, disco_zk_watch_cb watch,
                 disco_zk_cb cb, void *data);
int disco_zk_exists(disco_zk_t *zk, const char *path, disco_zk_watch_cb watch,
                    disco_zk_cb cb, void *data);
int disco_zk_children(disco_zk_t *zk, const char *path, disco_zk_watch_cb watch,
                      disco_zk_cb cb, void *data);
int disco_zk_create(disco_zk_t *zk, const char *path, const char *value,
                    size_t len, int flags, disco_zk_cb cb, void *data);
int disco_zk_set(disco_zk_t *zk, const char *path, const char *value,
                 size_t len, int version, disco_zk_cb cb, void *data);
int disco_zk_delete(disco_zk_t *zk, const char *path, int version,
                    disco_zk_cb cb, void *data);

/* -------------------------------------------- ZooKeeper ephemeral node */

/*
 * An ephemeral node kept alive across connection losses and session
 * expiries. The node is created with its parents (as container nodes). When
 * it already exists, its owner decides: a node of this session is kept (and
 * given our data); a node left by another session (an expired one that the
 * server has not reaped yet, or another client) is deleted and created
 * again, at most DISCO_ZK_EPHEMERAL_TRIES times. After an expiry the node
 * is created again on the new session; after a reconnect of the same session
 * its existence and owner are checked. Closing the session closes the
 * handle.
 */
typedef struct disco_zk_ephemeral_s disco_zk_ephemeral_t;

typedef enum {
  DISCO_ZK_EPHEMERAL_CREATED = 1,   /* first created (or found ours) */
  DISCO_ZK_EPHEMERAL_RECREATED = 2, /* created again after a loss */
  DISCO_ZK_EPHEMERAL_LOST = 3,      /* gone or not creatable; err says why */
  DISCO_ZK_EPHEMERAL_CLOSED = 4     /* the handle closed (last state) */
} disco_zk_ephemeral_state_t;

#define DISCO_ZK_EPHEMERAL_TRIES 3

/* "created", "recreated", "lost", "closed". */
const char *disco_zk_ephemeral_state_name(disco_zk_ephemeral_state_t state);

typedef void (*disco_zk_ephemeral_cb)(disco_zk_ephemeral_t *node,
                                      disco_zk_ephemeral_state_t state,
                                      int err);
/* An update's outcome: 0 once the data is on our node, else DISCO_E*. */
typedef void (*disco_zk_ephemeral_update_cb)(disco_zk_ephemeral_t *node,
                                             int err, void *arg);

/* Starts creating the node at `path` with `len` bytes of `value` (copied).
 * `state_cb` may be NULL. DISCO_EINVAL for a bad path or too much data,
 * DISCO_ECLOSED on a closing session. */
int disco_zk_ephemeral_new(disco_zk_t *zk, const char *path, const char *value,
                           size_t len, disco_zk_ephemeral_cb state_cb,
                           disco_handle_close_cb close_cb, void *data,
                           disco_zk_ephemeral_t **out);
/* Sets new data on our node and remembers it for any later re-creation.
 * `cb` (may be NULL) runs once: when the data is on our node or failed. */
int disco_zk_ephemeral_update(disco_zk_ephemeral_t *node, const char *value,
                              size_t len, disco_zk_ephemeral_update_cb cb,
                              void *arg);
/* Idempotent. Deletes the node only if this session owns it (a node created
 * again by another session stays), then reports CLOSED and runs close_cb. */
void disco_zk_ephemeral_close(disco_zk_ephemeral_t *node);
const char *disco_zk_ephemeral_path(const disco_zk_ephemeral_t *node);
/* Whether the node is known to exist and be ours. */
int disco_zk_ephemeral_owned(const disco_zk_ephemeral_t *node);
void *disco_zk_ephemeral_data(const disco_zk_ephemeral_t *node);

/* --------------------------------------------- ZooKeeper children cache */

/*
 * The children of a path and their data, kept current with one-shot watches:
 * a child watch on the parent for membership, and a data watch on each child
 * so that a changed child is re-read alone. Changes come as diffs; a child
 * deleted and created again shows as updated (its czxid changed), never as
 * removed plus added. While the session is disconnected the cache keeps its
 * last state and reports nothing; after a reconnect it lists and checks
 * every child again, after an expiry it rebuilds, and reports only real
 * differences. A missing parent is an empty set, watched for its creation.
 * The first diff (the initial load) lists every child as added and is
 * reported even when empty.
 */
typedef struct disco_zk_cache_s disco_zk_cache_t;

typedef struct {
  const char *name;
  const char *data; /* NULL for a null value or when too_large */
  size_t data_len;
  int too_large; /* data_length over the cache's max_data: no data */
  disco_zk_stat_t stat;
} disco_zk_child_t;

typedef struct {
  const disco_zk_child_t *added;
  size_t num_added;
  const disco_zk_child_t *updated;
  size_t num_updated;
  const disco_zk_child_t *removed; /* with their last known data */
  size_t num_removed;
} disco_zk_cache_diff_t;

typedef struct {
  uint64_t lists; /* children requests sent */
  uint64_t reads; /* get requests sent */
  uint64_t diffs; /* diffs reported */
} disco_zk_cache_stats_t;

/* Valid only during the call; the cache may be closed from it. */
typedef void (*disco_zk_cache_cb)(disco_zk_cache_t *cache,
                                  const disco_zk_cache_diff_t *diff);

/* `max_data` 0: no limit below ZooKeeper's own. */
int disco_zk_cache_new(disco_zk_t *zk, const char *path, size_t max_data,
                       disco_zk_cache_cb on_change,
                       disco_handle_close_cb close_cb, void *data,
                       disco_zk_cache_t **out);
/* Idempotent; close_cb runs once the requests in flight have completed. */
void disco_zk_cache_close(disco_zk_cache_t *cache);
/* Whether the initial load was reported. */
int disco_zk_cache_loaded(const disco_zk_cache_t *cache);
/* The children as last reported: slots `index` 0 to count - 1, in name
 * order; DISCO_ENOENT for a slot not reported yet (skip it). */
size_t disco_zk_cache_count(const disco_zk_cache_t *cache);
int disco_zk_cache_child(const disco_zk_cache_t *cache, size_t index,
                         disco_zk_child_t *out);
void disco_zk_cache_stats(const disco_zk_cache_t *cache,
                          disco_zk_cache_stats_t *stats);
const char *disco_zk_cache_path(const disco_zk_cache_t *cache);
void *disco_zk_cache_data(const disco_zk_cache_t *cache);

/* --------------------------------------------------------------- digests */

/* The MD5 of `len` bytes at `data` as 32 lower-case hex digits and a NUL in
 * `out` (Dubbo's revision format). 0, DISCO_EINVAL for NULL pointers, or
 * DISCO_EIO if libcrypto fails. */
int disco_md5_hex(const void *data, size_t len, char out[33]);

/* -------------------------------------------------------- revision cache */

/*
 * Key (app, revision) -> the canonical MetadataInfo bytes of that revision,
 * an opaque byte string to the cache. Keys are C strings: `app` 1 to
 * DISCO_REVCACHE_MAX_APP bytes, `revision` 1 to DISCO_REVCACHE_MAX_REVISION
 * bytes (else DISCO_EINVAL). Values have an explicit length.
 *
 * Each key is in one of three states:
 * - READY: the bytes are known. Only READY entries count towards the bounds
 *   (max_entries, and max_bytes over the values' lengths); inserting beyond
 *   a bound evicts the least recently used READY entries (lookup, want, put
 *   and resolve make an entry the most recent one), each reported to the
 *   evict callback.
 * - FETCHING: the cache called fetch(app, revision) once and waits for the
 *   owner's disco_revcache_resolve() or disco_revcache_reject(). Every want
 *   meanwhile joins one waiter list (single flight).
 * - FAILED: the last fetch was rejected. Every waiter got the error at that
 *   point. The cache retries by itself on a timer: after the n-th failure
 *   in a row it waits fast_retry_ms while n <= fast_retries, slow_retry_ms
 *   after that (Dubbo's default: 3 retries 1 s apart, then every 10 s),
 *   each delay scaled by a random factor in [1 - jitter, 1 + jitter]. A want
 *   on a FAILED key starts no fetch: it waits for the next retry's outcome.
 *   A retry runs even when nobody waits for the key (as Dubbo's does); but
 *   when a retry that started with no waiter fails and still nobody waits,
 *   the entry is dropped and retrying stops.
 * A resolve (or put) of any key makes it READY and completes its waiters
 * with the bytes; a reject applies only to a FETCHING key.
 *
 * Persistence (persist_path set): the READY entries are loaded when the
 * cache is created. A missing file is an empty cache; a file that is
 * truncated, has a bad header or checksum, or holds out-of-bounds entries
 * is ignored with a warning in the log. The file is written, in LRU order,
 * persist_delay_ms after the first change of the READY set (changes during
 * that delay are written together), on disco_revcache_save() and on close:
 * to "<path>.tmp" in the same directory, fsync'ed, then renamed over the
 * path, so a reader sees the old or the new file, never a mix. Format,
 * little-endian: "DISCORC\0", u32 version (1), u32 count, u64 payload
 * length, 32-byte SHA-256 of the payload; the payload is `count` records
 * { u32 app_len, u32 rev_len, u64 value_len, app, revision, value }.
 * Writes are synchronous on the loop thread (bounded by max_bytes).
 *
 * Callbacks run on the loop thread; the cache may be used from them
 * (re-entrantly), including closed.
 */
typedef struct disco_revcache_s disco_revcache_t;

#define DISCO_REVCACHE_MAX_APP 255
#define DISCO_REVCACHE_MAX_REVISION 128
/* Reject messages are cut to this many bytes. */
#define DISCO_REVCACHE_MAX_MESSAGE 512

typedef enum {
  DISCO_REVCACHE_EVICT_ENTRIES = 1, /* over max_entries */
  DISCO_REVCACHE_EVICT_BYTES = 2    /* over max_bytes */
} disco_revcache_evict_reason_t;

/* "entries", "bytes". */
const char *
disco_revcache_evict_reason_name(disco_revcache_evict_reason_t reason);

typedef struct {
  size_t max_entries;        /* READY entries; default 1000 */
  size_t max_bytes;          /* sum of READY values; default 64 MiB */
  unsigned fast_retries;     /* default 3 */
  uint64_t fast_retry_ms;    /* default 1000; >= 1 */
  uint64_t slow_retry_ms;    /* default 10000; >= 1 */
  double jitter;             /* 0 to 1; default 0.2 */
  const char *persist_path;  /* NULL: memory only (the default); copied */
  uint64_t persist_delay_ms; /* default 1000 */
} disco_revcache_options_t;

typedef struct {
  uint64_t hits;      /* lookups and wants answered from a READY entry */
  uint64_t misses;    /* the others */
  uint64_t fetches;   /* fetch callbacks issued, retries included */
  uint64_t failures;  /* fetches rejected */
  uint64_t evictions; /* READY entries evicted by the bounds */
  uint64_t entries;   /* READY entries now */
  uint64_t bytes;     /* their values' bytes now */
  uint64_t inflight;  /* FETCHING entries now */
  uint64_t failed;    /* FAILED entries now (waiting for a retry) */
} disco_revcache_stats_t;

/* Asks the owner to fetch the key; the owner later calls resolve or reject
 * (possibly from inside this call). `app` and `revision` are valid only
 * during the call. */
typedef void (*disco_revcache_fetch_cb)(disco_revcache_t *cache,
                                        const char *app, const char *revision);
/* An entry left because of a bound. May be NULL. */
typedef void (*disco_revcache_evict_cb)(disco_revcache_t *cache,
                                        const char *app, const char *revision,
                                        disco_revcache_evict_reason_t reason);
/* Completes one want, exactly once: `status` 0 with the value (`bytes`,
 * `len`), or a DISCO_E* code: the owner's reject code, with its `message`
 * (may be NULL), or DISCO_ECANCELED when the cache closed. Every pointer is
 * valid only during the call. */
typedef void (*disco_revcache_want_cb)(disco_revcache_t *cache, const char *app,
                                       const char *revision, int status,
                                       const char *message, const char *bytes,
                                       size_t len, void *arg);

/* What disco_revcache_want() answers at once. */
typedef struct {
  int ready;         /* 1: a hit, the value is below and cb will not run */
  const char *bytes; /* a hit's value, valid until the next cache call */
  size_t len;
} disco_revcache_value_t;

/* Fills `opts` with the defaults above. */
void disco_revcache_options_init(disco_revcache_options_t *opts);
/* `opts` NULL: the defaults. `fetch` is required. DISCO_EINVAL for bad
 * options. Loads the persisted file, if any. The retry and persist timers
 * keep the loop alive while armed (see disco_revcache_set_ref). */
int disco_revcache_new(disco_loop_t *loop, const disco_revcache_options_t *opts,
                       disco_revcache_fetch_cb fetch,
                       disco_revcache_evict_cb evict,
                       disco_handle_close_cb close_cb, void *data,
                       disco_revcache_t **out);
/* The fast path: 0 with the READY value (counts a hit, bumps the entry),
 * else DISCO_ENOENT (counts a miss). No callback runs. The value is valid
 * until the next call that changes the cache. */
int disco_revcache_lookup(disco_revcache_t *cache, const char *app,
                          const char *revision, const char **bytes,
                          size_t *len);
/*
 * Asks for a key's value. Returns:
 * - 0 with out->ready set: a hit, the value is in `out`; cb never runs.
 * - 0 with out->ready clear: cb runs once, later, with the outcome (never
 *   from inside this call). On a missing key the fetch callback is issued
 *   first (single flight); if the owner resolves inside it, this is a hit
 *   (out->ready set), and if it rejects inside it, cb gets that error on
 *   the next loop iteration.
 * - a DISCO_E* code: cb never runs. DISCO_EINVAL for a bad key,
 *   DISCO_ECLOSED on a closing cache (also when the fetch callback closed
 *   it), DISCO_ENOMEM, DISCO_EAGAIN when the fetch callback resolved the
 *   key and something evicted it before want returned (ask again), or the
 *   reject code when there was no memory to defer it.
 */
int disco_revcache_want(disco_revcache_t *cache, const char *app,
                        const char *revision, disco_revcache_want_cb cb,
                        void *arg, disco_revcache_value_t *out);
/* The owner reports a fetch's value: the key becomes READY (whatever its
 * state), its waiters get the value. DISCO_ERANGE when `len` is over
 * max_bytes: the key is then rejected with DISCO_ERANGE instead. */
int disco_revcache_resolve(disco_revcache_t *cache, const char *app,
                           const char *revision, const char *bytes, size_t len);
/* The owner reports a failed fetch with a DISCO_E* code (0 or positive
 * becomes DISCO_EIO) and an optional message (copied, cut). DISCO_ENOENT,
 * changing nothing, when the key is not FETCHING. */
int disco_revcache_reject(disco_revcache_t *cache, const char *app,
                          const char *revision, int err, const char *message);
/* Inserts a value directly, as resolve does, for metadata known without a
 * fetch. DISCO_ERANGE when `len` is over max_bytes (nothing changes). */
int disco_revcache_put(disco_revcache_t *cache, const char *app,
                       const char *revision, const char *bytes, size_t len);
/* Writes the persisted file now. DISCO_EINVAL without persist_path, else
 * 0 or the I/O error. */
int disco_revcache_save(disco_revcache_t *cache);
void disco_revcache_stats(const disco_revcache_t *cache,
                          disco_revcache_stats_t *stats);
/* Whether the cache's timers alone keep disco_loop_run() going. */
void disco_revcache_set_ref(disco_revcache_t *cache, int ref);
/* Idempotent. Stops the timers, completes every waiter with
 * DISCO_ECANCELED, writes the file if the READY set changed since the last
 * write; close_cb runs on a later loop iteration, then the cache is freed.
 * Fetches still out come back to a closed cache: resolve and reject return
 * DISCO_ECLOSED. */
void disco_revcache_close(disco_revcache_t *cache);
void *disco_revcache_data(const disco_revcache_t *cache);

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
