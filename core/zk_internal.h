/*
 * Private to core/zk_*.c: the session, its ZooKeeper handles ("conns") and
 * the requests and watches in flight on them.
 *
 * Ownership across threads. Requests and watches are allocated on the loop
 * thread and linked into loop-side lists; a ZooKeeper thread writes a copy
 * of its result into them and pushes them onto the session's queue, and
 * never touches them again unless the push was refused. `zk_side` records
 * which of those happened; the loop thread reads it only after the conn's
 * zookeeper_close() has returned (its threads are joined by then), so the
 * one question it answers - "is this item in the queue?" - has a stable
 * answer.
 */
#ifndef DISCO_ZK_INTERNAL_H
#define DISCO_ZK_INTERNAL_H

#include <zookeeper/zookeeper.h>

#include "internal.h"

/* zk_side values. */
enum {
  DISCO__ZK_IN_FLIGHT = 0, /* ZooKeeper holds it (or never called back) */
  DISCO__ZK_PUSHED = 1,    /* in the queue: the queue will deliver it */
  DISCO__ZK_REFUSED = 2    /* called back, but the queue was closing */
};

typedef struct disco__zk_conn_s disco__zk_conn_t;

/*
 * An internal observer of the session's state, for the handles built on a
 * session (ephemeral nodes, caches). Embedded in its owner. CLOSED is
 * reported when disco_zk_close() starts (not when it ends, as to the public
 * state_cb), so that owners stop sending and close themselves. A listener
 * may remove itself or others from its callback.
 */
typedef struct disco__zk_listener_s disco__zk_listener_t;
typedef void (*disco__zk_listener_cb)(disco__zk_listener_t *listener,
                                      disco_zk_state_t state,
                                      uint64_t generation);
struct disco__zk_listener_s {
  struct disco__list link;
  disco__zk_listener_cb cb;
  unsigned seen; /* the dispatch round that called it last */
};

/* One zhandle_t and what must live as long as its threads. */
struct disco__zk_conn_s {
  struct disco__list link; /* in zk->conns until freed */
  disco_zk_t *zk;
  disco_queue_t *queue; /* zk->queue, with a reference of this conn's */
  zhandle_t *zh;
  uint64_t generation;
  struct disco__list watches; /* unfired watches set through this conn */
  int closing;                /* zookeeper_close() was scheduled */
  int auth_added;             /* zoo_add_auth() accepted (or no auth) */
  int end_status;             /* what unfired watches end with */
  uv_work_t work;
};

struct disco_zk_s {
  disco__handle_t handle; /* in loop->handles until the close finished */
  disco_loop_t *loop;
  disco_queue_t *queue;
  disco__zk_conn_t *conn;      /* the current handle, NULL during backoff */
  struct disco__list conns;    /* every conn not freed yet */
  struct disco__list requests; /* requests not completed yet */
  uv_timer_t timer;            /* backoff before a new handle */
  char *hosts;
  char *auth;
  int session_timeout_ms;
  disco_zk_acl_t acl;
  int min_backoff_ms;
  int max_backoff_ms;
  int64_t join_id; /* options.session_id, for the first handle only */
  char join_passwd[DISCO_ZK_PASSWD_LEN];
  disco_zk_state_t state;
  uint64_t generation;
  int64_t session_id;
  char passwd[DISCO_ZK_PASSWD_LEN];
  unsigned attempt; /* handles created since the last CONNECTED */
  uint64_t rng;
  disco_zk_state_cb state_cb;
  struct disco__list listeners; /* disco__zk_listener_t */
  unsigned dispatch_round;
  disco_handle_close_cb close_cb;
  void *data;
  int closing;
  int init_failed; /* disco_zk_new() failed after creating the queue */
  int pending;     /* conns, timer and queue still closing */
  /* zk_cache.c: the child reads of every cache in flight, and the caches
   * waiting for room to send theirs (a list set up on first use). */
  unsigned cache_reads;
  struct disco__list cache_waiting;
};

/* zk_session.c */
/* Loop thread. Adds the session's auth to `conn` if not done yet; returns
 * whether it is added (then held requests went out). */
int disco__zk_conn_auth(disco__zk_conn_t *conn);
/* Loop thread. The ACL for new nodes. */
struct ACL_vector *disco__zk_acl(disco_zk_t *zk);
/* Loop thread. Whether requests can be sent (an open zk with a handle). */
int disco__zk_usable(disco_zk_t *zk);

/* Loop thread. Adds or removes an internal state listener (removal is
 * idempotent once the listener was added or initialised). */
void disco__zk_add_state_listener(disco_zk_t *zk, disco__zk_listener_t *l,
                                  disco__zk_listener_cb cb);
void disco__zk_remove_state_listener(disco__zk_listener_t *l);

/* zk_request.c */
/* Loop thread, once `conn`'s zookeeper_close() has returned: completes the
 * requests and ends the watches that ZooKeeper never handed back to the
 * queue. */
void disco__zk_conn_sweep(disco__zk_conn_t *conn);
/* Loop thread. Sends the requests held back until `conn` had its auth. */
void disco__zk_flush_held(disco__zk_conn_t *conn);
/* Loop thread. disco_zk_get() with its own argument for the watch: a
 * watch may outlive its request by far, and what it needs can then be
 * smaller than the request's record (core/zk_cache.c). */
int disco__zk_get_watched(disco_zk_t *zk, const char *path,
                          disco_zk_watch_cb watch, void *watch_data,
                          disco_zk_cb cb, void *data);

#endif /* DISCO_ZK_INTERNAL_H */
