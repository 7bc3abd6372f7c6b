/*
 * The dubbo client: one connection to one address, made lazily and reused,
 * with calls matched to responses by request id.
 *
 * Calls live in two places: `calls`, every call in the order it was made
 * (for flushing after a connect, for timeouts and for failing them all),
 * and a small hash of lists keyed by request id (for matching responses).
 * A call's frame is encoded when the call is made and handed to libuv once
 * connected. One timer serves every call's deadline (armed at the earliest
 * one), one sends heartbeats, one waits out the reconnect backoff.
 *
 * Every callback runs with the call already unlinked, and every loop over
 * the calls first moves them to a local list, so a callback may make new
 * calls or close the client.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dubbo_internal.h"

#define DISCO__CLIENT_COMPONENT "dubbo-client"
#define DISCO__BUCKETS 64

typedef struct disco__cconn_s disco__cconn_t;

typedef struct {
  struct disco__list link;   /* in client->calls */
  struct disco__list bucket; /* in client->buckets[id % DISCO__BUCKETS] */
  int64_t id;
  uint64_t deadline;
  char *frame; /* not yet written; NULL once handed to libuv */
  size_t frame_len;
  int heartbeat;
  disco_dubbo_call_cb cb;
  void *arg;
} disco__dcall_t;

struct disco__cconn_s {
  uv_tcp_t tcp;
  uv_connect_t connect;
  disco_dubbo_client_t *client;
  disco_dubbo_framer_t *framer;
  int connected;
};

struct disco_dubbo_client_s {
  disco__handle_t base;
  disco_loop_t *loop;
  struct sockaddr_storage addr;
  char peer[80];
  disco_dubbo_client_options_t opts;
  disco_handle_close_cb close_cb;
  void *data;
  disco__cconn_t *conn; /* the current connection, or NULL */
  int conns_alive;      /* connections not yet freed (closing ones too) */
  uv_timer_t call_timer;
  uv_timer_t hb_timer;
  uv_timer_t backoff_timer;
  int timers_open;
  struct disco__list calls;
  struct disco__list buckets[DISCO__BUCKETS];
  disco_h2_writer_t *writer;
  int64_t next_id;
  unsigned failures; /* consecutive failed connects */
  uint64_t retry_at; /* no connect before this loop time */
  uint64_t last_read;
  int closing;
};

typedef struct {
  uv_write_t req;
  char *buf;
} disco__cwrite_t;

static void disco__client_connect(disco_dubbo_client_t *c);
static void disco__client_timeout_cb(uv_timer_t *timer);

static void disco__client_maybe_free(disco_dubbo_client_t *c) {
  if (!c->closing || c->timers_open > 0 || c->conns_alive > 0)
    return;
  disco__handle_unregister(&c->base);
  if (c->close_cb != NULL)
    c->close_cb(c, c->data);
  disco_h2_writer_free(c->writer);
  free(c);
}

static void disco__client_timer_closed(uv_handle_t *handle) {
  disco_dubbo_client_t *c = handle->data;

  c->timers_open--;
  disco__client_maybe_free(c);
}

static void disco__cconn_closed(uv_handle_t *handle) {
  disco__cconn_t *conn = handle->data;
  disco_dubbo_client_t *c = conn->client;

  disco_dubbo_framer_free(conn->framer);
  free(conn);
  c->conns_alive--;
  disco__client_maybe_free(c);
}

static void disco__call_unlink(disco__dcall_t *call) {
  disco__list_remove(&call->link);
  disco__list_remove(&call->bucket);
}

/* Runs the callback of an unlinked call and frees it. */
static void disco__call_complete(disco_dubbo_client_t *c, disco__dcall_t *call,
                                 const disco_dubbo_result_t *result) {
  call->cb(c, result, call->arg);
  free(call->frame);
  free(call);
}

static void disco__call_fail(disco_dubbo_client_t *c, disco__dcall_t *call,
                             int err, const char *message) {
  disco_dubbo_result_t r;

  memset(&r, 0, sizeof(r));
  r.status = err;
  r.kind = -1;
  r.message = message;
  disco__call_complete(c, call, &r);
}

/* Fails every call; callbacks may add new calls, which are kept. */
static void disco__client_fail_all(disco_dubbo_client_t *c, int err,
                                   const char *message) {
  struct disco__list local;

  disco__list_init(&local);
  if (c->calls.next != &c->calls) {
    /* Move the whole list to `local`. */
    local.next = c->calls.next;
    local.prev = c->calls.prev;
    local.next->prev = &local;
    local.prev->next = &local;
    disco__list_init(&c->calls);
  }
  while (local.next != &local) {
    disco__dcall_t *call =
        disco__container_of(local.next, disco__dcall_t, link);
    disco__call_unlink(call);
    disco__call_fail(c, call, err, message);
  }
}

/* Arms the call timer at the earliest deadline, or stops it. */
static void disco__client_arm(disco_dubbo_client_t *c) {
  struct disco__list *it;
  uint64_t now = uv_now(&c->loop->uv);
  uint64_t first = UINT64_MAX;

  if (c->closing)
    return;
  for (it = c->calls.next; it != &c->calls; it = it->next) {
    disco__dcall_t *call = disco__container_of(it, disco__dcall_t, link);
    if (call->deadline < first)
      first = call->deadline;
  }
  if (first == UINT64_MAX)
    uv_timer_stop(&c->call_timer);
  else
    uv_timer_start(&c->call_timer, disco__client_timeout_cb,
                   first > now ? first - now : 0, 0);
}

static void disco__client_timeout_cb(uv_timer_t *timer) {
  disco_dubbo_client_t *c = timer->data;
  uint64_t now = uv_now(&c->loop->uv);
  struct disco__list expired;
  struct disco__list *it;
  struct disco__list *next;
  char msg[128];

  disco__list_init(&expired);
  for (it = c->calls.next; it != &c->calls; it = next) {
    disco__dcall_t *call = disco__container_of(it, disco__dcall_t, link);
    next = it->next;
    if (call->deadline <= now) {
      disco__call_unlink(call);
      disco__list_insert_tail(&expired, &call->link);
    }
  }
  while (expired.next != &expired) {
    disco__dcall_t *call =
        disco__container_of(expired.next, disco__dcall_t, link);
    disco__list_remove(&call->link);
    snprintf(msg, sizeof(msg), "no answer from %s in time", c->peer);
    disco__call_fail(c, call, DISCO_ETIMEDOUT, msg);
  }
  disco__client_arm(c);
}

static void disco__cconn_write_cb(uv_write_t *req, int status) {
  disco__cwrite_t *w = (disco__cwrite_t *)req;

  (void)status; /* a failed write shows as a read error or EOF too */
  free(w->buf);
  free(w);
}

/* Takes `buf` in all cases. */
static void disco__cconn_write(disco__cconn_t *conn, char *buf, size_t len) {
  disco__cwrite_t *w = malloc(sizeof(*w));
  uv_buf_t b;

  if (w == NULL) {
    free(buf);
    return; /* the call times out */
  }
  w->buf = buf;
  b = uv_buf_init(buf, (unsigned int)len);
  if (uv_write(&w->req, (uv_stream_t *)&conn->tcp, &b, 1,
               disco__cconn_write_cb) != 0) {
    free(buf);
    free(w);
  }
}

/* Writes every call not yet written, in order. */
static void disco__client_flush(disco_dubbo_client_t *c) {
  struct disco__list *it;

  for (it = c->calls.next; it != &c->calls; it = it->next) {
    disco__dcall_t *call = disco__container_of(it, disco__dcall_t, link);
    if (call->frame != NULL) {
      disco__cconn_write(c->conn, call->frame, call->frame_len);
      call->frame = NULL;
    }
  }
}

/* Drops the current connection and fails every call with `err`. */
static void disco__client_drop(disco_dubbo_client_t *c, int err,
                               const char *why) {
  disco__cconn_t *conn = c->conn;

  if (conn == NULL)
    return;
  disco_log(c->loop, err == DISCO_ECONNRESET ? DISCO_LOG_INFO : DISCO_LOG_WARN,
            DISCO__CLIENT_COMPONENT, "connection to %s closed: %s", c->peer,
            why);
  c->conn = NULL;
  uv_close((uv_handle_t *)&conn->tcp, disco__cconn_closed);
  if (!c->closing)
    uv_timer_stop(&c->hb_timer);
  disco__client_fail_all(c, err, why);
  if (!c->closing)
    disco__client_arm(c);
}

static disco__dcall_t *disco__client_find(disco_dubbo_client_t *c, int64_t id) {
  struct disco__list *head = &c->buckets[(uint64_t)id % DISCO__BUCKETS];
  struct disco__list *it;

  for (it = head->next; it != head; it = it->next) {
    disco__dcall_t *call = disco__container_of(it, disco__dcall_t, bucket);
    if (call->id == id)
      return call;
  }
  return NULL;
}

/* A response to a call (already unlinked). */
static void disco__client_response(disco_dubbo_client_t *c,
                                   disco__dcall_t *call,
                                   const disco_dubbo_frame_t *frame) {
  const disco_dubbo_header_t *h = &frame->header;
  disco_dubbo_result_t r;
  disco_dubbo_response_t resp;
  const char *why = NULL;
  int err;

  memset(&r, 0, sizeof(r));
  r.kind = -1;
  r.dubbo_status = h->status;
  if (h->status != DISCO_DUBBO_OK) {
    disco_h2_reader_t *reader = NULL;
    disco_h2_value_t *v;
    r.status = disco_dubbo_status_error(h->status);
    r.message = disco_dubbo_status_name(h->status);
    if (disco_h2_reader_new(frame->body, h->body_len, NULL, &reader) == 0 &&
        disco_h2_read(reader, &v) == 0 && v->type == DISCO_H2_STRING)
      r.message = v->u.bytes.data;
    if (r.message == NULL)
      r.message = "unknown status";
    disco__call_complete(c, call, &r);
    disco_h2_reader_free(reader);
    return;
  }
  if (call->heartbeat) {
    disco__call_complete(c, call, &r);
    return;
  }
  err =
      disco_dubbo_response_decode(frame->body, h->body_len, NULL, &resp, &why);
  if (err != 0) {
    r.status = err == DISCO_ENOMEM ? err : DISCO_EPROTO;
    r.message = why;
  } else {
    r.kind = resp.kind;
    r.value = resp.value;
    r.attachments = resp.attachments;
    r.message = resp.message;
    if (resp.kind == DISCO_DUBBO_RESPONSE_EXCEPTION ||
        resp.kind == DISCO_DUBBO_RESPONSE_EXCEPTION_ATTACHMENTS)
      r.status = DISCO_EIO;
  }
  disco__call_complete(c, call, &r);
  disco_dubbo_response_free(&resp);
}

static void disco__client_frame(disco_dubbo_client_t *c,
                                const disco_dubbo_frame_t *frame) {
  const disco_dubbo_header_t *h = &frame->header;
  disco__dcall_t *call;

  if (h->flags & DISCO_DUBBO_FLAG_REQUEST) {
    /* Servers send heartbeats to idle clients too. */
    if ((h->flags & DISCO_DUBBO_FLAG_EVENT) &&
        (h->flags & DISCO_DUBBO_FLAG_TWOWAY)) {
      char *hb = malloc(DISCO_DUBBO_HEADER_LEN + 1);
      if (hb != NULL) {
        disco_dubbo_heartbeat_encode(h->id, 1, hb);
        disco__cconn_write(c->conn, hb, DISCO_DUBBO_HEADER_LEN + 1);
      }
    }
    return;
  }
  call = disco__client_find(c, h->id);
  if (call == NULL || call->frame != NULL) {
    /* A late answer to a call that timed out, or our own heartbeat. */
    return;
  }
  disco__call_unlink(call);
  disco__client_response(c, call, frame);
}

/* The connection still wants frames while it is the client's current one
 * (a frame callback may drop it). */
static int disco__cconn_live(void *data) {
  disco__cconn_t *conn = data;
  return conn->client->conn == conn;
}

static void disco__cconn_frame(void *data, const disco_dubbo_frame_t *frame) {
  disco__cconn_t *conn = data;
  disco__client_frame(conn->client, frame);
}

static void disco__cconn_read_cb(uv_stream_t *stream, ssize_t nread,
                                 const uv_buf_t *buf) {
  disco__cconn_t *conn = stream->data;
  disco_dubbo_client_t *c = conn->client;
  char why[128];

  if (nread < 0) {
    free(buf->base);
    if (c->conn == conn)
      disco__client_drop(c, DISCO_ECONNRESET,
                         nread == UV_EOF ? "closed by the server"
                                         : uv_strerror((int)nread));
    return;
  }
  c->last_read = uv_now(&c->loop->uv);
  if (disco__dubbo_feed(conn->framer, buf->base, (size_t)nread,
                        disco__cconn_live, disco__cconn_frame, conn, why,
                        sizeof(why)) != 0)
    disco__client_drop(c, DISCO_EPROTO, why);
  free(buf->base);
}

static void disco__client_hb_cb(uv_timer_t *timer) {
  disco_dubbo_client_t *c = timer->data;
  uint64_t idle = uv_now(&c->loop->uv) - c->last_read;
  char *hb;

  if (c->conn == NULL || !c->conn->connected)
    return;
  if (idle >= 3 * c->opts.heartbeat_ms) {
    disco__client_drop(c, DISCO_ECONNRESET, "heartbeats went unanswered");
    return;
  }
  if (idle + 1 < c->opts.heartbeat_ms)
    return;
  hb = malloc(DISCO_DUBBO_HEADER_LEN + 1);
  if (hb == NULL)
    return;
  disco_dubbo_heartbeat_encode(c->next_id++, 0, hb);
  disco__cconn_write(c->conn, hb, DISCO_DUBBO_HEADER_LEN + 1);
}

static void disco__client_connect_cb(uv_connect_t *req, int status) {
  disco__cconn_t *conn = req->data;
  disco_dubbo_client_t *c = conn->client;
  uint64_t delay;
  unsigned i;
  char why[128];
  int err;

  if (c->conn != conn)
    return; /* closed before it connected */
  if (status == 0)
    status = uv_read_start((uv_stream_t *)&conn->tcp, disco__dubbo_alloc_cb,
                           disco__cconn_read_cb);
  if (status != 0) {
    err = disco_translate_uv_error(status);
    c->failures++;
    delay = c->opts.backoff_min_ms;
    for (i = 1; i < c->failures && delay < c->opts.backoff_max_ms; i++)
      delay *= 2;
    if (delay > c->opts.backoff_max_ms)
      delay = c->opts.backoff_max_ms;
    c->retry_at = uv_now(&c->loop->uv) + delay;
    snprintf(why, sizeof(why), "connect failed: %s", uv_strerror(status));
    disco__client_drop(c, err, why);
    return;
  }
  conn->connected = 1;
  c->failures = 0;
  c->retry_at = 0;
  c->last_read = uv_now(&c->loop->uv);
  uv_tcp_nodelay(&conn->tcp, 1);
  if (c->opts.heartbeat_ms > 0)
    uv_timer_start(&c->hb_timer, disco__client_hb_cb, c->opts.heartbeat_ms,
                   c->opts.heartbeat_ms);
  disco__client_flush(c);
}

static void disco__client_connect(disco_dubbo_client_t *c) {
  disco__cconn_t *conn = calloc(1, sizeof(*conn));
  int err;

  if (conn == NULL) {
    disco__client_fail_all(c, DISCO_ENOMEM, NULL);
    return;
  }
  err = disco_dubbo_framer_new(c->opts.max_frame, &conn->framer);
  if (err != 0) {
    free(conn);
    disco__client_fail_all(c, err, NULL);
    return;
  }
  conn->client = c;
  uv_tcp_init(&c->loop->uv, &conn->tcp);
  conn->tcp.data = conn;
  conn->connect.data = conn;
  c->conns_alive++;
  c->conn = conn;
  err = uv_tcp_connect(&conn->connect, &conn->tcp,
                       (const struct sockaddr *)&c->addr,
                       disco__client_connect_cb);
  if (err != 0) {
    char why[128];
    snprintf(why, sizeof(why), "connect failed: %s", uv_strerror(err));
    disco__client_drop(c, disco_translate_uv_error(err), why);
  }
}

static void disco__client_backoff_cb(uv_timer_t *timer) {
  disco_dubbo_client_t *c = timer->data;

  if (c->conn == NULL && c->calls.next != &c->calls)
    disco__client_connect(c);
}

/* Gets a call on its way: written now, or after a (re)connect. */
static void disco__client_kick(disco_dubbo_client_t *c) {
  uint64_t now = uv_now(&c->loop->uv);

  if (c->conn != NULL) {
    if (c->conn->connected)
      disco__client_flush(c);
    return;
  }
  if (now >= c->retry_at) {
    disco__client_connect(c);
  } else if (!uv_is_active((uv_handle_t *)&c->backoff_timer)) {
    uv_timer_start(&c->backoff_timer, disco__client_backoff_cb,
                   c->retry_at - now, 0);
  }
}

static void disco__client_close_from_loop(disco__handle_t *base) {
  disco_dubbo_client_close(
      disco__container_of(base, disco_dubbo_client_t, base));
}

void disco_dubbo_client_options_init(disco_dubbo_client_options_t *opts) {
  opts->timeout_ms = 5000;
  opts->heartbeat_ms = 60000;
  opts->backoff_min_ms = 100;
  opts->backoff_max_ms = 10000;
  opts->max_frame = DISCO_DUBBO_MAX_FRAME;
}

int disco_dubbo_client_new(disco_loop_t *loop, const char *host, int port,
                           const disco_dubbo_client_options_t *opts,
                           disco_handle_close_cb close_cb, void *data,
                           disco_dubbo_client_t **out) {
  disco_dubbo_client_t *c;
  int i;
  int err;

  if (loop == NULL || host == NULL || out == NULL || port <= 0 || port > 65535)
    return DISCO_EINVAL;
  if (loop->closing != DISCO__LOOP_OPEN)
    return DISCO_ECLOSED;
  c = calloc(1, sizeof(*c));
  if (c == NULL)
    return DISCO_ENOMEM;
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)&c->addr) != 0 &&
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)&c->addr) != 0) {
    free(c);
    return DISCO_EINVAL;
  }
  disco_dubbo_client_options_init(&c->opts);
  if (opts != NULL)
    c->opts = *opts;
  if (c->opts.timeout_ms == 0 || c->opts.backoff_min_ms == 0 ||
      c->opts.backoff_max_ms < c->opts.backoff_min_ms ||
      c->opts.max_frame == 0 || c->opts.max_frame > 0x7fffffff) {
    free(c);
    return DISCO_EINVAL;
  }
  err = disco_h2_writer_new(&c->writer);
  if (err != 0) {
    free(c);
    return err;
  }
  snprintf(c->peer, sizeof(c->peer), "%s:%d", host, port);
  c->loop = loop;
  c->close_cb = close_cb;
  c->data = data;
  c->next_id = 1;
  disco__list_init(&c->calls);
  for (i = 0; i < DISCO__BUCKETS; i++)
    disco__list_init(&c->buckets[i]);
  uv_timer_init(&loop->uv, &c->call_timer);
  uv_timer_init(&loop->uv, &c->hb_timer);
  uv_timer_init(&loop->uv, &c->backoff_timer);
  c->call_timer.data = c;
  c->hb_timer.data = c;
  c->backoff_timer.data = c;
  c->timers_open = 3;
  disco__handle_register(loop, &c->base, disco__client_close_from_loop);
  *out = c;
  return 0;
}

static int disco__client_add(disco_dubbo_client_t *c, char *frame,
                             size_t frame_len, int heartbeat,
                             uint64_t timeout_ms, disco_dubbo_call_cb cb,
                             void *arg, int64_t id) {
  disco__dcall_t *call = calloc(1, sizeof(*call));

  if (call == NULL) {
    free(frame);
    return DISCO_ENOMEM;
  }
  call->id = id;
  call->frame = frame;
  call->frame_len = frame_len;
  call->heartbeat = heartbeat;
  call->cb = cb;
  call->arg = arg;
  call->deadline = uv_now(&c->loop->uv) +
                   (timeout_ms != 0 ? timeout_ms : c->opts.timeout_ms);
  disco__list_insert_tail(&c->calls, &call->link);
  disco__list_insert_tail(&c->buckets[(uint64_t)id % DISCO__BUCKETS],
                          &call->bucket);
  disco__client_arm(c);
  disco__client_kick(c);
  return 0;
}

int disco_dubbo_client_call(disco_dubbo_client_t *client,
                            const disco_dubbo_call_t *call, uint64_t timeout_ms,
                            disco_dubbo_call_cb cb, void *arg) {
  char *frame;
  size_t len;
  int64_t id;
  int err;

  if (client == NULL || call == NULL || cb == NULL)
    return DISCO_EINVAL;
  if (client->closing)
    return DISCO_ECLOSED;
  id = client->next_id++;
  err = disco_dubbo_request_encode(client->writer, id, call, &frame, &len);
  if (err != 0)
    return err;
  if (len - DISCO_DUBBO_HEADER_LEN > client->opts.max_frame) {
    free(frame);
    return DISCO_E2BIG;
  }
  return disco__client_add(client, frame, len, 0, timeout_ms, cb, arg, id);
}

int disco_dubbo_client_heartbeat(disco_dubbo_client_t *client,
                                 uint64_t timeout_ms, disco_dubbo_call_cb cb,
                                 void *arg) {
  char *frame;
  int64_t id;

  if (client == NULL || cb == NULL)
    return DISCO_EINVAL;
  if (client->closing)
    return DISCO_ECLOSED;
  frame = malloc(DISCO_DUBBO_HEADER_LEN + 1);
  if (frame == NULL)
    return DISCO_ENOMEM;
  id = client->next_id++;
  disco_dubbo_heartbeat_encode(id, 0, frame);
  return disco__client_add(client, frame, DISCO_DUBBO_HEADER_LEN + 1, 1,
                           timeout_ms, cb, arg, id);
}

int disco_dubbo_client_connected(const disco_dubbo_client_t *client) {
  return client->conn != NULL && client->conn->connected;
}

void disco_dubbo_client_close(disco_dubbo_client_t *client) {
  if (client == NULL || client->closing)
    return;
  client->closing = 1;
  if (client->conn != NULL) {
    uv_close((uv_handle_t *)&client->conn->tcp, disco__cconn_closed);
    client->conn = NULL;
  }
  uv_close((uv_handle_t *)&client->call_timer, disco__client_timer_closed);
  uv_close((uv_handle_t *)&client->hb_timer, disco__client_timer_closed);
  uv_close((uv_handle_t *)&client->backoff_timer, disco__client_timer_closed);
  disco__client_fail_all(client, DISCO_ECANCELED, "client closed");
}

void *disco_dubbo_client_data(const disco_dubbo_client_t *client) {
  return client->data;
}
