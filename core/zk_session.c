/*
 * ZooKeeper sessions: handle creation, the session state machine, expiry
 * recovery with backoff, the off-loop zookeeper_close() and the route of
 * ZooKeeper's own log into disco_log().
 *
 * Threads. The default watcher runs on libzookeeper's completion thread: it
 * copies the event into a state item and pushes it onto the session's queue,
 * nothing more. Everything else here runs on the loop thread, except the
 * zookeeper_close() of a dead or closing handle, which runs on a libuv
 * worker because it joins the library's threads and may block for seconds.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "zk_internal.h"

#define DISCO__ZK_DEFAULT_TIMEOUT_MS 30000
#define DISCO__ZK_DEFAULT_MIN_BACKOFF_MS 100
#define DISCO__ZK_DEFAULT_MAX_BACKOFF_MS 5000

/* A session event on its way from the completion thread to the loop. */
typedef struct {
  disco_qitem_t item;
  disco_zk_t *zk;
  uint64_t generation;
  int zk_state;
  int64_t session_id;
  char passwd[DISCO_ZK_PASSWD_LEN];
} disco__zk_state_item_t;

/* ------------------------------------------------------------ log route */

/*
 * libzookeeper's log callback takes no context argument, so the loop that
 * receives its lines cannot be found from the call. This is the one mutable
 * global of the core: a mutex-protected table of loops with open sessions;
 * ZooKeeper's lines go to the first of them (a process has one loop in
 * practice), or to stderr when there is none.
 */
#define DISCO__ZK_LOG_ROUTES 16

static uv_once_t disco__zk_once = UV_ONCE_INIT;
static uv_mutex_t disco__zk_log_mutex;
static struct {
  disco_loop_t *loop;
  unsigned sessions;
} disco__zk_log_routes[DISCO__ZK_LOG_ROUTES];

static void disco__zk_init_once(void) {
  /* Process-global in libzookeeper; its INFO default floods stderr. */
  zoo_set_debug_level(ZOO_LOG_LEVEL_WARN);
  if (uv_mutex_init(&disco__zk_log_mutex) != 0)
    abort();
}

static void disco__zk_log_route_add(disco_loop_t *loop) {
  int i;
  int free_slot;

  free_slot = -1;
  uv_mutex_lock(&disco__zk_log_mutex);
  for (i = 0; i < DISCO__ZK_LOG_ROUTES; i++) {
    if (disco__zk_log_routes[i].loop == loop) {
      disco__zk_log_routes[i].sessions++;
      uv_mutex_unlock(&disco__zk_log_mutex);
      return;
    }
    if (free_slot < 0 && disco__zk_log_routes[i].loop == NULL)
      free_slot = i;
  }
  if (free_slot >= 0) {
    disco__zk_log_routes[free_slot].loop = loop;
    disco__zk_log_routes[free_slot].sessions = 1;
  }
  uv_mutex_unlock(&disco__zk_log_mutex);
}

static void disco__zk_log_route_remove(disco_loop_t *loop) {
  int i;

  uv_mutex_lock(&disco__zk_log_mutex);
  for (i = 0; i < DISCO__ZK_LOG_ROUTES; i++) {
    if (disco__zk_log_routes[i].loop == loop) {
      if (--disco__zk_log_routes[i].sessions == 0)
        disco__zk_log_routes[i].loop = NULL;
      break;
    }
  }
  uv_mutex_unlock(&disco__zk_log_mutex);
}

/* Any thread (ZooKeeper's, a worker's, or the loop's inside
 * zookeeper_init). Lines look like "time:pid(tid):ZOO_WARN@fn@line: msg". */
static void disco__zk_log_cb(const char *message) {
  disco_log_level_t level;
  const char *text;
  char buf[DISCO_LOG_MAX_MESSAGE + 1];
  size_t len;
  int i;

  level = DISCO_LOG_DEBUG;
  if (strstr(message, "ZOO_ERROR") != NULL)
    level = DISCO_LOG_ERROR;
  else if (strstr(message, "ZOO_WARN") != NULL)
    level = DISCO_LOG_WARN;
  else if (strstr(message, "ZOO_INFO") != NULL)
    level = DISCO_LOG_INFO;
  /* Keep "fn@line: msg"; the time and thread are the logger's business. */
  text = strstr(message, "ZOO_");
  if (text != NULL && (text = strchr(text, '@')) != NULL)
    text++;
  else
    text = message;
  len = strlen(text);
  if (len > DISCO_LOG_MAX_MESSAGE)
    len = DISCO_LOG_MAX_MESSAGE;
  memcpy(buf, text, len);
  while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
    len--;
  buf[len] = '\0';

  uv_mutex_lock(&disco__zk_log_mutex);
  for (i = 0; i < DISCO__ZK_LOG_ROUTES; i++) {
    if (disco__zk_log_routes[i].loop != NULL)
      break;
  }
  if (i < DISCO__ZK_LOG_ROUTES) {
    /* Always through the queue, even on the loop thread: a sink called
     * from here could re-enter this mutex. The route is removed only after
     * the loop's sessions have finished closing, so the loop is alive. */
    disco__log_post(disco__zk_log_routes[i].loop, level, "zookeeper", buf);
    uv_mutex_unlock(&disco__zk_log_mutex);
    return;
  }
  uv_mutex_unlock(&disco__zk_log_mutex);
  disco_log(NULL, level, "zookeeper", "%s", buf);
}

/* ---------------------------------------------------------------- names */

const char *disco_zk_state_name(disco_zk_state_t state) {
  switch (state) {
    case DISCO_ZK_CONNECTING:
      return "connecting";
    case DISCO_ZK_CONNECTED:
      return "connected";
    case DISCO_ZK_EXPIRED:
      return "expired";
    case DISCO_ZK_AUTH_FAILED:
      return "auth_failed";
    case DISCO_ZK_CLOSED:
      return "closed";
    default:
      return "unknown";
  }
}

const char *disco_zk_event_name(disco_zk_event_type_t type) {
  switch (type) {
    case DISCO_ZK_EVENT_CREATED:
      return "created";
    case DISCO_ZK_EVENT_DELETED:
      return "deleted";
    case DISCO_ZK_EVENT_CHANGED:
      return "changed";
    case DISCO_ZK_EVENT_CHILD:
      return "child";
    default:
      return "unknown";
  }
}

/* ------------------------------------------------------------ validation */

/* "host:port[,host:port...][/chroot]" with numeric ports 1..65535. */
static int disco__zk_hosts_valid(const char *hosts) {
  const char *p;
  const char *end;
  const char *colon;
  const char *chroot;
  long port;
  char *stop;

  if (hosts == NULL || hosts[0] == '\0')
    return 0;
  chroot = strchr(hosts, '/');
  end = chroot != NULL ? chroot : hosts + strlen(hosts);
  if (chroot != NULL &&
      (chroot[1] == '\0' || chroot[strlen(chroot) - 1] == '/'))
    return 0;
  if (end == hosts)
    return 0;
  p = hosts;
  while (p < end) {
    const char *comma = memchr(p, ',', (size_t)(end - p));
    const char *stop_at = comma != NULL ? comma : end;
    colon = NULL;
    for (const char *q = p; q < stop_at; q++) {
      if (*q == ':')
        colon = q;
    }
    if (colon == NULL || colon == p || colon + 1 >= stop_at)
      return 0;
    errno = 0;
    port = strtol(colon + 1, &stop, 10);
    if (errno != 0 || stop != stop_at || port < 1 || port > 65535)
      return 0;
    if (comma == NULL)
      break;
    p = comma + 1;
    if (p >= end)
      return 0;
  }
  return 1;
}

/* ---------------------------------------------------------- state items */

/* Calls every listener once, even when callbacks add or remove listeners:
 * each round restarts from the head and skips those already called. */
static void disco__zk_notify_listeners(disco_zk_t *zk, disco_zk_state_t state) {
  struct disco__list *node;
  disco__zk_listener_t *l;
  unsigned round;

  round = ++zk->dispatch_round;
  for (;;) {
    l = NULL;
    for (node = zk->listeners.next; node != &zk->listeners; node = node->next) {
      l = disco__container_of(node, disco__zk_listener_t, link);
      if (l->seen != round)
        break;
      l = NULL;
    }
    if (l == NULL)
      return;
    l->seen = round;
    l->cb(l, state, zk->generation);
  }
}

void disco__zk_add_state_listener(disco_zk_t *zk, disco__zk_listener_t *l,
                                  disco__zk_listener_cb cb) {
  l->cb = cb;
  l->seen = zk->dispatch_round;
  disco__list_insert_tail(&zk->listeners, &l->link);
}

void disco__zk_remove_state_listener(disco__zk_listener_t *l) {
  disco__list_remove(&l->link);
}

static void disco__zk_set_state(disco_zk_t *zk, disco_zk_state_t state) {
  if (zk->state == state)
    return;
  zk->state = state;
  if (state != DISCO_ZK_CLOSED)
    disco__zk_notify_listeners(zk, state);
  if (zk->state_cb != NULL)
    zk->state_cb(zk, state, zk->generation);
}

static void disco__zk_conn_close(disco__zk_conn_t *conn);
static void disco__zk_schedule(disco_zk_t *zk);

static void disco__zk_state_item_cb(disco_qitem_t *qitem, int status) {
  disco__zk_state_item_t *item;
  disco__zk_conn_t *conn;
  disco_zk_t *zk;

  item = disco__container_of(qitem, disco__zk_state_item_t, item);
  zk = item->zk;
  conn = zk->conn;
  /* Events of an older handle (or arriving while closing) change nothing:
   * the current handle has its own. */
  if (status != 0 || zk->closing || conn == NULL ||
      item->generation != conn->generation) {
    free(item);
    return;
  }
  if (item->zk_state != ZOO_EXPIRED_SESSION_STATE &&
      item->zk_state != ZOO_AUTH_FAILED_STATE)
    disco__zk_conn_auth(conn);
  if (item->zk_state == ZOO_CONNECTED_STATE ||
      item->zk_state == ZOO_READONLY_STATE) {
    zk->attempt = 0;
    zk->session_id = item->session_id;
    memcpy(zk->passwd, item->passwd, sizeof(zk->passwd));
    disco__zk_set_state(zk, DISCO_ZK_CONNECTED);
  } else if (item->zk_state == ZOO_EXPIRED_SESSION_STATE) {
    disco_log(zk->loop, DISCO_LOG_WARN, "zookeeper",
              "session 0x%llx expired (generation %llu)",
              (unsigned long long)zk->session_id,
              (unsigned long long)conn->generation);
    conn->end_status = DISCO_ESESSIONEXPIRED;
    zk->conn = NULL;
    disco__zk_conn_close(conn);
    disco__zk_set_state(zk, DISCO_ZK_EXPIRED);
    /* The state callback may have closed the session. */
    if (!zk->closing)
      disco__zk_schedule(zk);
  } else if (item->zk_state == ZOO_AUTH_FAILED_STATE) {
    disco_log(zk->loop, DISCO_LOG_ERROR, "zookeeper",
              "authentication failed (generation %llu)",
              (unsigned long long)conn->generation);
    conn->end_status = DISCO_EAUTHFAILED;
    zk->conn = NULL;
    disco__zk_conn_close(conn);
    disco__zk_set_state(zk, DISCO_ZK_AUTH_FAILED);
  } else {
    /* CONNECTING, ASSOCIATING, NOTCONNECTED: the link dropped; the library
     * reconnects by itself and the session lives on. */
    disco__zk_set_state(zk, DISCO_ZK_CONNECTING);
  }
  free(item);
}

/* ZooKeeper's completion thread (or its IO thread). Session events only:
 * watches of requests have their own watcher. */
static void disco__zk_default_watcher(zhandle_t *zh, int type, int state,
                                      const char *path, void *ctx) {
  disco__zk_state_item_t *item;
  disco__zk_conn_t *conn;
  const clientid_t *id;

  (void)path;
  if (type != ZOO_SESSION_EVENT)
    return;
  conn = ctx;
  item = calloc(1, sizeof(*item));
  if (item == NULL)
    return;
  item->item.cb = disco__zk_state_item_cb;
  item->zk = conn->zk;
  item->generation = conn->generation;
  item->zk_state = state;
  if (state == ZOO_CONNECTED_STATE || state == ZOO_READONLY_STATE) {
    id = zoo_client_id(zh);
    if (id != NULL) {
      item->session_id = id->client_id;
      memcpy(item->passwd, id->passwd, sizeof(item->passwd));
    }
  }
  if (disco_queue_push(conn->queue, &item->item) != 0)
    free(item);
}

/* ---------------------------------------------------------------- conns */

static void disco__zk_maybe_finish(disco_zk_t *zk);

static void disco__zk_auth_cb(int rc, const void *data) {
  /* Digest auth never fails on a wrong password (a different identity
   * results); a failure here shows as AUTH_FAILED or ENOAUTH. */
  (void)rc;
  (void)data;
}

/*
 * Loop thread. zoo_add_auth() refuses (ZINVALIDSTATE) while the handle's
 * state is 0, which it is between connection attempts and often right after
 * zookeeper_init(); so it is retried on each session event of the handle,
 * and requests are held back until it succeeds, because ZooKeeper sends
 * packets in order and a request sent before the auth would run without it.
 */
int disco__zk_conn_auth(disco__zk_conn_t *conn) {
  disco_zk_t *zk;
  int rc;

  if (conn->auth_added)
    return 1;
  zk = conn->zk;
  rc = zoo_add_auth(conn->zh, "digest", zk->auth, (int)strlen(zk->auth),
                    disco__zk_auth_cb, NULL);
  if (rc != ZOK) {
    if (rc != ZINVALIDSTATE)
      disco_log(zk->loop, DISCO_LOG_ERROR, "zookeeper",
                "zoo_add_auth failed: %s", zerror(rc));
    return 0;
  }
  conn->auth_added = 1;
  disco__zk_flush_held(conn);
  return 1;
}

/* At most one routine resolution of the host list per window (see
 * disco__zk_conn_open). */
#define DISCO__ZK_RESOLVE_DELAY_MS 30000

/* Loop thread. A new handle with the next generation. */
static int disco__zk_conn_open(disco_zk_t *zk) {
  disco__zk_conn_t *conn;
  clientid_t join;
  int saved;

  conn = calloc(1, sizeof(*conn));
  if (conn == NULL)
    return DISCO_ENOMEM;
  conn->zk = zk;
  conn->queue = zk->queue;
  conn->generation = zk->generation + 1;
  conn->end_status = DISCO_ECLOSED;
  disco__list_init(&conn->watches);
  memset(&join, 0, sizeof(join));
  if (zk->join_id != 0 && conn->generation == 1) {
    join.client_id = zk->join_id;
    memcpy(join.passwd, zk->join_passwd, sizeof(join.passwd));
  }
  /* Its threads start inside zookeeper_init and may push at once. */
  disco_queue_retain(conn->queue);
  errno = 0;
  conn->zh = zookeeper_init2(
      zk->hosts, disco__zk_default_watcher, zk->session_timeout_ms,
      join.client_id != 0 ? &join : NULL, conn, 0, disco__zk_log_cb);
  if (conn->zh == NULL) {
    saved = errno;
    disco_queue_release(conn->queue);
    free(conn);
    return saved == EINVAL ? DISCO_EINVAL
                           : (saved == ENOMEM ? DISCO_ENOMEM : DISCO_EIO);
  }
  /* By default the client resolves the host list again every time it
   * checks its socket, that is for every few replies: a getaddrinfo (and,
   * for AI_ADDRCONFIG, a netlink dump of the interfaces) each time, which
   * was half the client's CPU in a cold read of 50,000 znodes. A changed
   * address is still seen within this window, and on every reconnect. */
  zoo_set_servers_resolution_delay(conn->zh, DISCO__ZK_RESOLVE_DELAY_MS);
  zk->generation = conn->generation;
  zk->conn = conn;
  zk->pending++;
  disco__list_insert_tail(&zk->conns, &conn->link);
  conn->auth_added = zk->auth == NULL;
  disco__zk_conn_auth(conn);
  return 0;
}

/* A libuv worker: may block for up to 4.5 s on a connected handle. */
static void disco__zk_conn_work_cb(uv_work_t *work) {
  disco__zk_conn_t *conn;

  conn = disco__container_of(work, disco__zk_conn_t, work);
  zookeeper_close(conn->zh);
  conn->zh = NULL;
}

static void disco__zk_conn_after_cb(uv_work_t *work, int status) {
  disco__zk_conn_t *conn;
  disco_zk_t *zk;

  (void)status; /* work that was queued always runs: it cannot be canceled
                 * here since nobody calls uv_cancel on it */
  conn = disco__container_of(work, disco__zk_conn_t, work);
  zk = conn->zk;
  /* The library's threads are joined: nothing pushes for this conn any
   * more, so what never reached the queue completes now. */
  disco__zk_conn_sweep(conn);
  disco__list_remove(&conn->link);
  disco_queue_release(conn->queue);
  free(conn);
  zk->pending--;
  disco__zk_maybe_finish(zk);
}

static void disco__zk_conn_close(disco__zk_conn_t *conn) {
  int err;

  if (conn->closing)
    return;
  conn->closing = 1;
  err = uv_queue_work(&conn->zk->loop->uv, &conn->work, disco__zk_conn_work_cb,
                      disco__zk_conn_after_cb);
  if (err != 0) {
    /* Only fails on bad arguments; never block the loop regardless. */
    disco_log(conn->zk->loop, DISCO_LOG_ERROR, "zookeeper",
              "cannot schedule zookeeper_close: %s", uv_strerror(err));
  }
}

/* ------------------------------------------------------------- backoff */

static uint64_t disco__zk_random(disco_zk_t *zk) {
  /* xorshift64: jitter only, no need for quality. */
  zk->rng ^= zk->rng << 13;
  zk->rng ^= zk->rng >> 7;
  zk->rng ^= zk->rng << 17;
  return zk->rng;
}

static void disco__zk_timer_cb(uv_timer_t *timer) {
  disco_zk_t *zk;
  int err;

  zk = disco__container_of(timer, disco_zk_t, timer);
  if (zk->closing || zk->conn != NULL)
    return;
  err = disco__zk_conn_open(zk);
  if (err != 0) {
    disco_log(zk->loop, DISCO_LOG_ERROR, "zookeeper",
              "cannot create a ZooKeeper handle: %s", disco_strerror(err));
    disco__zk_schedule(zk);
    return;
  }
  zk->session_id = 0;
  zk->state = DISCO_ZK_EXPIRED; /* so that CONNECTING is reported */
  disco__zk_set_state(zk, DISCO_ZK_CONNECTING);
}

/* Loop thread: a new handle after min * 2^attempt ms (capped at max), with
 * the delay drawn from its upper half so that clients spread out. */
static void disco__zk_schedule(disco_zk_t *zk) {
  uint64_t delay;
  unsigned shift;

  shift = zk->attempt < 20 ? zk->attempt : 20;
  delay = (uint64_t)zk->min_backoff_ms << shift;
  if (delay > (uint64_t)zk->max_backoff_ms)
    delay = (uint64_t)zk->max_backoff_ms;
  delay = delay / 2 + disco__zk_random(zk) % (delay / 2 + 1);
  zk->attempt++;
  uv_timer_start(&zk->timer, disco__zk_timer_cb, delay, 0);
}

/* ---------------------------------------------------------------- close */

static void disco__zk_queue_close_cb(disco_queue_t *queue, void *data) {
  disco_zk_t *zk;

  (void)queue;
  zk = data;
  zk->queue = NULL;
  zk->pending--;
  disco__zk_maybe_finish(zk);
}

static void disco__zk_timer_close_cb(uv_handle_t *handle) {
  disco_zk_t *zk;

  zk = disco__container_of((uv_timer_t *)handle, disco_zk_t, timer);
  zk->pending--;
  disco__zk_maybe_finish(zk);
}

/* Loop thread. Once every conn has closed, closes the queue (which cancels
 * what it still holds: those complete with DISCO_ECLOSED), then frees. */
static void disco__zk_maybe_finish(disco_zk_t *zk) {
  if (!zk->closing)
    return;
  if (zk->pending == 1 && zk->queue != NULL) {
    /* Only the queue is left. */
    disco_queue_close(zk->queue);
    return;
  }
  if (zk->pending != 0)
    return;
  disco__zk_log_route_remove(zk->loop);
  if (zk->init_failed) {
    free(zk->hosts);
    free(zk->auth);
    free(zk);
    return;
  }
  disco__handle_unregister(&zk->handle);
  disco__zk_set_state(zk, DISCO_ZK_CLOSED);
  if (zk->close_cb != NULL)
    zk->close_cb(zk, zk->data);
  free(zk->hosts);
  free(zk->auth);
  free(zk);
}

void disco_zk_close(disco_zk_t *zk) {
  struct disco__list *node;
  struct disco__list *next;

  if (zk == NULL || zk->closing)
    return;
  zk->closing = 1;
  zk->conn = NULL;
  /* Owners of handles on this session close them now, while it is still
   * there; their requests in flight complete during the close. */
  disco__zk_notify_listeners(zk, DISCO_ZK_CLOSED);
  if (!uv_is_closing((uv_handle_t *)&zk->timer))
    uv_close((uv_handle_t *)&zk->timer, disco__zk_timer_close_cb);
  for (node = zk->conns.next; node != &zk->conns; node = next) {
    next = node->next;
    disco__zk_conn_close(disco__container_of(node, disco__zk_conn_t, link));
  }
  disco__zk_maybe_finish(zk);
}

static void disco__zk_handle_close(disco__handle_t *handle) {
  disco_zk_close(disco__container_of(handle, disco_zk_t, handle));
}

/* ------------------------------------------------------------------ new */

int disco_zk_new(disco_loop_t *loop, const disco_zk_options_t *opts,
                 disco_zk_state_cb state_cb, disco_handle_close_cb close_cb,
                 void *data, disco_zk_t **out) {
  disco_zk_t *zk;
  int err;

  if (loop == NULL || opts == NULL || out == NULL)
    return DISCO_EINVAL;
  if (!disco__zk_hosts_valid(opts->hosts) || opts->session_timeout_ms < 0 ||
      opts->min_backoff_ms < 0 || opts->max_backoff_ms < 0)
    return DISCO_EINVAL;
  if (opts->acl != DISCO_ZK_ACL_OPEN && opts->acl != DISCO_ZK_ACL_CREATOR_ALL)
    return DISCO_EINVAL;
  if (opts->auth != NULL && strchr(opts->auth, ':') == NULL)
    return DISCO_EINVAL;
  if (opts->acl == DISCO_ZK_ACL_CREATOR_ALL && opts->auth == NULL)
    return DISCO_EINVAL;
  if (opts->session_id != 0 && opts->session_passwd == NULL)
    return DISCO_EINVAL;
  if (loop->closing != DISCO__LOOP_OPEN)
    return DISCO_ECLOSED;
  uv_once(&disco__zk_once, disco__zk_init_once);

  zk = calloc(1, sizeof(*zk));
  if (zk == NULL)
    return DISCO_ENOMEM;
  zk->loop = loop;
  zk->hosts = strdup(opts->hosts);
  zk->auth = opts->auth != NULL ? strdup(opts->auth) : NULL;
  if (zk->hosts == NULL || (opts->auth != NULL && zk->auth == NULL)) {
    err = DISCO_ENOMEM;
    goto fail;
  }
  zk->session_timeout_ms = opts->session_timeout_ms > 0
                               ? opts->session_timeout_ms
                               : DISCO__ZK_DEFAULT_TIMEOUT_MS;
  zk->acl = opts->acl;
  zk->min_backoff_ms = opts->min_backoff_ms > 0
                           ? opts->min_backoff_ms
                           : DISCO__ZK_DEFAULT_MIN_BACKOFF_MS;
  zk->max_backoff_ms = opts->max_backoff_ms > 0
                           ? opts->max_backoff_ms
                           : DISCO__ZK_DEFAULT_MAX_BACKOFF_MS;
  if (zk->max_backoff_ms < zk->min_backoff_ms)
    zk->max_backoff_ms = zk->min_backoff_ms;
  zk->join_id = opts->session_id;
  if (opts->session_id != 0)
    memcpy(zk->join_passwd, opts->session_passwd, sizeof(zk->join_passwd));
  zk->state = DISCO_ZK_CONNECTING;
  zk->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)zk;
  if (zk->rng == 0)
    zk->rng = 0x9e3779b97f4a7c15ULL;
  zk->state_cb = state_cb;
  zk->close_cb = close_cb;
  zk->data = data;
  disco__list_init(&zk->conns);
  disco__list_init(&zk->requests);
  disco__list_init(&zk->listeners);

  err = disco_queue_new(loop, disco__zk_queue_close_cb, zk, &zk->queue);
  if (err != 0)
    goto fail;
  uv_timer_init(&loop->uv, &zk->timer);
  zk->pending = 2; /* the timer and the queue; each conn adds one */
  disco__zk_log_route_add(loop);
  err = disco__zk_conn_open(zk);
  if (err != 0) {
    /* Nothing was pushed (no conn exists), but the queue and the timer
     * close asynchronously: the zk is freed, silently, after them. */
    zk->init_failed = 1;
    zk->closing = 1;
    uv_close((uv_handle_t *)&zk->timer, disco__zk_timer_close_cb);
    disco_queue_close(zk->queue);
    return err;
  }
  disco__handle_register(loop, &zk->handle, disco__zk_handle_close);
  *out = zk;
  return 0;

fail:
  free(zk->hosts);
  free(zk->auth);
  free(zk);
  return err;
}

/* ------------------------------------------------------------ accessors */

disco_zk_state_t disco_zk_state(const disco_zk_t *zk) {
  return zk->closing ? DISCO_ZK_CLOSED : zk->state;
}

uint64_t disco_zk_generation(const disco_zk_t *zk) {
  return zk->generation;
}

int64_t disco_zk_session_id(const disco_zk_t *zk) {
  return zk->session_id;
}

void *disco_zk_data(const disco_zk_t *zk) {
  return zk->data;
}

int disco_zk_debug_session(disco_zk_t *zk, int64_t *id, char *passwd,
                           size_t *passwd_len) {
  if (zk == NULL || id == NULL || passwd == NULL || passwd_len == NULL)
    return DISCO_EINVAL;
  if (zk->closing)
    return DISCO_ECLOSED;
  if (zk->session_id == 0)
    return DISCO_EAGAIN;
  *id = zk->session_id;
  memcpy(passwd, zk->passwd, DISCO_ZK_PASSWD_LEN);
  *passwd_len = DISCO_ZK_PASSWD_LEN;
  return 0;
}

struct ACL_vector *disco__zk_acl(disco_zk_t *zk) {
  return zk->acl == DISCO_ZK_ACL_CREATOR_ALL ? &ZOO_CREATOR_ALL_ACL
                                             : &ZOO_OPEN_ACL_UNSAFE;
}

int disco__zk_usable(disco_zk_t *zk) {
  return !zk->closing && zk->conn != NULL;
}
