/*
 * Ephemeral nodes that outlive connection losses and session expiries.
 *
 * One chain of requests runs at a time ("busy"): create, or check (exists),
 * followed where needed by delete-then-create. What happens meanwhile
 * (a reconnect, an update, a close) is recorded in flags and handled when
 * the chain ends, so that two chains never race on the node.
 *
 * Ownership is decided by stat.ephemeral_owner against the current session
 * id, never by the outcome of a create alone: a ZNODEEXISTS may come from
 * our own create that succeeded before a connection loss, or from an old
 * session whose node the server has not reaped yet (RELIABILITY.md §1).
 *
 * The handle is freed once it is closed and no request of its own is in
 * flight; every request adds one to `pending`.
 */
#include <stdlib.h>
#include <string.h>

#include "zk_internal.h"

typedef struct disco__zk_eph_waiter_s disco__zk_eph_waiter_t;

/* An update waiting for the data to reach our node. */
struct disco__zk_eph_waiter_s {
  disco__zk_eph_waiter_t *next;
  disco_zk_ephemeral_update_cb cb;
  void *arg;
  uint64_t version; /* the data version it waits for */
};

struct disco_zk_ephemeral_s {
  disco__zk_listener_t listener;
  disco_qitem_t finish_item; /* the close's last step, on the next tick */
  disco_zk_t *zk;
  char *path;
  char *value;
  size_t len;
  uint64_t data_version;    /* bumped by each update */
  uint64_t written_version; /* the version known to be on our node */
  uint64_t sending_version; /* the version of the create or set in flight */
  uint64_t generation;      /* of the session the node belongs to */
  int64_t owner;            /* session id of our node, 0 when not owned */
  disco__zk_eph_waiter_t *waiters;
  disco_zk_ephemeral_cb state_cb;
  disco_handle_close_cb close_cb;
  void *data;
  unsigned tries;   /* delete-and-create rounds in this chain */
  int busy;         /* a chain is running */
  int setting;      /* a set is in flight */
  int recheck;      /* check again once the chain ends */
  int ever_created; /* CREATED was reported */
  int closing;
  int close_sent; /* the delete-if-ours step was started */
  int finished;
  int pending; /* requests in flight */
};

const char *disco_zk_ephemeral_state_name(disco_zk_ephemeral_state_t state) {
  switch (state) {
    case DISCO_ZK_EPHEMERAL_CREATED:
      return "created";
    case DISCO_ZK_EPHEMERAL_RECREATED:
      return "recreated";
    case DISCO_ZK_EPHEMERAL_LOST:
      return "lost";
    case DISCO_ZK_EPHEMERAL_CLOSED:
      return "closed";
    default:
      return "unknown";
  }
}

static void disco__eph_create(disco_zk_ephemeral_t *node);
static void disco__eph_check(disco_zk_ephemeral_t *node);
static void disco__eph_close_step(disco_zk_ephemeral_t *node);
static void disco__eph_flush(disco_zk_ephemeral_t *node);

static void disco__eph_emit(disco_zk_ephemeral_t *node,
                            disco_zk_ephemeral_state_t state, int err) {
  if (node->state_cb != NULL)
    node->state_cb(node, state, err);
}

/* Runs the waiters whose data is on the node (err 0), or all of them with
 * `err` when err != 0. */
static void disco__eph_wake(disco_zk_ephemeral_t *node, int err) {
  disco__zk_eph_waiter_t **pp;
  disco__zk_eph_waiter_t *w;

  pp = &node->waiters;
  while ((w = *pp) != NULL) {
    if (err == 0 && w->version > node->written_version) {
      pp = &w->next;
      continue;
    }
    *pp = w->next;
    if (w->cb != NULL)
      w->cb(node, err, w->arg);
    free(w);
    pp = &node->waiters; /* the callback may have added or woken others */
  }
}

static void disco__eph_finish(disco_zk_ephemeral_t *node) {
  disco__zk_remove_state_listener(&node->listener);
  disco__eph_wake(node, DISCO_ECLOSED);
  disco__eph_emit(node, DISCO_ZK_EPHEMERAL_CLOSED, 0);
  if (node->close_cb != NULL)
    node->close_cb(node, node->data);
  free(node->path);
  free(node->value);
  free(node);
}

static void disco__eph_finish_item_cb(disco_qitem_t *item, int status) {
  (void)status; /* canceled when the session's queue closes: finish too */
  disco__eph_finish(
      disco__container_of(item, disco_zk_ephemeral_t, finish_item));
}

/* The callbacks of the end (CLOSED, close_cb) never run inside the call
 * that closed the handle (a Lua method, a session close): they go through
 * the session's queue to the next loop iteration. */
static void disco__eph_maybe_finish(disco_zk_ephemeral_t *node) {
  if (!node->closing || node->pending > 0 || node->busy || node->finished)
    return;
  node->finished = 1;
  node->finish_item.cb = disco__eph_finish_item_cb;
  if (disco_queue_push(node->zk->queue, &node->finish_item) != 0)
    disco__eph_finish(node);
}

/* Request callbacks run their body while the request's own reference still
 * holds the handle, so that a close from a state callback in between cannot
 * free it under them; the reference goes at the very end. */
static void disco__eph_leave(disco_zk_ephemeral_t *node) {
  node->pending--;
  disco__eph_maybe_finish(node);
}

#define DISCO__EPH_CB(name)                                                    \
  static void disco__eph_##name##_body(                                        \
      disco_zk_t *zk, const disco_zk_result_t *r, void *data);                 \
  static void disco__eph_##name##_cb(disco_zk_t *zk,                           \
                                     const disco_zk_result_t *r, void *data) { \
    disco__eph_##name##_body(zk, r, data);                                     \
    disco__eph_leave((disco_zk_ephemeral_t *)data);                            \
  }

DISCO__EPH_CB(set)
DISCO__EPH_CB(delete)
DISCO__EPH_CB(get)
DISCO__EPH_CB(create)
DISCO__EPH_CB(close_get)

static int disco__eph_usable(disco_zk_ephemeral_t *node) {
  return disco_zk_state(node->zk) == DISCO_ZK_CONNECTED;
}

/* The chain ended: handle what was recorded meanwhile. */
static void disco__eph_chain_end(disco_zk_ephemeral_t *node) {
  node->busy = 0;
  node->tries = 0;
  if (node->closing) {
    disco__eph_close_step(node);
    return;
  }
  if (node->recheck && disco__eph_usable(node)) {
    node->recheck = 0;
    if (node->generation != disco_zk_generation(node->zk) || node->owner == 0)
      disco__eph_create(node);
    else
      disco__eph_check(node);
    return;
  }
  disco__eph_flush(node);
}

/* Our node exists: report it, and write newer data if any. */
static void disco__eph_owned(disco_zk_ephemeral_t *node, int64_t owner) {
  int was;

  was = node->owner != 0;
  node->owner = owner;
  node->generation = disco_zk_generation(node->zk);
  if (!was) {
    disco__eph_emit(node,
                    node->ever_created ? DISCO_ZK_EPHEMERAL_RECREATED
                                       : DISCO_ZK_EPHEMERAL_CREATED,
                    0);
    node->ever_created = 1;
  }
}

/* The chain failed for a reason that a reconnect will fix, or for good. */
static void disco__eph_failed(disco_zk_ephemeral_t *node, int err) {
  if (err != DISCO_ECONNLOSS && err != DISCO_ESESSIONEXPIRED &&
      err != DISCO_ECLOSED) {
    disco_log(node->zk->loop, DISCO_LOG_WARN, "zookeeper", "ephemeral %s: %s",
              node->path, disco_strerror(err));
    if (node->owner != 0 || !node->ever_created) {
      node->owner = 0;
      disco__eph_emit(node, DISCO_ZK_EPHEMERAL_LOST, err);
    }
  }
  disco__eph_chain_end(node);
}

/* ------------------------------------------------------------- set */

static void disco__eph_set_body(disco_zk_t *zk, const disco_zk_result_t *r,
                                void *data) {
  disco_zk_ephemeral_t *node;

  (void)zk;
  node = data;
  node->setting = 0;
  if (r->err == 0) {
    node->written_version = node->sending_version;
    disco__eph_wake(node, 0);
  } else if (r->err == DISCO_ENONODE && !node->closing) {
    /* Gone under us: the check creates it again with the latest data. */
    node->owner = 0;
    node->recheck = 1;
  }
  if (!node->busy && !node->closing)
    disco__eph_chain_end(node);
  else
    disco__eph_maybe_finish(node);
}

/* Writes the latest data when our node has older data and nothing else is
 * running. Version -1: the node is ours, nobody else writes it. */
static void disco__eph_flush(disco_zk_ephemeral_t *node) {
  int err;

  if (node->busy || node->setting || node->closing || node->owner == 0 ||
      node->written_version >= node->data_version || !disco__eph_usable(node))
    return;
  node->sending_version = node->data_version;
  err = disco_zk_set(node->zk, node->path, node->value, node->len, -1,
                     disco__eph_set_cb, node);
  if (err != 0)
    return; /* the next reconnect tries again */
  node->setting = 1;
  node->pending++;
}

/* ---------------------------------------------------- create / check */

static void disco__eph_delete_body(disco_zk_t *zk, const disco_zk_result_t *r,
                                   void *data) {
  disco_zk_ephemeral_t *node;

  (void)zk;
  node = data;
  if (node->closing) {
    disco__eph_chain_end(node);
    return;
  }
  /* EBADVERSION: it changed again; ENONODE: gone already. Either way,
   * create (and look again on ENODEEXISTS). */
  if (r->err == 0 || r->err == DISCO_ENONODE || r->err == DISCO_EBADVERSION) {
    disco__eph_create(node);
    return;
  }
  disco__eph_failed(node, r->err);
}

/* A stat of the node at our path: keep it if ours, replace it if not. */
static void disco__eph_judge(disco_zk_ephemeral_t *node,
                             const disco_zk_result_t *r) {
  int64_t sid;
  int err;

  sid = disco_zk_session_id(node->zk);
  if (r->stat.ephemeral_owner == sid && sid != 0) {
    /* Ours (an earlier create went through before a connection loss, or a
     * reconnect check): keep it and make its data ours. */
    if (r->op == DISCO_ZK_OP_GET) {
      if (r->data_len == node->len &&
          (node->len == 0 || memcmp(r->data, node->value, node->len) == 0))
        node->written_version = node->data_version;
      else
        node->written_version = 0; /* the flush at the chain's end */
    }
    disco__eph_owned(node, sid);
    disco__eph_wake(node, 0);
    disco__eph_chain_end(node);
    return;
  }
  if (node->owner != 0) {
    node->owner = 0;
    disco__eph_emit(node, DISCO_ZK_EPHEMERAL_LOST, DISCO_ENONODE);
  }
  if (node->tries >= DISCO_ZK_EPHEMERAL_TRIES) {
    disco__eph_failed(node, DISCO_ENODEEXISTS);
    return;
  }
  node->tries++;
  disco_log(node->zk->loop, DISCO_LOG_INFO, "zookeeper",
            "ephemeral %s: held by session 0x%llx, replacing it", node->path,
            (unsigned long long)r->stat.ephemeral_owner);
  err = disco_zk_delete(node->zk, node->path, r->stat.version,
                        disco__eph_delete_cb, node);
  if (err != 0) {
    disco__eph_failed(node, err);
    return;
  }
  node->pending++;
}

static void disco__eph_get_body(disco_zk_t *zk, const disco_zk_result_t *r,
                                void *data) {
  disco_zk_ephemeral_t *node;

  (void)zk;
  node = data;
  if (node->closing) {
    disco__eph_chain_end(node);
    return;
  }
  if (r->err == DISCO_ENONODE) {
    if (node->owner != 0) {
      node->owner = 0;
      disco__eph_emit(node, DISCO_ZK_EPHEMERAL_LOST, DISCO_ENONODE);
    }
    if (node->tries >= DISCO_ZK_EPHEMERAL_TRIES) {
      disco__eph_failed(node, DISCO_ENONODE);
      return;
    }
    node->tries++;
    disco__eph_create(node);
    return;
  }
  if (r->err != 0) {
    disco__eph_failed(node, r->err);
    return;
  }
  disco__eph_judge(node, r);
}

static void disco__eph_create_body(disco_zk_t *zk, const disco_zk_result_t *r,
                                   void *data) {
  disco_zk_ephemeral_t *node;
  int err;

  (void)zk;
  node = data;
  if (r->err == 0) {
    if (node->closing) {
      /* Created after the close began: remove it. */
      node->owner = disco_zk_session_id(zk);
      disco__eph_chain_end(node);
      return;
    }
    node->written_version = node->sending_version;
    disco__eph_owned(node, disco_zk_session_id(zk));
    disco__eph_wake(node, 0);
    disco__eph_chain_end(node);
    return;
  }
  if (node->closing) {
    disco__eph_chain_end(node);
    return;
  }
  if (r->err == DISCO_ENODEEXISTS) {
    /* Whose is it? get rather than exists: our data may be there already. */
    err = disco_zk_get(zk, node->path, NULL, disco__eph_get_cb, node);
    if (err != 0) {
      disco__eph_failed(node, err);
      return;
    }
    node->pending++;
    return;
  }
  if (r->err == DISCO_ECONNLOSS) {
    /* The create may have gone through: check on the reconnect. */
    node->recheck = 1;
  }
  disco__eph_failed(node, r->err);
}

static void disco__eph_create(disco_zk_ephemeral_t *node) {
  int err;

  node->busy = 1;
  node->sending_version = node->data_version;
  err = disco_zk_create(node->zk, node->path, node->value, node->len,
                        DISCO_ZK_EPHEMERAL | DISCO_ZK_PARENTS_CONTAINER,
                        disco__eph_create_cb, node);
  if (err != 0) {
    disco__eph_failed(node, err);
    return;
  }
  node->pending++;
}

/* Same session after a reconnect: is the node still there, and ours? */
static void disco__eph_check(disco_zk_ephemeral_t *node) {
  int err;

  node->busy = 1;
  err = disco_zk_exists(node->zk, node->path, NULL, disco__eph_get_cb, node);
  if (err != 0) {
    disco__eph_failed(node, err);
    return;
  }
  node->pending++;
}

/* --------------------------------------------------------- session */

static void disco__eph_session(disco_zk_ephemeral_t *node,
                               disco_zk_state_t state, uint64_t generation);

static void disco__eph_state_cb(disco__zk_listener_t *l, disco_zk_state_t state,
                                uint64_t generation) {
  disco_zk_ephemeral_t *node;

  node = disco__container_of(l, disco_zk_ephemeral_t, listener);
  node->pending++; /* held across callbacks that may close it */
  disco__eph_session(node, state, generation);
  disco__eph_leave(node);
}

static void disco__eph_session(disco_zk_ephemeral_t *node,
                               disco_zk_state_t state, uint64_t generation) {
  if (state == DISCO_ZK_CLOSED) {
    disco_zk_ephemeral_close(node);
    return;
  }
  if (node->closing)
    return;
  if (state == DISCO_ZK_EXPIRED) {
    /* The server deleted it with the session. */
    if (node->owner != 0) {
      node->owner = 0;
      disco__eph_emit(node, DISCO_ZK_EPHEMERAL_LOST, DISCO_ESESSIONEXPIRED);
    }
    node->written_version = 0;
    node->recheck = 1;
    return;
  }
  if (state != DISCO_ZK_CONNECTED)
    return;
  if (generation != node->generation) {
    node->owner = 0;
    node->written_version = 0;
  }
  node->recheck = 1;
  if (!node->busy)
    disco__eph_chain_end(node);
}

/* ----------------------------------------------------------- close */

static void disco__eph_close_get_body(disco_zk_t *zk,
                                      const disco_zk_result_t *r, void *data) {
  disco_zk_ephemeral_t *node;
  int64_t sid;
  int err;

  node = data;
  sid = disco_zk_session_id(zk);
  if (r->err == 0 && sid != 0 && r->stat.ephemeral_owner == sid) {
    err = disco_zk_delete(zk, node->path, r->stat.version, disco__eph_delete_cb,
                          node);
    if (err == 0) {
      node->pending++;
      node->busy = 1;
      return;
    }
  }
  disco__eph_maybe_finish(node);
}

/* Once no chain runs: delete the node if, and only if, it is ours. */
static void disco__eph_close_step(disco_zk_ephemeral_t *node) {
  int err;

  if (node->close_sent) {
    disco__eph_maybe_finish(node);
    return;
  }
  node->close_sent = 1;
  err = disco_zk_exists(node->zk, node->path, NULL, disco__eph_close_get_cb,
                        node);
  if (err == 0)
    node->pending++;
  disco__eph_maybe_finish(node);
}

void disco_zk_ephemeral_close(disco_zk_ephemeral_t *node) {
  if (node == NULL || node->closing)
    return;
  node->closing = 1;
  if (node->busy) {
    /* The chain sees `closing` at its next step and ends there. */
    return;
  }
  disco__eph_close_step(node);
}

/* ------------------------------------------------------------- new */

static int disco__eph_path_valid(const char *path) {
  size_t len;

  if (path == NULL || path[0] != '/')
    return 0;
  len = strlen(path);
  return len > 1 && path[len - 1] != '/';
}

int disco_zk_ephemeral_new(disco_zk_t *zk, const char *path, const char *value,
                           size_t len, disco_zk_ephemeral_cb state_cb,
                           disco_handle_close_cb close_cb, void *data,
                           disco_zk_ephemeral_t **out) {
  disco_zk_ephemeral_t *node;

  if (zk == NULL || out == NULL || !disco__eph_path_valid(path) ||
      len > DISCO_ZK_MAX_DATA || (value == NULL && len > 0))
    return DISCO_EINVAL;
  if (zk->closing)
    return DISCO_ECLOSED;
  node = calloc(1, sizeof(*node));
  if (node == NULL)
    return DISCO_ENOMEM;
  node->path = strdup(path);
  node->value = malloc(len > 0 ? len : 1);
  if (node->path == NULL || node->value == NULL) {
    free(node->path);
    free(node->value);
    free(node);
    return DISCO_ENOMEM;
  }
  if (len > 0)
    memcpy(node->value, value, len);
  node->len = len;
  node->data_version = 1;
  node->zk = zk;
  node->state_cb = state_cb;
  node->close_cb = close_cb;
  node->data = data;
  node->generation = disco_zk_generation(zk);
  disco__list_init(&node->listener.link);
  disco__zk_add_state_listener(zk, &node->listener, disco__eph_state_cb);
  *out = node;
  if (disco__eph_usable(node))
    disco__eph_create(node);
  else
    node->recheck = 1; /* created on CONNECTED */
  return 0;
}

int disco_zk_ephemeral_update(disco_zk_ephemeral_t *node, const char *value,
                              size_t len, disco_zk_ephemeral_update_cb cb,
                              void *arg) {
  disco__zk_eph_waiter_t *w;
  disco__zk_eph_waiter_t **pp;
  char *copy;

  if (node == NULL || len > DISCO_ZK_MAX_DATA || (value == NULL && len > 0))
    return DISCO_EINVAL;
  if (node->closing)
    return DISCO_ECLOSED;
  copy = malloc(len > 0 ? len : 1);
  w = calloc(1, sizeof(*w));
  if (copy == NULL || w == NULL) {
    free(copy);
    free(w);
    return DISCO_ENOMEM;
  }
  if (len > 0)
    memcpy(copy, value, len);
  free(node->value);
  node->value = copy;
  node->len = len;
  node->data_version++;
  w->cb = cb;
  w->arg = arg;
  w->version = node->data_version;
  for (pp = &node->waiters; *pp != NULL; pp = &(*pp)->next)
    ;
  *pp = w;
  disco__eph_flush(node);
  return 0;
}

const char *disco_zk_ephemeral_path(const disco_zk_ephemeral_t *node) {
  return node->path;
}

int disco_zk_ephemeral_owned(const disco_zk_ephemeral_t *node) {
  return node->owner != 0 && !node->closing;
}

void *disco_zk_ephemeral_data(const disco_zk_ephemeral_t *node) {
  return node->data;
}
