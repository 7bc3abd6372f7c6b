/*
 * The HTTP/1.1 client: a pool of keep-alive connections to one address,
 * a FIFO queue of requests waiting for one, and the life of a request
 * (its bytes laid out by http_client_request.c, written, its response
 * parsed by http_client_response.c, delivered).
 *
 * A request lives in client->reqs from request() to its end, and in
 * client->queue while it waits. dispatch() hands the head of the queue to
 * an idle connection, or opens a new one while under max_connections; a
 * connection being opened is bound to its request from the start, so a
 * failed connect fails that request. Each connection has one timer which
 * is, by turns, the connect timeout, the read timeout (restarted by every
 * byte that comes) and the idle timeout. One client timer serves every
 * request's total deadline (armed at the earliest), one more kicks
 * dispatch() on the next loop iteration, so that request() never runs a
 * callback itself.
 *
 * Callbacks of the owner run only outside http_parser_execute(): after
 * each read the parser has stored what came, then deliver() hands out
 * headers, data and the end. A callback may cancel the request or close
 * the client; a request is therefore freed only when no callback of its
 * own is running (in_cb), and delivery stops as soon as the request is no
 * longer live.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_client_internal.h"

#define DISCO__HC_COMPONENT "http-client"
#define DISCO__HC_READ_SIZE 16384
#define DISCO__HC_MAX_SPLIT 8

enum {
  DISCO__HC_TIMER_NONE,
  DISCO__HC_TIMER_CONNECT,
  DISCO__HC_TIMER_READ,
  DISCO__HC_TIMER_IDLE
};

enum { DISCO__HC_LIVE, DISCO__HC_DONE, DISCO__HC_CANCELED };

typedef struct disco__hcconn_s disco__hcconn_t;

struct disco_http_creq_s {
  struct disco__list link;  /* in client->reqs while live */
  struct disco__list qlink; /* in client->queue while waiting */
  disco_http_client_t *client;
  disco__hcconn_t *conn; /* while on a connection */
  char *out;             /* the request's bytes, kept for a resend */
  size_t out_len;
  int head_only;
  uint64_t deadline;        /* loop time; UINT64_MAX: none */
  uint64_t read_timeout_ms; /* 0: none */
  disco_http_headers_cb on_headers;
  disco_http_data_cb on_data;
  disco_http_done_cb on_done;
  void *arg;
  char split[DISCO__HC_MAX_SPLIT];
  size_t split_len;
  size_t scanned; /* streamed bytes already searched for the split */
  int state;
  int in_cb;         /* callbacks of this request now running */
  int retried;       /* sent again once after a stale connection */
  int fresh;         /* must go on a new connection */
  int headers_given; /* on_headers has run */
  disco__hcres_t res;
};

struct disco__hcconn_s {
  struct disco__list link; /* in client->conns until freed */
  disco_http_client_t *client;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_connect_t connect;
  disco_http_creq_t *req; /* the request on this connection, or NULL */
  int handles;            /* libuv handles not yet closed */
  int closing;
  int connected;
  int used;     /* a complete response came on it before */
  int no_reuse; /* it must close after the response */
  int timer_kind;
  char in[DISCO__HC_READ_SIZE];
};

struct disco_http_client_s {
  disco__handle_t base;
  disco_loop_t *loop;
  struct sockaddr_storage addr;
  char peer[64]; /* "127.0.0.1:2379", also the Host header */
  char name[64];
  disco_http_client_options_t opts;
  disco_handle_close_cb close_cb;
  void *data;
  struct disco__list conns;
  struct disco__list reqs;
  struct disco__list queue;
  size_t nconns; /* connections not closing */
  int conns_alive;
  uv_timer_t deadline_timer;
  uv_timer_t kick_timer;
  int timers_open;
  int closing;
  disco_http_client_stats_t stats;
};

typedef struct {
  uv_write_t req;
  char *buf;
} disco__hcwrite_t;

static void disco__hc_dispatch(disco_http_client_t *c);
static void disco__hc_arm(disco_http_client_t *c);

/* ------------------------------------------------------------ requests */

static void disco__req_maybe_free(disco_http_creq_t *req) {
  if (req->state == DISCO__HC_LIVE || req->in_cb > 0)
    return;
  disco__hcres_free(&req->res);
  free(req->out);
  free(req);
}

/* Ends a live request that is on no connection and in no queue: on_done
 * runs, then the request is freed unless one of its callbacks is still
 * running further up the stack. */
static void disco__req_end(disco_http_creq_t *req, int err,
                           const char *message) {
  disco_http_response_t view;

  disco__list_remove(&req->link);
  disco__list_remove(&req->qlink);
  req->state = DISCO__HC_DONE;
  if (req->deadline != UINT64_MAX)
    disco__hc_arm(req->client); /* a later deadline, or none */
  disco__hcres_view(&req->res, &view);
  req->in_cb++;
  req->on_done(req, err, message, &view, req->arg);
  req->in_cb--;
  disco__req_maybe_free(req);
}

/* ------------------------------------------------------- connections */

static void disco__hc_maybe_free(disco_http_client_t *c) {
  if (!c->closing || c->timers_open > 0 || c->conns_alive > 0)
    return;
  disco__handle_unregister(&c->base);
  if (c->close_cb != NULL)
    c->close_cb(c, c->data);
  free(c);
}

static void disco__conn_handle_closed(uv_handle_t *handle) {
  disco__hcconn_t *conn = handle->data;
  disco_http_client_t *c = conn->client;

  if (--conn->handles > 0)
    return;
  disco__list_remove(&conn->link);
  free(conn);
  c->conns_alive--;
  disco__hc_maybe_free(c);
}

/* Closes a connection that no request is on any more. */
static void disco__conn_close(disco__hcconn_t *conn) {
  if (conn->closing)
    return;
  conn->closing = 1;
  conn->client->nconns--;
  uv_close((uv_handle_t *)&conn->tcp, disco__conn_handle_closed);
  uv_close((uv_handle_t *)&conn->timer, disco__conn_handle_closed);
}

/* Takes the request off its connection, which closes. */
static disco_http_creq_t *disco__conn_detach(disco__hcconn_t *conn) {
  disco_http_creq_t *req = conn->req;

  conn->req = NULL;
  if (req != NULL) {
    req->conn = NULL;
    conn->client->stats.active--;
  }
  disco__conn_close(conn);
  return req;
}

/* Ends the connection's request with an error; the connection closes. */
static void disco__conn_fail(disco__hcconn_t *conn, int err, const char *why) {
  disco_http_client_t *c = conn->client;
  disco_http_creq_t *req = disco__conn_detach(conn);

  if (req == NULL)
    return;
  disco_log(c->loop, DISCO_LOG_DEBUG, DISCO__HC_COMPONENT, "%s: %s: %s: %s",
            c->name, c->peer, disco_err_name(err), why);
  disco__req_end(req, err, why);
  disco__hc_dispatch(c);
}

static void disco__conn_timer_cb(uv_timer_t *timer);

static void disco__conn_timer(disco__hcconn_t *conn, int kind) {
  disco_http_client_t *c = conn->client;
  uint64_t ms = 0;

  conn->timer_kind = kind;
  if (kind == DISCO__HC_TIMER_CONNECT)
    ms = c->opts.connect_timeout_ms;
  else if (kind == DISCO__HC_TIMER_READ)
    ms = conn->req != NULL ? conn->req->read_timeout_ms : 0;
  else if (kind == DISCO__HC_TIMER_IDLE)
    ms = c->opts.idle_timeout_ms;
  if (ms == 0)
    uv_timer_stop(&conn->timer);
  else
    uv_timer_start(&conn->timer, disco__conn_timer_cb, ms, 0);
}

static void disco__conn_timer_cb(uv_timer_t *timer) {
  disco__hcconn_t *conn = timer->data;
  disco_http_client_t *c = conn->client;
  char why[128];

  if (conn->timer_kind == DISCO__HC_TIMER_READ && conn->req == NULL)
    return;
  if (conn->timer_kind == DISCO__HC_TIMER_IDLE) {
    disco__conn_close(conn);
  } else if (conn->timer_kind == DISCO__HC_TIMER_CONNECT) {
    snprintf(why, sizeof(why), "connect to %s: no answer within %llu ms",
             c->peer, (unsigned long long)c->opts.connect_timeout_ms);
    disco__conn_fail(conn, DISCO_ETIMEDOUT, why);
  } else if (conn->timer_kind == DISCO__HC_TIMER_READ) {
    snprintf(why, sizeof(why), "%s: no response byte within %llu ms", c->peer,
             (unsigned long long)conn->req->read_timeout_ms);
    disco__conn_fail(conn, DISCO_ETIMEDOUT, why);
  }
}

/* An idle pooled connection waits for the next request without keeping
 * the loop alive: only requests do, so that a script whose requests are
 * all answered can end. */
static void disco__conn_idle(disco__hcconn_t *conn) {
  disco__conn_timer(conn, DISCO__HC_TIMER_IDLE);
  uv_unref((uv_handle_t *)&conn->tcp);
  uv_unref((uv_handle_t *)&conn->timer);
}

static void disco__conn_write_cb(uv_write_t *req, int status) {
  disco__hcwrite_t *w = (disco__hcwrite_t *)req;

  /* A failed write shows as a failed read (reset or EOF) too, and that
   * path knows whether the request may go again. */
  (void)status;
  free(w->buf);
  free(w);
}

static void disco__conn_broken(disco__hcconn_t *conn, int uv_err);

/* Puts the request on the connection and writes it. */
static void disco__conn_send(disco__hcconn_t *conn, disco_http_creq_t *req) {
  disco_http_client_t *c = conn->client;
  disco__hcwrite_t *w;
  uv_buf_t b;
  int err;

  conn->req = req;
  req->conn = conn;
  c->stats.active++;
  uv_ref((uv_handle_t *)&conn->tcp);
  uv_ref((uv_handle_t *)&conn->timer);
  disco__hcres_reset(&req->res, c->opts.max_header_bytes,
                     c->opts.max_body_bytes, req->on_data != NULL,
                     req->head_only);
  req->scanned = 0;
  if (conn->used)
    c->stats.reused++;
  if (!conn->connected)
    return; /* sent once connected */
  w = malloc(sizeof(*w));
  if (w != NULL)
    w->buf = malloc(req->out_len);
  if (w == NULL || w->buf == NULL) {
    free(w);
    disco__conn_fail(conn, DISCO_ENOMEM, "out of memory");
    return;
  }
  memcpy(w->buf, req->out, req->out_len);
  b = uv_buf_init(w->buf, (unsigned int)req->out_len);
  err =
      uv_write(&w->req, (uv_stream_t *)&conn->tcp, &b, 1, disco__conn_write_cb);
  if (err != 0) {
    free(w->buf);
    free(w);
    disco__conn_broken(conn, err);
    return;
  }
  disco__conn_timer(conn, DISCO__HC_TIMER_READ);
}

/* The connection ended under its request (EOF, reset, failed write): a
 * request on a reused connection that had no byte of its response yet
 * goes again, once, on a new connection; others fail. */
static void disco__conn_broken(disco__hcconn_t *conn, int uv_err) {
  disco_http_client_t *c = conn->client;
  disco_http_creq_t *req = conn->req;
  const char *why;
  char msg[160];

  if (req == NULL) {
    disco__conn_close(conn);
    return;
  }
  if (!req->res.got_bytes && conn->used && !req->retried) {
    disco__conn_detach(conn);
    req->retried = 1;
    req->fresh = 1;
    c->stats.retried++;
    disco_log(c->loop, DISCO_LOG_DEBUG, DISCO__HC_COMPONENT,
              "%s: %s: pooled connection closed; sending again", c->name,
              c->peer);
    /* First in line again. */
    req->qlink.next = c->queue.next;
    req->qlink.prev = &c->queue;
    c->queue.next->prev = &req->qlink;
    c->queue.next = &req->qlink;
    disco__hc_dispatch(c);
    return;
  }
  why = !req->res.got_bytes      ? "closed before the response"
        : !req->res.headers_done ? "closed mid-headers"
                                 : "closed mid-body";
  if (uv_err == UV_EOF) {
    disco__conn_fail(conn, DISCO_ECONNRESET, why);
    return;
  }
  snprintf(msg, sizeof(msg), "%s (%s)", why, uv_strerror(uv_err));
  disco__conn_fail(conn,
                   uv_err == UV_ECONNRESET || uv_err == UV_EPIPE
                       ? DISCO_ECONNRESET
                       : disco_translate_uv_error(uv_err),
                   msg);
}

/* ----------------------------------------------------------- delivery */

/* Whether the request is still on this connection after a callback. */
static int disco__still_on(disco__hcconn_t *conn, disco_http_creq_t *req) {
  return req->state == DISCO__HC_LIVE && conn->req == req && !conn->closing;
}

/* Calls on_data; 0 while the request stays live. */
static int disco__deliver_data(disco_http_creq_t *req, const char *data,
                               size_t len) {
  req->in_cb++;
  req->on_data(req, data, len, req->arg);
  req->in_cb--;
  if (req->state != DISCO__HC_LIVE) {
    disco__req_maybe_free(req);
    return -1;
  }
  return 0;
}

static const char *disco__find(const char *hay, size_t len, const char *needle,
                               size_t nlen) {
  size_t i;

  if (len < nlen)
    return NULL; /* also when hay is NULL (nothing buffered yet) */
  if (nlen == 1)
    return memchr(hay, needle[0], len);
  for (i = 0; i + nlen <= len; i++)
    if (hay[i] == needle[0] && memcmp(hay + i, needle, nlen) == 0)
      return hay + i;
  return NULL;
}

/* Hands out the streamed bytes: every complete record, or all of them
 * without a split; at the end of the body also the last record. 0 while
 * the request stays live on the connection. */
static int disco__deliver_stream(disco__hcconn_t *conn, disco_http_creq_t *req,
                                 int at_end) {
  disco__hcres_t *res = &req->res;
  size_t start = 0;
  size_t max = conn->client->opts.max_body_bytes;

  if (req->split_len == 0) {
    if (res->body_len == 0)
      return 0;
    /* The buffer is reused for the next read only after the callback. */
    if (disco__deliver_data(req, res->body, res->body_len) != 0)
      return -1;
    res->body_len = 0;
    return disco__still_on(conn, req) ? 0 : -1;
  }
  while (res->body_len > start) {
    size_t from = req->scanned > start ? req->scanned : start;
    const char *hit;
    size_t len;
    if (from > start + req->split_len - 1)
      from -= req->split_len - 1; /* a delimiter across reads */
    else
      from = start;
    hit = disco__find(res->body + from, res->body_len - from, req->split,
                      req->split_len);
    if (hit == NULL)
      break;
    len = (size_t)(hit - (res->body + start));
    if (len > max) {
      disco__conn_fail(conn, DISCO_EMSGSIZE, "record over max_body_bytes");
      return -1;
    }
    if (disco__deliver_data(req, res->body + start, len) != 0 ||
        !disco__still_on(conn, req))
      return -1;
    start += len + req->split_len;
    req->scanned = start;
  }
  if (start > 0) {
    memmove(res->body, res->body + start, res->body_len - start);
    res->body_len -= start;
  }
  req->scanned = res->body_len;
  if (res->body_len > max) {
    disco__conn_fail(conn, DISCO_EMSGSIZE, "record over max_body_bytes");
    return -1;
  }
  if (at_end && res->body_len > 0) {
    size_t len = res->body_len;
    res->body_len = 0;
    if (disco__deliver_data(req, res->body, len) != 0 ||
        !disco__still_on(conn, req))
      return -1;
  }
  return 0;
}

/* The response is complete: the connection goes back to the pool (or
 * closes), then on_done runs. */
static void disco__conn_complete(disco__hcconn_t *conn,
                                 disco_http_creq_t *req) {
  disco_http_client_t *c = conn->client;
  int keep = !conn->no_reuse && !c->closing &&
             http_should_keep_alive(&req->res.parser) &&
             !req->res.parser.upgrade;

  conn->req = NULL;
  req->conn = NULL;
  c->stats.active--;
  if (keep) {
    conn->used = 1;
    disco__conn_idle(conn);
  } else {
    disco__conn_close(conn);
  }
  disco__req_end(req, 0, NULL);
  disco__hc_dispatch(c);
}

/* Hands out what the parser stored: headers, data, the end. */
static void disco__conn_deliver(disco__hcconn_t *conn, disco_http_creq_t *req) {
  disco__hcres_t *res = &req->res;

  if (res->headers_done && !req->headers_given) {
    req->headers_given = 1;
    if (req->on_headers != NULL) {
      disco_http_response_t view;
      disco__hcres_view(res, &view);
      req->in_cb++;
      req->on_headers(req, &view, req->arg);
      req->in_cb--;
      if (req->state != DISCO__HC_LIVE) {
        disco__req_maybe_free(req);
        return;
      }
      if (!disco__still_on(conn, req))
        return;
    }
  }
  if (req->on_data != NULL &&
      disco__deliver_stream(conn, req, res->complete) != 0)
    return;
  if (res->complete)
    disco__conn_complete(conn, req);
}

/* Runs the parser over what came (len 0: the server's EOF), then
 * delivers. */
static void disco__conn_parse(disco__hcconn_t *conn, const char *data,
                              size_t len) {
  disco_http_creq_t *req = conn->req;
  disco__hcres_t *res = &req->res;
  size_t used;
  enum http_errno e;
  char why[160];

  used = http_parser_execute(&res->parser, &disco__hcres_settings, data, len);
  e = HTTP_PARSER_ERRNO(&res->parser);
  if (res->err != 0) {
    disco__conn_fail(conn, res->err, res->why);
    return;
  }
  if (e == HPE_HEADER_OVERFLOW) {
    disco__conn_fail(conn, DISCO_EMSGSIZE,
                     "headers over http-parser's own limit");
    return;
  }
  if (e != HPE_OK && e != HPE_PAUSED) {
    snprintf(why, sizeof(why), "%s (%s)", http_errno_name(e),
             http_errno_description(e));
    disco__conn_fail(conn, DISCO_EPROTO, why);
    return;
  }
  if (res->complete && used < len)
    conn->no_reuse = 1; /* bytes nobody asked for */
  disco__conn_deliver(conn, req);
}

static void disco__conn_alloc_cb(uv_handle_t *handle, size_t size,
                                 uv_buf_t *buf) {
  disco__hcconn_t *conn = handle->data;

  (void)size;
  *buf = uv_buf_init(conn->in, sizeof(conn->in));
}

static void disco__conn_read_cb(uv_stream_t *stream, ssize_t nread,
                                const uv_buf_t *buf) {
  disco__hcconn_t *conn = stream->data;
  disco_http_creq_t *req = conn->req;

  (void)buf;
  if (nread == 0 || conn->closing)
    return;
  if (req == NULL) {
    /* Idle: the server closed it (keep-alive timeout) or talks unasked. */
    disco__conn_close(conn);
    return;
  }
  if (nread < 0) {
    if (nread == UV_EOF && req->res.headers_done) {
      /* The end of a body that runs until the close, maybe; anything else
       * cut short is the close's fault, not a protocol error. */
      conn->no_reuse = 1;
      http_parser_execute(&req->res.parser, &disco__hcres_settings, NULL, 0);
      if (req->res.complete && req->res.err == 0) {
        disco__conn_deliver(conn, req);
        return;
      }
    }
    disco__conn_broken(conn, (int)nread);
    return;
  }
  req->res.got_bytes = 1;
  disco__conn_timer(conn, DISCO__HC_TIMER_READ);
  disco__conn_parse(conn, conn->in, (size_t)nread);
}

static void disco__conn_connect_cb(uv_connect_t *creq, int status) {
  disco__hcconn_t *conn = creq->data;
  disco_http_client_t *c = conn->client;
  disco_http_creq_t *req;
  char why[160];

  if (conn->closing)
    return;
  if (status == 0)
    status = uv_read_start((uv_stream_t *)&conn->tcp, disco__conn_alloc_cb,
                           disco__conn_read_cb);
  if (status != 0) {
    snprintf(why, sizeof(why), "connect to %s: %s", c->peer,
             uv_strerror(status));
    disco__conn_fail(conn, disco_translate_uv_error(status), why);
    return;
  }
  conn->connected = 1;
  uv_tcp_nodelay(&conn->tcp, 1);
  req = conn->req;
  if (req != NULL) {
    conn->req = NULL;
    c->stats.active--;
    disco__conn_send(conn, req);
  } else {
    disco__conn_idle(conn);
    disco__hc_dispatch(c);
  }
}

/* Opens a connection for req (off the queue); on failure req ends. */
static void disco__conn_open(disco_http_client_t *c, disco_http_creq_t *req) {
  disco__hcconn_t *conn = calloc(1, sizeof(*conn));
  char why[160];
  int err;

  if (conn == NULL) {
    disco__req_end(req, DISCO_ENOMEM, "out of memory");
    return;
  }
  conn->client = c;
  uv_tcp_init(&c->loop->uv, &conn->tcp);
  uv_timer_init(&c->loop->uv, &conn->timer);
  conn->tcp.data = conn;
  conn->timer.data = conn;
  conn->connect.data = conn;
  conn->handles = 2;
  disco__list_insert_tail(&c->conns, &conn->link);
  c->conns_alive++;
  c->nconns++;
  c->stats.connects++;
  disco__conn_send(conn, req);
  err =
      uv_tcp_connect(&conn->connect, &conn->tcp,
                     (const struct sockaddr *)&c->addr, disco__conn_connect_cb);
  if (err != 0) {
    snprintf(why, sizeof(why), "connect to %s: %s", c->peer, uv_strerror(err));
    disco__conn_fail(conn, disco_translate_uv_error(err), why);
    return;
  }
  disco__conn_timer(conn, DISCO__HC_TIMER_CONNECT);
}

/* ------------------------------------------------------------- client */

static disco__hcconn_t *disco__hc_idle(disco_http_client_t *c) {
  struct disco__list *it;

  for (it = c->conns.next; it != &c->conns; it = it->next) {
    disco__hcconn_t *conn = disco__container_of(it, disco__hcconn_t, link);
    if (!conn->closing && conn->connected && conn->req == NULL)
      return conn;
  }
  return NULL;
}

/* Gives waiting requests a connection, in order, while there is one. */
static void disco__hc_dispatch(disco_http_client_t *c) {
  while (!c->closing && c->queue.next != &c->queue) {
    disco_http_creq_t *req =
        disco__container_of(c->queue.next, disco_http_creq_t, qlink);
    disco__hcconn_t *idle = disco__hc_idle(c);

    if (idle != NULL && !req->fresh) {
      disco__list_remove(&req->qlink);
      disco__conn_send(idle, req);
      continue;
    }
    if (c->nconns >= c->opts.max_connections) {
      if (idle == NULL)
        break;                 /* wait for a connection to come free */
      disco__conn_close(idle); /* make room for a fresh one */
    }
    disco__list_remove(&req->qlink);
    disco__conn_open(c, req);
  }
}

static void disco__hc_kick_cb(uv_timer_t *timer) {
  disco__hc_dispatch(timer->data);
}

static void disco__hc_deadline_cb(uv_timer_t *timer) {
  disco_http_client_t *c = timer->data;
  uint64_t now = uv_now(&c->loop->uv);
  struct disco__list expired;
  struct disco__list *it;
  struct disco__list *next;
  char why[128];

  disco__list_init(&expired);
  for (it = c->reqs.next; it != &c->reqs; it = next) {
    disco_http_creq_t *req = disco__container_of(it, disco_http_creq_t, link);
    next = it->next;
    if (req->deadline <= now) {
      disco__list_remove(&req->link);
      disco__list_insert_tail(&expired, &req->link);
    }
  }
  /* A callback may cancel or end requests still in `expired`: each is
   * taken off the list before its own end. */
  while (expired.next != &expired) {
    disco_http_creq_t *req =
        disco__container_of(expired.next, disco_http_creq_t, link);
    disco__list_remove(&req->link);
    disco__list_remove(&req->qlink);
    if (req->conn != NULL)
      disco__conn_detach(req->conn);
    snprintf(why, sizeof(why), "%s: request not complete within its timeout",
             c->peer);
    disco__req_end(req, DISCO_ETIMEDOUT, why);
  }
  disco__hc_arm(c);
  disco__hc_dispatch(c);
}

/* Arms the deadline timer at the earliest deadline, or stops it. */
static void disco__hc_arm(disco_http_client_t *c) {
  struct disco__list *it;
  uint64_t now = uv_now(&c->loop->uv);
  uint64_t first = UINT64_MAX;

  if (c->closing)
    return;
  for (it = c->reqs.next; it != &c->reqs; it = it->next) {
    disco_http_creq_t *req = disco__container_of(it, disco_http_creq_t, link);
    if (req->deadline < first)
      first = req->deadline;
  }
  if (first == UINT64_MAX)
    uv_timer_stop(&c->deadline_timer);
  else
    uv_timer_start(&c->deadline_timer, disco__hc_deadline_cb,
                   first > now ? first - now : 0, 0);
}

static void disco__hc_timer_closed(uv_handle_t *handle) {
  disco_http_client_t *c = handle->data;

  c->timers_open--;
  disco__hc_maybe_free(c);
}

static void disco__hc_close_from_loop(disco__handle_t *base) {
  disco_http_client_close(disco__container_of(base, disco_http_client_t, base));
}

void disco_http_client_options_init(disco_http_client_options_t *opts) {
  opts->connect_timeout_ms = 3000;
  opts->read_timeout_ms = 10000;
  opts->idle_timeout_ms = 30000;
  opts->max_connections = 8;
  opts->max_header_bytes = 16384;
  opts->max_body_bytes = 8388608;
  opts->name = NULL;
}

int disco_http_client_new(disco_loop_t *loop, const char *host, int port,
                          const disco_http_client_options_t *opts,
                          disco_handle_close_cb close_cb, void *data,
                          disco_http_client_t **out) {
  disco_http_client_t *c;

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
  disco_http_client_options_init(&c->opts);
  if (opts != NULL)
    c->opts = *opts;
  if (c->opts.max_connections == 0 || c->opts.max_header_bytes == 0 ||
      c->opts.max_body_bytes == 0 || c->opts.max_body_bytes > 0x7fffffff) {
    free(c);
    return DISCO_EINVAL;
  }
  snprintf(c->name, sizeof(c->name), "%s",
           c->opts.name != NULL ? c->opts.name : "http-client");
  c->opts.name = c->name;
  disco__sockaddr_text(&c->addr, c->peer, sizeof(c->peer));
  c->loop = loop;
  c->close_cb = close_cb;
  c->data = data;
  disco__list_init(&c->conns);
  disco__list_init(&c->reqs);
  disco__list_init(&c->queue);
  uv_timer_init(&loop->uv, &c->deadline_timer);
  uv_timer_init(&loop->uv, &c->kick_timer);
  c->deadline_timer.data = c;
  c->kick_timer.data = c;
  c->timers_open = 2;
  disco__handle_register(loop, &c->base, disco__hc_close_from_loop);
  *out = c;
  return 0;
}

int disco_http_client_request(disco_http_client_t *c,
                              const disco_http_client_request_t *r,
                              disco_http_creq_t **out) {
  const char *method;
  disco_http_creq_t *req;
  int err;

  if (c == NULL || r == NULL || r->on_done == NULL || out == NULL ||
      r->read_timeout_ms < DISCO_HTTP_NO_READ_TIMEOUT ||
      r->split_len > DISCO__HC_MAX_SPLIT ||
      (r->split_len > 0 && (r->split == NULL || r->on_data == NULL)))
    return DISCO_EINVAL;
  if (c->closing)
    return DISCO_ECLOSED;
  method = r->method != NULL ? r->method : "GET";
  req = calloc(1, sizeof(*req));
  if (req == NULL)
    return DISCO_ENOMEM;
  err = disco__hc_encode(c->peer, r, method, &req->out, &req->out_len);
  if (err != 0) {
    free(req);
    return err;
  }
  req->client = c;
  req->head_only = strcmp(method, "HEAD") == 0;
  req->deadline =
      r->timeout_ms > 0 ? uv_now(&c->loop->uv) + r->timeout_ms : UINT64_MAX;
  if (r->read_timeout_ms == 0)
    req->read_timeout_ms = c->opts.read_timeout_ms;
  else if (r->read_timeout_ms > 0)
    req->read_timeout_ms = (uint64_t)r->read_timeout_ms;
  req->on_headers = r->on_headers;
  req->on_data = r->on_data;
  req->on_done = r->on_done;
  req->arg = r->arg;
  if (r->split_len > 0)
    memcpy(req->split, r->split, r->split_len);
  req->split_len = r->split_len;
  req->state = DISCO__HC_LIVE;
  disco__list_insert_tail(&c->reqs, &req->link);
  disco__list_insert_tail(&c->queue, &req->qlink);
  c->stats.requests++;
  if (r->timeout_ms > 0)
    disco__hc_arm(c);
  if (!uv_is_active((uv_handle_t *)&c->kick_timer))
    uv_timer_start(&c->kick_timer, disco__hc_kick_cb, 0, 0);
  *out = req;
  return 0;
}

void disco_http_client_cancel(disco_http_creq_t *req) {
  if (req == NULL || req->state != DISCO__HC_LIVE)
    return;
  req->state = DISCO__HC_CANCELED;
  disco__list_remove(&req->link);
  disco__list_remove(&req->qlink);
  if (req->deadline != UINT64_MAX)
    disco__hc_arm(req->client);
  if (req->conn != NULL)
    disco__conn_detach(req->conn);
  disco__req_maybe_free(req);
}

void disco_http_client_stats(const disco_http_client_t *c,
                             disco_http_client_stats_t *stats) {
  struct disco__list *it;

  *stats = c->stats;
  stats->connections = 0;
  stats->idle = 0;
  stats->queued = 0;
  for (it = c->conns.next; it != &c->conns; it = it->next) {
    disco__hcconn_t *conn = disco__container_of(it, disco__hcconn_t, link);
    if (conn->closing)
      continue;
    stats->connections++;
    if (conn->connected && conn->req == NULL)
      stats->idle++;
  }
  for (it = c->queue.next; it != &c->queue; it = it->next)
    stats->queued++;
}

void disco_http_client_close(disco_http_client_t *c) {
  struct disco__list local;
  struct disco__list *it;
  struct disco__list *next;

  if (c == NULL || c->closing)
    return;
  c->closing = 1;
  for (it = c->conns.next; it != &c->conns; it = next) {
    next = it->next;
    disco__conn_detach(disco__container_of(it, disco__hcconn_t, link));
  }
  uv_close((uv_handle_t *)&c->deadline_timer, disco__hc_timer_closed);
  uv_close((uv_handle_t *)&c->kick_timer, disco__hc_timer_closed);
  disco__list_init(&local);
  while (c->reqs.next != &c->reqs) {
    it = c->reqs.next;
    disco__list_remove(it);
    disco__list_insert_tail(&local, it);
  }
  while (local.next != &local) {
    disco_http_creq_t *req =
        disco__container_of(local.next, disco_http_creq_t, link);
    disco__list_remove(&req->link);
    disco__req_end(req, DISCO_ECANCELED, "client closed");
  }
}

void *disco_http_client_data(const disco_http_client_t *client) {
  return client->data;
}
