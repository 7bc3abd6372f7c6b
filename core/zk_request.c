/*
 * ZooKeeper requests (get, exists, children, create, set, delete) and their
 * one-shot watches.
 *
 * A request is allocated on the loop thread and linked into zk->requests.
 * Its completion runs on ZooKeeper's completion thread: it deep-copies the
 * result into the request and pushes it onto the session's queue. The loop
 * thread then completes it exactly once: from the queue (delivered, or
 * canceled when the session closes), or from the sweep that follows the
 * zookeeper_close() of its handle when the result never reached the queue.
 * A create with DISCO_ZK_PARENTS goes around that circle more than once: on
 * ENONODE it creates each ancestor in turn and then retries.
 *
 * Watches follow the same pattern with their own record, linked into the
 * conn that set them. ZooKeeper calls a watcher for each session event as
 * well; those calls return at once without touching the record, since the
 * record may already be gone (ZooKeeper clones its watcher list for session
 * events). Whether ZooKeeper kept a watch is known from the request's return
 * code (it registers the watcher when the response arrives: on ZOK, and on
 * ZNONODE for exists), so a watch that was never set ends right after its
 * request.
 */
#include <stdlib.h>
#include <string.h>

#include "zk_internal.h"

typedef struct disco__zk_watch_s disco__zk_watch_t;
typedef struct disco__zk_req_s disco__zk_req_t;

struct disco__zk_watch_s {
  disco_qitem_t item;
  struct disco__list link; /* in conn->watches until it fires or ends */
  disco_zk_t *zk;
  disco__zk_conn_t *conn; /* read by ZooKeeper's thread when it fires */
  int zk_side;            /* atomic */
  int type;               /* ZooKeeper's event type, once fired */
  char *path;             /* the event's path, once fired */
  uint64_t generation;
  disco_zk_watch_cb cb;
  void *data;
  /* Loop thread: the request that set it, until that completes. A watch
   * must end after its request, so when its conn goes first the sweep
   * leaves it to the request ("orphan", ending with orphan_status). */
  disco__zk_req_t *req;
  int orphan;
  int orphan_status;
};

struct disco__zk_req_s {
  disco_qitem_t item;
  struct disco__list link; /* in zk->requests until completed */
  disco_zk_t *zk;
  disco__zk_conn_t *conn; /* where it is in flight */
  int zk_side;            /* atomic */
  disco_zk_op_t op;
  uint64_t generation;
  char *path;
  char *value; /* create, set */
  int value_len;
  int flags;
  int version;
  disco__zk_watch_t *watch;
  disco_zk_cb cb;
  void *data;
  /* Creating parents: the ancestor being created (NULL for the node
   * itself), and whether the node's create was already retried. */
  char *ancestor;
  int retried;
  int held; /* waiting for the conn's auth before it is sent */
  /* Result, written by ZooKeeper's completion thread. */
  int rc;
  int has_stat;
  struct Stat stat;
  char *rvalue;
  int rvalue_len; /* -1: null value */
  char **children;
  int32_t num_children;
  char *created_path;
};

/* Watches outlive the request buffers allocated with them: pooled, they
 * leave no holes in the C heap after a burst of reads (core/pool.c). */
static disco_pool_t disco__zk_watch_pool =
    DISCO_POOL_INIT(sizeof(disco__zk_watch_t));

/* -------------------------------------------------- ZooKeeper's threads */

/* Hands the request to the loop; afterwards it belongs to the loop. */
static void disco__zk_req_post(disco__zk_req_t *req) {
  disco_queue_t *queue;

  queue = req->conn->queue;
  disco__atomic_store(&req->zk_side, DISCO__ZK_PUSHED);
  if (disco_queue_push(queue, &req->item) != 0)
    disco__atomic_store(&req->zk_side, DISCO__ZK_REFUSED);
}

static char *disco__zk_strdup(const char *s) {
  return s != NULL ? strdup(s) : NULL;
}

static void disco__zk_copy_stat(disco__zk_req_t *req, const struct Stat *stat) {
  if (stat != NULL) {
    req->stat = *stat;
    req->has_stat = 1;
  }
}

static void disco__zk_data_done(int rc, const char *value, int value_len,
                                const struct Stat *stat, const void *data) {
  disco__zk_req_t *req;

  req = (disco__zk_req_t *)data;
  req->rc = rc;
  req->rvalue_len = -1;
  if (rc == ZOK) {
    disco__zk_copy_stat(req, stat);
    if (value != NULL && value_len >= 0) {
      if (value_len > DISCO_ZK_MAX_DATA)
        value_len = DISCO_ZK_MAX_DATA;
      /* One more byte so that an empty value is not a NULL pointer. */
      req->rvalue = malloc((size_t)value_len + 1);
      if (req->rvalue != NULL) {
        memcpy(req->rvalue, value, (size_t)value_len);
        req->rvalue[value_len] = '\0';
        req->rvalue_len = value_len;
      } else {
        req->rc = ZSYSTEMERROR;
      }
    }
  }
  disco__zk_req_post(req);
}

static void disco__zk_stat_done(int rc, const struct Stat *stat,
                                const void *data) {
  disco__zk_req_t *req;

  req = (disco__zk_req_t *)data;
  req->rc = rc;
  if (rc == ZOK)
    disco__zk_copy_stat(req, stat);
  disco__zk_req_post(req);
}

static void disco__zk_children_done(int rc, const struct String_vector *strings,
                                    const struct Stat *stat, const void *data) {
  disco__zk_req_t *req;
  int32_t i;

  req = (disco__zk_req_t *)data;
  req->rc = rc;
  if (rc == ZOK) {
    disco__zk_copy_stat(req, stat);
    if (strings != NULL && strings->count > 0) {
      req->children = calloc((size_t)strings->count, sizeof(char *));
      if (req->children == NULL) {
        req->rc = ZSYSTEMERROR;
      } else {
        for (i = 0; i < strings->count; i++) {
          req->children[i] = disco__zk_strdup(strings->data[i]);
          if (req->children[i] == NULL) {
            req->rc = ZSYSTEMERROR;
            break;
          }
          req->num_children = i + 1;
        }
      }
    }
  }
  disco__zk_req_post(req);
}

static void disco__zk_create_done(int rc, const char *value,
                                  const struct Stat *stat, const void *data) {
  disco__zk_req_t *req;

  req = (disco__zk_req_t *)data;
  req->rc = rc;
  if (rc == ZOK) {
    disco__zk_copy_stat(req, stat);
    free(req->created_path);
    req->created_path = disco__zk_strdup(value);
  }
  disco__zk_req_post(req);
}

static void disco__zk_void_done(int rc, const void *data) {
  disco__zk_req_t *req;

  req = (disco__zk_req_t *)data;
  req->rc = rc;
  disco__zk_req_post(req);
}

static void disco__zk_watch_item_cb(disco_qitem_t *qitem, int status);

static void disco__zk_watcher(zhandle_t *zh, int type, int state,
                              const char *path, void *ctx) {
  disco__zk_watch_t *watch;

  (void)zh;
  (void)state;
  /* Session events reach every watcher; the default watcher handles them,
   * and this record may be gone already. */
  if (type == ZOO_SESSION_EVENT)
    return;
  watch = ctx;
  watch->type = type;
  watch->path = disco__zk_strdup(path);
  disco__atomic_store(&watch->zk_side, DISCO__ZK_PUSHED);
  if (disco_queue_push(watch->conn->queue, &watch->item) != 0)
    disco__atomic_store(&watch->zk_side, DISCO__ZK_REFUSED);
}

/* ------------------------------------------------------------- watches */

static void disco__zk_watch_end(disco__zk_watch_t *watch, int status) {
  disco_zk_event_t event;

  disco__list_remove(&watch->link);
  if (watch->req != NULL)
    watch->req->watch = NULL;
  memset(&event, 0, sizeof(event));
  event.status = status;
  event.generation = watch->generation;
  if (status == 0) {
    if (watch->type == ZOO_CREATED_EVENT)
      event.type = DISCO_ZK_EVENT_CREATED;
    else if (watch->type == ZOO_DELETED_EVENT)
      event.type = DISCO_ZK_EVENT_DELETED;
    else if (watch->type == ZOO_CHANGED_EVENT)
      event.type = DISCO_ZK_EVENT_CHANGED;
    else if (watch->type == ZOO_CHILD_EVENT)
      event.type = DISCO_ZK_EVENT_CHILD;
    else
      event.status = DISCO_ECANCELED; /* NOTWATCHING: removed, not fired */
    event.path = watch->path;
  }
  watch->cb(watch->zk, &event, watch->data);
  free(watch->path);
  disco_pool_free(&disco__zk_watch_pool, watch);
}

static void disco__zk_watch_item_cb(disco_qitem_t *qitem, int status) {
  disco__zk_watch_t *watch;

  watch = disco__container_of(qitem, disco__zk_watch_t, item);
  disco__zk_watch_end(watch, status == 0 ? 0 : DISCO_ECLOSED);
}

/* ------------------------------------------------------------ requests */

static void disco__zk_req_free(disco__zk_req_t *req) {
  int32_t i;

  for (i = 0; i < req->num_children; i++)
    free(req->children[i]);
  free(req->children);
  free(req->path);
  free(req->value);
  free(req->ancestor);
  free(req->rvalue);
  free(req->created_path);
  free(req);
}

/* Loop thread. Runs the callback with `err` (0: the result ZooKeeper gave),
 * then ends a watch ZooKeeper did not keep, and frees the request. */
static void disco__zk_req_complete(disco__zk_req_t *req, int err) {
  disco_zk_result_t result;
  disco__zk_watch_t *watch;
  int kept;

  disco__list_remove(&req->link);
  memset(&result, 0, sizeof(result));
  result.op = req->op;
  result.generation = req->generation;
  result.path = req->path;
  result.zk_rc = req->rc;
  result.err = err != 0 ? err : disco_translate_zk_error(req->rc);
  if (result.err == DISCO_EZK)
    disco_log(req->zk->loop, DISCO_LOG_WARN, "zookeeper", "%s: %s (%d)",
              req->path, zerror(req->rc), req->rc);
  if (result.err == 0 || (req->op == DISCO_ZK_OP_EXISTS && req->has_stat)) {
    result.has_stat = req->has_stat;
    result.stat.czxid = req->stat.czxid;
    result.stat.mzxid = req->stat.mzxid;
    result.stat.pzxid = req->stat.pzxid;
    result.stat.ctime = req->stat.ctime;
    result.stat.mtime = req->stat.mtime;
    result.stat.version = req->stat.version;
    result.stat.cversion = req->stat.cversion;
    result.stat.aversion = req->stat.aversion;
    result.stat.ephemeral_owner = req->stat.ephemeralOwner;
    result.stat.data_length = req->stat.dataLength;
    result.stat.num_children = req->stat.numChildren;
  }
  if (result.err == 0) {
    result.data = req->rvalue_len >= 0 ? req->rvalue : NULL;
    result.data_len = req->rvalue_len >= 0 ? (size_t)req->rvalue_len : 0;
    result.children = req->children;
    result.num_children = (size_t)req->num_children;
    result.created_path = req->created_path;
  }
  watch = req->watch;
  /* ZooKeeper keeps a watch when the server answered ZOK, or ZNONODE to an
   * exists; with `err` set the answer never came. */
  kept = err == 0 && (req->rc == ZOK ||
                      (req->op == DISCO_ZK_OP_EXISTS && req->rc == ZNONODE));
  if (watch != NULL)
    watch->req = NULL;
  req->cb(req->zk, &result, req->data);
  if (watch != NULL && !kept)
    disco__zk_watch_end(watch, result.err != 0 ? result.err : DISCO_ECANCELED);
  else if (watch != NULL && watch->orphan)
    disco__zk_watch_end(watch, watch->orphan_status);
  disco__zk_req_free(req);
}

/* Why there is no handle to send on: the session expired and the next
 * handle is not there yet, or authentication failed for good. */
static int disco__zk_no_conn_error(disco_zk_t *zk) {
  return zk->state == DISCO_ZK_AUTH_FAILED ? DISCO_EAUTHFAILED
                                           : DISCO_ESESSIONEXPIRED;
}

/* Loop thread. Sends `req` (again) on the current handle. */
static int disco__zk_req_send(disco__zk_req_t *req) {
  disco_zk_t *zk;
  zhandle_t *zh;
  const char *path;
  int flags;
  int rc;

  zk = req->zk;
  if (zk->closing)
    return DISCO_ECLOSED;
  if (zk->conn == NULL)
    return disco__zk_no_conn_error(zk);
  req->conn = zk->conn;
  req->generation = zk->conn->generation;
  req->zk_side = DISCO__ZK_IN_FLIGHT;
  req->rc = 0;
  if (!disco__zk_conn_auth(zk->conn)) {
    req->held = 1;
    return 0;
  }
  req->held = 0;
  zh = zk->conn->zh;
  switch (req->op) {
    case DISCO_ZK_OP_GET:
      rc = zoo_awget(zh, req->path, req->watch ? disco__zk_watcher : NULL,
                     req->watch, disco__zk_data_done, req);
      break;
    case DISCO_ZK_OP_EXISTS:
      rc = zoo_awexists(zh, req->path, req->watch ? disco__zk_watcher : NULL,
                        req->watch, disco__zk_stat_done, req);
      break;
    case DISCO_ZK_OP_CHILDREN:
      rc = zoo_awget_children2(zh, req->path,
                               req->watch ? disco__zk_watcher : NULL,
                               req->watch, disco__zk_children_done, req);
      break;
    case DISCO_ZK_OP_CREATE:
      if (req->ancestor != NULL) {
        path = req->ancestor;
        flags = (req->flags & DISCO_ZK_PARENTS_CONTAINER) ? ZOO_CONTAINER
                                                          : ZOO_PERSISTENT;
        rc = zoo_acreate2(zh, path, NULL, -1, disco__zk_acl(zk), flags,
                          disco__zk_create_done, req);
      } else {
        flags = ZOO_PERSISTENT;
        if (req->flags & DISCO_ZK_CONTAINER)
          flags = ZOO_CONTAINER;
        else if ((req->flags & DISCO_ZK_EPHEMERAL) &&
                 (req->flags & DISCO_ZK_SEQUENTIAL))
          flags = ZOO_EPHEMERAL_SEQUENTIAL;
        else if (req->flags & DISCO_ZK_EPHEMERAL)
          flags = ZOO_EPHEMERAL;
        else if (req->flags & DISCO_ZK_SEQUENTIAL)
          flags = ZOO_PERSISTENT_SEQUENTIAL;
        rc = zoo_acreate2(zh, req->path, req->value, req->value_len,
                          disco__zk_acl(zk), flags, disco__zk_create_done, req);
      }
      break;
    case DISCO_ZK_OP_SET:
      rc = zoo_aset(zh, req->path, req->value, req->value_len, req->version,
                    disco__zk_stat_done, req);
      break;
    case DISCO_ZK_OP_DELETE:
      rc = zoo_adelete(zh, req->path, req->version, disco__zk_void_done, req);
      break;
    default:
      rc = ZBADARGUMENTS;
      break;
  }
  return disco_translate_zk_error(rc);
}

/* The next ancestor of req->path to create after `done` (a prefix of the
 * path, or NULL to start at the top); NULL when none is left. */
static char *disco__zk_next_ancestor(const char *path, const char *done) {
  const char *slash;
  size_t from;

  from = done != NULL ? strlen(done) : 0;
  slash = strchr(path + from + 1, '/');
  if (slash == NULL)
    return NULL;
  return strndup(path, (size_t)(slash - path));
}

/* Loop thread: a create came back. Returns 1 when the request went out
 * again (one more step of creating parents), 0 when it is complete. */
static int disco__zk_create_step(disco__zk_req_t *req) {
  char *next;
  int err;

  if (!(req->flags & (DISCO_ZK_PARENTS | DISCO_ZK_PARENTS_CONTAINER)))
    return 0;
  if (req->ancestor == NULL) {
    /* The node itself: only ENONODE means a parent is missing. */
    if (req->rc != ZNONODE || req->retried)
      return 0;
    next = disco__zk_next_ancestor(req->path, NULL);
  } else {
    /* An ancestor: created, or there already. */
    if (req->rc != ZOK && req->rc != ZNODEEXISTS)
      return 0;
    next = disco__zk_next_ancestor(req->path, req->ancestor);
  }
  if (next == NULL && req->ancestor == NULL)
    return 0; /* a top-level node: no parent to create */
  free(req->ancestor);
  req->ancestor = next;
  if (next == NULL)
    req->retried = 1; /* every ancestor exists: the node itself again */
  free(req->created_path);
  req->created_path = NULL;
  req->has_stat = 0;
  err = disco__zk_req_send(req);
  if (err != 0) {
    disco__zk_req_complete(req, err);
    return 1;
  }
  return 1;
}

static void disco__zk_req_item_cb(disco_qitem_t *qitem, int status) {
  disco__zk_req_t *req;

  req = disco__container_of(qitem, disco__zk_req_t, item);
  if (status != 0) {
    disco__zk_req_complete(req, DISCO_ECLOSED);
    return;
  }
  if (req->op == DISCO_ZK_OP_CREATE && !req->zk->closing &&
      disco__zk_create_step(req))
    return;
  disco__zk_req_complete(req, 0);
}

void disco__zk_flush_held(disco__zk_conn_t *conn) {
  struct disco__list *node;
  struct disco__list *next;
  disco__zk_req_t *req;
  disco_zk_t *zk;
  int err;

  zk = conn->zk;
  for (node = zk->requests.next; node != &zk->requests; node = next) {
    next = node->next;
    req = disco__container_of(node, disco__zk_req_t, link);
    if (!req->held || req->conn != conn)
      continue;
    err = disco__zk_req_send(req);
    if (err != 0) {
      disco__zk_req_complete(req, err);
      /* The callback may have completed others: restart. */
      next = zk->requests.next;
    }
  }
}

void disco__zk_conn_sweep(disco__zk_conn_t *conn) {
  struct disco__list *node;
  struct disco__list *next;
  disco__zk_req_t *req;
  disco__zk_watch_t *watch;
  disco_zk_t *zk;
  int side;

  zk = conn->zk;
  for (node = zk->requests.next; node != &zk->requests; node = next) {
    next = node->next;
    req = disco__container_of(node, disco__zk_req_t, link);
    if (req->conn != conn)
      continue;
    side = disco__atomic_load(&req->zk_side);
    if (side == DISCO__ZK_PUSHED)
      continue; /* the queue delivers it */
    /* A result that the closing queue refused is still the real one;
     * ZooKeeper never calling back at all means the handle closed. */
    disco__zk_req_complete(req,
                           side == DISCO__ZK_REFUSED ? 0 : conn->end_status);
    /* A completion may have closed and completed others: restart. */
    next = zk->requests.next;
  }
  while (conn->watches.next != &conn->watches) {
    watch = disco__container_of(conn->watches.next, disco__zk_watch_t, link);
    side = disco__atomic_load(&watch->zk_side);
    if (side == DISCO__ZK_PUSHED) {
      /* Fired and queued: the queue delivers it; the conn goes away. */
      disco__list_remove(&watch->link);
      continue;
    }
    if (watch->req != NULL) {
      /* Its request is still in the queue: it ends after that. */
      disco__list_remove(&watch->link);
      watch->orphan = 1;
      watch->orphan_status = side == DISCO__ZK_REFUSED ? 0 : conn->end_status;
      continue;
    }
    disco__zk_watch_end(watch,
                        side == DISCO__ZK_REFUSED ? 0 : conn->end_status);
  }
}

/* ---------------------------------------------------------- public API */

static int disco__zk_path_valid(const char *path) {
  size_t len;

  if (path == NULL || path[0] != '/')
    return 0;
  len = strlen(path);
  return len == 1 || path[len - 1] != '/';
}

static int disco__zk_submit(disco_zk_t *zk, disco_zk_op_t op, const char *path,
                            const char *value, size_t len, int flags,
                            int version, disco_zk_watch_cb watch_cb,
                            void *watch_data, disco_zk_cb cb, void *data) {
  disco__zk_req_t *req;
  disco__zk_watch_t *watch;
  int err;

  if (zk == NULL || cb == NULL || !disco__zk_path_valid(path))
    return DISCO_EINVAL;
  if (value != NULL && len > DISCO_ZK_MAX_DATA)
    return DISCO_EINVAL;
  if (zk->closing)
    return DISCO_ECLOSED;
  if (zk->conn == NULL)
    return disco__zk_no_conn_error(zk);
  req = calloc(1, sizeof(*req));
  if (req == NULL)
    return DISCO_ENOMEM;
  req->item.cb = disco__zk_req_item_cb;
  req->zk = zk;
  req->op = op;
  req->flags = flags;
  req->version = version;
  req->cb = cb;
  req->data = data;
  req->rvalue_len = -1;
  req->value_len = -1;
  req->path = strdup(path);
  if (req->path == NULL)
    goto nomem;
  if (value != NULL) {
    req->value = malloc(len > 0 ? len : 1);
    if (req->value == NULL)
      goto nomem;
    memcpy(req->value, value, len);
    req->value_len = (int)len;
  }
  if (watch_cb != NULL) {
    watch = disco_pool_alloc(&disco__zk_watch_pool);
    if (watch == NULL)
      goto nomem;
    watch->item.cb = disco__zk_watch_item_cb;
    watch->zk = zk;
    watch->conn = zk->conn;
    watch->generation = zk->conn->generation;
    watch->cb = watch_cb;
    watch->data = watch_data;
    watch->req = req;
    req->watch = watch;
  }
  err = disco__zk_req_send(req);
  if (err != 0) {
    disco_pool_free(&disco__zk_watch_pool, req->watch);
    req->watch = NULL;
    disco__zk_req_free(req);
    return err;
  }
  disco__list_insert_tail(&zk->requests, &req->link);
  if (req->watch != NULL)
    disco__list_insert_tail(&zk->conn->watches, &req->watch->link);
  return 0;

nomem:
  disco_pool_free(&disco__zk_watch_pool, req->watch);
  req->watch = NULL;
  disco__zk_req_free(req);
  return DISCO_ENOMEM;
}

int disco_zk_get(disco_zk_t *zk, const char *path, disco_zk_watch_cb watch,
                 disco_zk_cb cb, void *data) {
  return disco__zk_submit(zk, DISCO_ZK_OP_GET, path, NULL, 0, 0, -1, watch,
                          data, cb, data);
}

int disco__zk_get_watched(disco_zk_t *zk, const char *path,
                          disco_zk_watch_cb watch, void *watch_data,
                          disco_zk_cb cb, void *data) {
  return disco__zk_submit(zk, DISCO_ZK_OP_GET, path, NULL, 0, 0, -1, watch,
                          watch_data, cb, data);
}

int disco_zk_exists(disco_zk_t *zk, const char *path, disco_zk_watch_cb watch,
                    disco_zk_cb cb, void *data) {
  return disco__zk_submit(zk, DISCO_ZK_OP_EXISTS, path, NULL, 0, 0, -1, watch,
                          data, cb, data);
}

int disco_zk_children(disco_zk_t *zk, const char *path, disco_zk_watch_cb watch,
                      disco_zk_cb cb, void *data) {
  return disco__zk_submit(zk, DISCO_ZK_OP_CHILDREN, path, NULL, 0, 0, -1, watch,
                          data, cb, data);
}

int disco_zk_create(disco_zk_t *zk, const char *path, const char *value,
                    size_t len, int flags, disco_zk_cb cb, void *data) {
  if (flags & ~(DISCO_ZK_EPHEMERAL | DISCO_ZK_SEQUENTIAL | DISCO_ZK_CONTAINER |
                DISCO_ZK_PARENTS | DISCO_ZK_PARENTS_CONTAINER))
    return DISCO_EINVAL;
  if ((flags & DISCO_ZK_CONTAINER) &&
      (flags & (DISCO_ZK_EPHEMERAL | DISCO_ZK_SEQUENTIAL)))
    return DISCO_EINVAL;
  return disco__zk_submit(zk, DISCO_ZK_OP_CREATE, path, value, len, flags, -1,
                          NULL, NULL, cb, data);
}

int disco_zk_set(disco_zk_t *zk, const char *path, const char *value,
                 size_t len, int version, disco_zk_cb cb, void *data) {
  return disco__zk_submit(zk, DISCO_ZK_OP_SET, path, value, len, 0, version,
                          NULL, NULL, cb, data);
}

int disco_zk_delete(disco_zk_t *zk, const char *path, int version,
                    disco_zk_cb cb, void *data) {
  return disco__zk_submit(zk, DISCO_ZK_OP_DELETE, path, NULL, 0, 0, version,
                          NULL, NULL, cb, data);
}
