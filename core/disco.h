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
  XX(EZK, -4026, "ZooKeeper error")                                            \
  XX(EPROTO, -4027, "malformed data from the peer")                            \
  XX(E2BIG, -4028, "data exceeds a configured limit")                          \
  XX(EMSGSIZE, -4029, "message from the peer exceeds a configured limit")

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
  uint64_t wakeups;   /* drains that delivered (wakeup or timer); <= pushed */
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
 * item). Never blocks beyond the queue's mutex. Items are delivered in push
 * order; during a burst (the loop woke for the queue several times in a row
 * within a millisecond) a timer drains the queue every millisecond instead
 * of a wakeup per push, so an item may wait about a millisecond more. */
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
  uint64_t waits; /* times reads waited for the session's bound */
} disco_zk_cache_stats_t;

/* Valid only during the call; the cache may be closed from it. */
typedef void (*disco_zk_cache_cb)(disco_zk_cache_t *cache,
                                  const disco_zk_cache_diff_t *diff);

/* Called with each child as its data is read, before the round's diff;
 * valid only during the call, the cache may be closed from it. The diff
 * stays the record: a child seen here is reported only if the round ends
 * with it unchanged (else it is seen again, or reported otherwise). Meant
 * for a consumer that parses the data: a load of thousands of children is
 * parsed while the other reads are in flight, and the diff finds it done. */
typedef void (*disco_zk_cache_read_cb)(disco_zk_cache_t *cache,
                                       const disco_zk_child_t *child);

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
/* Whether a child's data is kept once reported (default 1). With 0 each
 * child's data is delivered once, in the diff that reports it, then freed:
 * disco_zk_cache_child() and removed children carry data NULL (as a null
 * value). For a consumer that keeps its own parsed copy. Set it right
 * after disco_zk_cache_new(): once data is held it is ignored. */
void disco_zk_cache_set_keep_data(disco_zk_cache_t *cache, int keep);
/* Sets (or with NULL clears) the read callback; by default there is none.
 * A read that does not change what the cache holds (a recheck after a
 * reconnect) is not passed on. */
void disco_zk_cache_set_on_read(disco_zk_cache_t *cache,
                                disco_zk_cache_read_cb on_read);
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

/* --------------------------------------------------------------- hessian2 */

/*
 * Hessian 2.0 (WIRE.md §7b), the serialization of dubbo MetadataService
 * calls. The reader decodes a stream of values (a dubbo body is several)
 * sharing class definitions, type references and back-references across
 * the values of one stream, into a tree of disco_h2_value_t owned by the
 * reader (an arena: values live until disco_h2_reader_free). Back-references
 * (`Q`) point at the value already decoded, so the "tree" may share nodes
 * and even contain cycles. Strings are converted to UTF-8 (length in bytes);
 * an unpaired surrogate is encoded as CESU-style 3 bytes rather than
 * rejected, as Java may produce it.
 *
 * Every limit is checked before memory is allocated for it; invalid or
 * truncated input gives DISCO_EPROTO, a limit DISCO_E2BIG, and
 * disco_h2_reader_error() tells where and why. Never an over-read.
 */

typedef enum {
  DISCO_H2_NULL,
  DISCO_H2_BOOL,
  DISCO_H2_INT,  /* 32-bit */
  DISCO_H2_LONG, /* 64-bit */
  DISCO_H2_DOUBLE,
  DISCO_H2_DATE,   /* ms since the epoch, in u.l */
  DISCO_H2_STRING, /* UTF-8 in u.bytes */
  DISCO_H2_BINARY, /* raw bytes in u.bytes */
  DISCO_H2_LIST,   /* u.list; type may be NULL */
  DISCO_H2_MAP,    /* u.map; type may be NULL */
  DISCO_H2_OBJECT  /* u.object: class name, field names and values */
} disco_h2_type_t;

typedef struct disco_h2_value_s disco_h2_value_t;

struct disco_h2_value_s {
  disco_h2_type_t type;
  union {
    int b;
    int32_t i;
    int64_t l;
    double d;
    struct {
      const char *data; /* NUL-terminated for convenience; len excludes it */
      size_t len;
    } bytes;
    struct {
      const char *type; /* NULL when untyped */
      size_t count;
      disco_h2_value_t **items;
    } list;
    struct {
      const char *type; /* NULL when untyped */
      size_t count;
      disco_h2_value_t **keys;
      disco_h2_value_t **values;
    } map;
    struct {
      const char *class_name;
      size_t count;
      const char *const *field_names;
      disco_h2_value_t **fields;
    } object;
  } u;
};

typedef struct {
  size_t max_depth;    /* nesting of lists, maps, objects (default 64) */
  size_t max_elements; /* items + entries + fields + refs (default 1e6) */
  size_t max_string;   /* bytes of one string or binary (default 8 MiB) */
  size_t max_total;    /* bytes allocated for all values (default 64 MiB) */
} disco_h2_limits_t;

void disco_h2_limits_init(disco_h2_limits_t *limits);

typedef struct disco_h2_reader_s disco_h2_reader_t;

/* Reads from buf[0..len) (not copied: it must outlive the reader). limits
 * may be NULL for the defaults. */
int disco_h2_reader_new(const char *buf, size_t len,
                        const disco_h2_limits_t *limits,
                        disco_h2_reader_t **out);
/* Decodes the next value into *out (owned by the reader). 0, DISCO_EOF at
 * the end of the input (no partial value), DISCO_EPROTO, DISCO_E2BIG or
 * DISCO_ENOMEM. After an error the reader only returns that error. */
int disco_h2_read(disco_h2_reader_t *r, disco_h2_value_t **out);
/* Bytes consumed so far. */
size_t disco_h2_reader_pos(const disco_h2_reader_t *r);
/* After an error: the input offset where it was found and a static or
 * reader-owned message ("unknown tag 0x41", "string over max_string"). */
const char *disco_h2_reader_error(const disco_h2_reader_t *r, size_t *pos);
void disco_h2_reader_free(disco_h2_reader_t *r);

/* The writer: a growing buffer and the class definitions written so far
 * (a class written twice reuses its definition). Strings are given as
 * UTF-8 and written with their length in UTF-16 code units (a non-BMP
 * character counts 2, split into chunks of at most 0x8000 units without
 * splitting a surrogate pair); invalid UTF-8 gives DISCO_EINVAL. Integers
 * and longs use the most compact form. Every call returns 0, DISCO_EINVAL
 * or DISCO_ENOMEM; after an error the writer keeps failing. */
typedef struct disco_h2_writer_s disco_h2_writer_t;

int disco_h2_writer_new(disco_h2_writer_t **out);
void disco_h2_writer_free(disco_h2_writer_t *w);
/* The bytes written so far (valid until the next write or free). */
const char *disco_h2_writer_data(const disco_h2_writer_t *w, size_t *len);
/* Forgets the bytes and class definitions: a new stream. */
void disco_h2_writer_reset(disco_h2_writer_t *w);

int disco_h2_write_null(disco_h2_writer_t *w);
int disco_h2_write_bool(disco_h2_writer_t *w, int value);
int disco_h2_write_int(disco_h2_writer_t *w, int32_t value);
int disco_h2_write_long(disco_h2_writer_t *w, int64_t value);
int disco_h2_write_double(disco_h2_writer_t *w, double value);
int disco_h2_write_string(disco_h2_writer_t *w, const char *utf8, size_t len);
int disco_h2_write_binary(disco_h2_writer_t *w, const char *data, size_t len);
/* A date, ms since the epoch (`K` in minutes when exact, else `J`). */
int disco_h2_write_date(disco_h2_writer_t *w, int64_t ms);
/* A map (`H`, or `M` with type when type != NULL); write key, value pairs,
 * then disco_h2_write_end. */
int disco_h2_write_map_begin(disco_h2_writer_t *w, const char *type);
/* A variable-length list (`W`, or `U` with type); items, then _end. */
int disco_h2_write_list_begin(disco_h2_writer_t *w, const char *type);
int disco_h2_write_end(disco_h2_writer_t *w);
/* An object of class_name with these fields (their values follow, in this
 * order, nfields of them). The definition (`C`) is written the first time
 * class_name is used with these field names. */
int disco_h2_write_object_begin(disco_h2_writer_t *w, const char *class_name,
                                size_t nfields, const char *const *field_names);
/* A whole decoded value (shared nodes are written again; a cycle gives
 * DISCO_EINVAL). */
int disco_h2_write_value(disco_h2_writer_t *w, const disco_h2_value_t *v);
/* How many maps, lists and objects were begun in this stream: the index the
 * next one gets, which a back-reference names. */
size_t disco_h2_writer_ref_count(const disco_h2_writer_t *w);
/* A back-reference (`Q`) to the index-th map, list or object of this
 * stream (index < disco_h2_writer_ref_count); it may still be open. */
int disco_h2_write_ref(disco_h2_writer_t *w, size_t index);

/* ------------------------------------------------------------------ dubbo */

/*
 * The dubbo protocol (WIRE.md §7) as far as a MetadataService needs it:
 * frames, hessian2 request and response bodies, a server (what disco's own
 * MetadataService runs on) and a client connection.
 *
 * A frame is a 16-byte big-endian header (magic 0xdabb, flags, status,
 * int64 request id, int32 body length) and a body. Only hessian2 (id 2) is
 * spoken; any other serialization id is a protocol error.
 */
#define DISCO_DUBBO_HEADER_LEN 16
#define DISCO_DUBBO_MAGIC 0xdabb
#define DISCO_DUBBO_FLAG_REQUEST 0x80
#define DISCO_DUBBO_FLAG_TWOWAY 0x40
#define DISCO_DUBBO_FLAG_EVENT 0x20
#define DISCO_DUBBO_SERIALIZATION_MASK 0x1f
#define DISCO_DUBBO_HESSIAN2 2
/* The default (and Dubbo's) payload limit. */
#define DISCO_DUBBO_MAX_FRAME (8u * 1024 * 1024)
#define DISCO_DUBBO_VERSION "2.0.2"

/* The status byte of a response. */
typedef enum {
  DISCO_DUBBO_OK = 20,
  DISCO_DUBBO_CLIENT_TIMEOUT = 30,
  DISCO_DUBBO_SERVER_TIMEOUT = 31,
  DISCO_DUBBO_BAD_REQUEST = 40,
  DISCO_DUBBO_BAD_RESPONSE = 50,
  DISCO_DUBBO_SERVICE_NOT_FOUND = 60,
  DISCO_DUBBO_SERVICE_ERROR = 70,
  DISCO_DUBBO_SERVER_ERROR = 80,
  DISCO_DUBBO_CLIENT_ERROR = 90,
  DISCO_DUBBO_THREADPOOL_EXHAUSTED = 100
} disco_dubbo_status_t;

/* The first int of a response body. */
typedef enum {
  DISCO_DUBBO_RESPONSE_EXCEPTION = 0,
  DISCO_DUBBO_RESPONSE_VALUE = 1,
  DISCO_DUBBO_RESPONSE_NULL = 2,
  DISCO_DUBBO_RESPONSE_EXCEPTION_ATTACHMENTS = 3,
  DISCO_DUBBO_RESPONSE_VALUE_ATTACHMENTS = 4,
  DISCO_DUBBO_RESPONSE_NULL_ATTACHMENTS = 5
} disco_dubbo_response_kind_t;

/* "ok", "client_timeout", "server_timeout", "bad_request", "bad_response",
 * "service_not_found", "service_error", "server_error", "client_error",
 * "threadpool_exhausted"; NULL for another value. */
const char *disco_dubbo_status_name(int status);
/* The reverse; 0 or DISCO_EINVAL. */
int disco_dubbo_status_parse(const char *name, int *status);
/* The DISCO_E* code a caller sees for a response status: 0 for OK,
 * DISCO_ETIMEDOUT for 30/31, DISCO_ENOENT for 60 (service not found),
 * DISCO_EIO for the others. */
int disco_dubbo_status_error(int status);

typedef struct {
  uint8_t flags;     /* DISCO_DUBBO_FLAG_* | serialization id */
  uint8_t status;    /* responses only */
  int64_t id;        /* request id */
  uint32_t body_len; /* < 2^31 */
} disco_dubbo_header_t;

/* Writes the 16 header bytes. */
void disco_dubbo_header_encode(const disco_dubbo_header_t *header,
                               char out[DISCO_DUBBO_HEADER_LEN]);
/* Parses 16 header bytes and checks them: DISCO_EPROTO for a wrong magic,
 * a negative length or a serialization other than hessian2 (events and
 * responses included), DISCO_E2BIG for a body over max_frame. `*why` (may
 * be NULL) gets a static message on error. */
int disco_dubbo_header_decode(const char *buf, size_t max_frame,
                              disco_dubbo_header_t *header, const char **why);

/*
 * The frame assembler: fed the bytes of a stream in chunks of any size, it
 * yields complete frames. A body is buffered only after its header passed
 * disco_dubbo_header_decode(), so memory stays under max_frame plus a small
 * constant whatever the peer announces.
 */
typedef struct disco_dubbo_framer_s disco_dubbo_framer_t;

typedef struct {
  disco_dubbo_header_t header;
  const char *body; /* header.body_len bytes; valid until the next feed */
} disco_dubbo_frame_t;

/* max_frame 0: DISCO_DUBBO_MAX_FRAME. */
int disco_dubbo_framer_new(size_t max_frame, disco_dubbo_framer_t **out);
void disco_dubbo_framer_free(disco_dubbo_framer_t *framer);
/* Consumes data[0..len) up to the end of the next complete frame and sets
 * *used to the bytes consumed. Returns 1 with the frame in *frame, 0 when
 * all `len` bytes were consumed without completing one, or an error from
 * disco_dubbo_header_decode() (or DISCO_ENOMEM), after which the framer
 * only returns that error; disco_dubbo_framer_error() tells why. */
int disco_dubbo_framer_feed(disco_dubbo_framer_t *framer, const char *data,
                            size_t len, size_t *used,
                            disco_dubbo_frame_t *frame);
/* Bytes of an incomplete frame held (0 between frames). */
size_t disco_dubbo_framer_pending(const disco_dubbo_framer_t *framer);
/* The last error's static message, or NULL. */
const char *disco_dubbo_framer_error(const disco_dubbo_framer_t *framer);

/* Counts the parameter types of a JVM method descriptor's parameter list
 * ("Ljava/lang/String;I[J": 3; "": 0). DISCO_EPROTO when malformed. */
int disco_dubbo_desc_count(const char *desc, size_t len, size_t *count);

/*
 * A decoded request body. Every pointer is owned by the request (its
 * hessian2 reader) and valid until disco_dubbo_request_free().
 */
typedef struct {
  int64_t id;  /* from the header */
  int two_way; /* 0: a one-way call, which is never answered */
  const char *dubbo_version;
  const char *path;
  const char *version; /* NULL when the client sent null */
  const char *method;
  const char *param_types; /* the descriptor, "Ljava/lang/String;" */
  size_t nargs;
  disco_h2_value_t **args;
  const disco_h2_value_t *attachments; /* a map, or NULL */
  const char *group; /* attachments["group"] when a string, else NULL */
  /* private */
  disco_h2_reader_t *reader_;
} disco_dubbo_request_t;

/* Decodes a request body (limits may be NULL). DISCO_EPROTO (with `why`,
 * which may be NULL, pointing at a static or reader-owned message valid
 * until the free) for a malformed body; the request needs freeing either
 * way. */
int disco_dubbo_request_decode(const char *body, size_t len,
                               const disco_h2_limits_t *limits,
                               disco_dubbo_request_t *req, const char **why);
void disco_dubbo_request_free(disco_dubbo_request_t *req);
/* attachments[key] when it is a string, else NULL. */
const char *disco_dubbo_attachment(const disco_h2_value_t *attachments,
                                   const char *key);

/* A call, as the client sends it. */
typedef struct {
  const char *path;        /* the interface */
  const char *version;     /* may be NULL */
  const char *group;       /* may be NULL */
  const char *method;      /* required */
  const char *param_types; /* the descriptor; NULL: no parameters */
  /* Every argument, hessian2-encoded as one stream (as many values as
   * param_types lists; not checked), or NULL/0 for none. */
  const char *args;
  size_t args_len;
  /* Extra attachments: keys[i] -> values[i], strings. path, interface,
   * version and group are added. */
  size_t nattachments;
  const char *const *attachment_keys;
  const char *const *attachment_values;
} disco_dubbo_call_t;

/* A whole request frame (header included) in a new malloc'ed buffer the
 * caller frees; `w` is scratch space (reset first). DISCO_EINVAL for a call
 * without a method or with bad UTF-8, DISCO_E2BIG when the body is over
 * 2 GiB, DISCO_ENOMEM. */
int disco_dubbo_request_encode(disco_h2_writer_t *w, int64_t id,
                               const disco_dubbo_call_t *call, char **out,
                               size_t *out_len);
/* A whole response frame, as above. For DISCO_DUBBO_OK the body is a value
 * response carrying `value` (hessian2 bytes of one value) or a null
 * response when value is NULL; for another status the body is the hessian2
 * string `error_message` (NULL: the status name). */
int disco_dubbo_response_encode(disco_h2_writer_t *w, int64_t id, int status,
                                const char *value, size_t len,
                                const char *error_message, char **out,
                                size_t *out_len);
/* A heartbeat frame: an event request (two-way) or an event response, with
 * the body null (`N`): 17 bytes into out. */
void disco_dubbo_heartbeat_encode(int64_t id, int response,
                                  char out[DISCO_DUBBO_HEADER_LEN + 1]);

/* A decoded OK response body; pointers owned until the free. */
typedef struct {
  int kind;                      /* disco_dubbo_response_kind_t */
  const disco_h2_value_t *value; /* the value or the exception; NULL: null */
  const disco_h2_value_t *attachments; /* a map, or NULL */
  /* For an exception: its detailMessage when a string, else its class. */
  const char *message;
  /* private */
  disco_h2_reader_t *reader_;
} disco_dubbo_response_t;

/* Decodes the body of an OK response. DISCO_EPROTO (and `why`) for a
 * malformed one; free the response either way. */
int disco_dubbo_response_decode(const char *body, size_t len,
                                const disco_h2_limits_t *limits,
                                disco_dubbo_response_t *resp, const char **why);
void disco_dubbo_response_free(disco_dubbo_response_t *resp);

/* ---------------------------------------------------------- dubbo server */

/*
 * A dubbo server on one TCP address. It answers heartbeats itself, decodes
 * each request and hands it to on_request; the owner answers later (or at
 * once) with disco_dubbo_server_reply(). A request body that does not decode
 * is answered with status 40 (bad request). A protocol error (wrong magic,
 * serialization or length, a frame over max_frame) closes the connection
 * with a log line; so does a connection that completes no frame for
 * idle_timeout_ms. Over max_connections, a new connection is accepted and
 * closed at once (counted in `rejected`, logged).
 */
typedef struct disco_dubbo_server_s disco_dubbo_server_t;

typedef struct {
  size_t max_connections;   /* default 1024 */
  size_t max_frame;         /* default DISCO_DUBBO_MAX_FRAME */
  uint64_t idle_timeout_ms; /* default 180000; 0: never */
} disco_dubbo_server_options_t;

typedef struct {
  uint64_t connections;     /* open now */
  uint64_t accepted;        /* connections accepted in all (rejected too) */
  uint64_t requests;        /* request frames handed to on_request */
  uint64_t heartbeats;      /* heartbeat events answered */
  uint64_t protocol_errors; /* connections closed for bad frames, and
                               bodies answered with status 40 */
  uint64_t rejected;        /* connections over max_connections */
  uint64_t idle_closed;     /* connections closed by the idle timeout */
} disco_dubbo_server_stats_t;

/* `conn_id` names the connection for the reply (ids are never reused).
 * `req` and every value in it are valid only during the call: copy what
 * you keep. The server may be closed from the callback. */
typedef void (*disco_dubbo_request_cb)(disco_dubbo_server_t *server,
                                       uint64_t conn_id,
                                       const disco_dubbo_request_t *req);

void disco_dubbo_server_options_init(disco_dubbo_server_options_t *opts);
/* Binds host:port (port 0: a free one) and listens. opts may be NULL.
 * DISCO_EINVAL for a bad address or options, DISCO_EADDRINUSE, ... */
int disco_dubbo_server_new(disco_loop_t *loop, const char *host, int port,
                           const disco_dubbo_server_options_t *opts,
                           disco_dubbo_request_cb on_request,
                           disco_handle_close_cb close_cb, void *data,
                           disco_dubbo_server_t **out);
/* The bound port. */
int disco_dubbo_server_port(const disco_dubbo_server_t *server);
/* Answers request `request_id` of connection `conn_id`: for status
 * DISCO_DUBBO_OK with `value` (one hessian2-encoded value, or NULL for
 * null), for another status with `error_message`. A reply to a connection
 * that has gone is dropped silently (0). DISCO_ECLOSED once closing,
 * DISCO_E2BIG over max_frame, DISCO_EINVAL for bad UTF-8 in the message. */
int disco_dubbo_server_reply(disco_dubbo_server_t *server, uint64_t conn_id,
                             int64_t request_id, int status, const char *value,
                             size_t len, const char *error_message);
void disco_dubbo_server_stats(const disco_dubbo_server_t *server,
                              disco_dubbo_server_stats_t *stats);
/* Idempotent: stops listening and closes every connection; close_cb runs
 * on a later loop iteration, then the server is freed. */
void disco_dubbo_server_close(disco_dubbo_server_t *server);
void *disco_dubbo_server_data(const disco_dubbo_server_t *server);

/* ----------------------------------------------------------- http server */

/*
 * A small HTTP/1.1 server on one TCP address (the admin endpoint of `disco
 * serve`, test backends). Requests are parsed with http-parser, bounded
 * (header bytes, header count, body bytes, time to receive a request) and
 * handed whole to on_request; the owner answers each exactly once, at once
 * or later, with disco_http_server_reply(). One request per connection is
 * in flight: the next one on a keep-alive connection is parsed only after
 * the reply, so replies keep the order of requests.
 *
 * The server answers by itself, then closes the connection: 400 for input
 * http-parser refuses (the body names the parser error), 431 over
 * max_header_bytes or max_headers, 413 over max_body_bytes, 408 when a
 * request that has begun is not complete within request_timeout_ms. A
 * keep-alive connection idle for idle_timeout_ms is closed silently. Over
 * max_connections, a new connection is accepted and closed at once
 * (counted in `refused`, logged). `Expect: 100-continue` is not answered:
 * clients send the body anyway (curl after 1 s).
 */
typedef struct disco_http_server_s disco_http_server_t;

typedef struct {
  size_t max_connections;      /* default 256 */
  size_t max_header_bytes;     /* URL, header names and values; 8192 */
  size_t max_headers;          /* default 64 */
  size_t max_body_bytes;       /* default 1048576 */
  uint64_t request_timeout_ms; /* default 10000; 0: never */
  uint64_t idle_timeout_ms;    /* default 30000; 0: never */
  const char *name;            /* in log lines; copied; default "http" */
} disco_http_server_options_t;

typedef struct {
  uint64_t connections;  /* open now */
  uint64_t accepted;     /* connections accepted in all (refused too) */
  uint64_t requests;     /* requests handed to on_request */
  uint64_t replies;      /* replies to those requests queued for writing */
  uint64_t bad_requests; /* answered 400 */
  uint64_t too_large;    /* answered 431 or 413 */
  uint64_t timeouts;     /* answered 408 */
  uint64_t refused;      /* connections over max_connections */
} disco_http_server_stats_t;

/* A header: for requests the name is lower-cased and the values of a
 * repeated name are joined with ", ". Both are NUL-terminated too. */
typedef struct {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} disco_http_header_t;

/* Every pointer is valid only during the on_request call; strings are
 * NUL-terminated (the body too, beyond body_len). */
typedef struct {
  uint64_t id;        /* names the request for the reply; never reused */
  const char *method; /* "GET", ... */
  const char *path;   /* the URL path, not percent-decoded */
  size_t path_len;
  const char *query; /* the query without '?', or NULL */
  size_t query_len;
  const disco_http_header_t *headers;
  size_t nheaders;
  const char *body; /* "" when none */
  size_t body_len;
  const char *peer; /* "127.0.0.1:54321" */
  int http_major;
  int http_minor;
  int keep_alive; /* the connection stays open after the reply */
} disco_http_request_t;

/* The server may be closed from the callback. */
typedef void (*disco_http_request_cb)(disco_http_server_t *server,
                                      const disco_http_request_t *req);

void disco_http_server_options_init(disco_http_server_options_t *opts);
/* Binds host:port (an IPv4 or IPv6 literal; port 0: a free one) and
 * listens. opts may be NULL. DISCO_EINVAL for a bad address or options,
 * DISCO_EADDRINUSE, ... */
int disco_http_server_new(disco_loop_t *loop, const char *host, int port,
                          const disco_http_server_options_t *opts,
                          disco_http_request_cb on_request,
                          disco_handle_close_cb close_cb, void *data,
                          disco_http_server_t **out);
int disco_http_server_port(const disco_http_server_t *server);
/* "127.0.0.1:8080" or "[::1]:8080" into buf (always NUL-terminated). */
void disco_http_server_address(const disco_http_server_t *server, char *buf,
                               size_t len);
/* Answers request `request_id` with `status` (100-599), the headers (names
 * and values without CR or LF; Content-Length and Connection are the
 * server's own and ignored, except that "Connection: close" closes the
 * connection after the reply) and the body. DISCO_EINVAL for a bad status
 * or header; DISCO_ECLOSED when the server is closing, when the request's
 * connection has gone (the client left) or when the request was answered
 * already (the caller tracks which). */
int disco_http_server_reply(disco_http_server_t *server, uint64_t request_id,
                            int status, const disco_http_header_t *headers,
                            size_t nheaders, const char *body, size_t len);
void disco_http_server_stats(const disco_http_server_t *server,
                             disco_http_server_stats_t *stats);
/* Idempotent: stops listening and closes every connection; close_cb runs
 * on a later loop iteration, then the server is freed. */
void disco_http_server_close(disco_http_server_t *server);
void *disco_http_server_data(const disco_http_server_t *server);

/* ---------------------------------------------------------- dubbo client */

/*
 * One client connection to host:port (an IP address), made lazily by the
 * first call and reused. Calls are matched to responses by request id;
 * each has its own timeout. After heartbeat_ms without reading anything a
 * heartbeat is sent, and after three such intervals the connection is
 * closed. Calls pending when the connection drops fail with
 * DISCO_ECONNRESET; the next call reconnects, after a backoff that grows
 * with consecutive connect failures (backoff_min_ms doubling up to
 * backoff_max_ms); a failed connect fails the calls waiting for it with its
 * error (DISCO_ECONNREFUSED, ...).
 */
typedef struct disco_dubbo_client_s disco_dubbo_client_t;

typedef struct {
  uint64_t timeout_ms;     /* per call unless given; default 5000 */
  uint64_t heartbeat_ms;   /* default 60000; 0: no heartbeats */
  uint64_t backoff_min_ms; /* default 100 */
  uint64_t backoff_max_ms; /* default 10000 */
  size_t max_frame;        /* default DISCO_DUBBO_MAX_FRAME */
} disco_dubbo_client_options_t;

/* What a call ended with. Every pointer is valid only during the
 * callback. */
typedef struct {
  /* 0, or a DISCO_E* code: disco_dubbo_status_error() of a non-OK status,
   * DISCO_EIO for an exception response, DISCO_EPROTO for a body that does
   * not decode, DISCO_ETIMEDOUT, DISCO_ECONNRESET, DISCO_ECANCELED (close),
   * or the connect error. */
  int status;
  int dubbo_status; /* the response's status byte; 0 when none came */
  int kind;         /* disco_dubbo_response_kind_t, or -1 */
  const disco_h2_value_t *value;       /* the value or the exception */
  const disco_h2_value_t *attachments; /* a map, or NULL */
  const char *message; /* the server's message or the exception's; NULL */
} disco_dubbo_result_t;

typedef void (*disco_dubbo_call_cb)(disco_dubbo_client_t *client,
                                    const disco_dubbo_result_t *result,
                                    void *arg);

void disco_dubbo_client_options_init(disco_dubbo_client_options_t *opts);
int disco_dubbo_client_new(disco_loop_t *loop, const char *host, int port,
                           const disco_dubbo_client_options_t *opts,
                           disco_handle_close_cb close_cb, void *data,
                           disco_dubbo_client_t **out);
/* Sends a call (connecting first when needed). timeout_ms 0: the client's.
 * cb runs exactly once, never from inside this call. DISCO_ECLOSED once
 * closing, DISCO_EINVAL for a bad call (bad UTF-8, no method), DISCO_E2BIG
 * over max_frame. */
int disco_dubbo_client_call(disco_dubbo_client_t *client,
                            const disco_dubbo_call_t *call, uint64_t timeout_ms,
                            disco_dubbo_call_cb cb, void *arg);
/* Sends a heartbeat and reports its answer as a call would (status 0,
 * kind -1, value NULL). */
int disco_dubbo_client_heartbeat(disco_dubbo_client_t *client,
                                 uint64_t timeout_ms, disco_dubbo_call_cb cb,
                                 void *arg);
/* Whether a connection is established now. */
int disco_dubbo_client_connected(const disco_dubbo_client_t *client);
/* Idempotent: fails every call with DISCO_ECANCELED (from inside this
 * call), closes the connection; close_cb runs on a later loop iteration,
 * then the client is freed. */
void disco_dubbo_client_close(disco_dubbo_client_t *client);
void *disco_dubbo_client_data(const disco_dubbo_client_t *client);

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
