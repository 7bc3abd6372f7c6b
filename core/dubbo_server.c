/*
 * The dubbo server (what disco's MetadataService runs on): a TCP listener,
 * its connections, each with a frame assembler and an idle timer.
 *
 * Every way a peer can misbehave ends in a close of that connection with a
 * log line and bounded memory: the assembler refuses a header before it
 * buffers the body, a connection that completes no frame within the idle
 * timeout is closed, a peer that does not read its replies is closed when
 * its write queue grows past a bound, and connections over the limit are
 * accepted and closed at once.
 *
 * Life cycle: closing the server closes the listener and every connection;
 * connections are freed as their two libuv handles (socket, timer) close,
 * and the server is freed once the listener and the last connection have.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dubbo_internal.h"

#define DISCO__DUBBO_COMPONENT "dubbo-server"

typedef struct disco__dconn_s disco__dconn_t;

struct disco_dubbo_server_s {
  disco__handle_t base;
  disco_loop_t *loop;
  uv_tcp_t listener;
  disco_dubbo_server_options_t opts;
  disco_dubbo_request_cb on_request;
  disco_handle_close_cb close_cb;
  void *data;
  struct disco__list conns;
  disco_dubbo_server_stats_t stats;
  disco_h2_writer_t *writer; /* scratch for replies */
  uint64_t next_conn_id;
  int port;
  int closing;
  int listener_open;
};

struct disco__dconn_s {
  struct disco__list link; /* in server->conns until freed */
  disco_dubbo_server_t *server;
  uv_tcp_t tcp;
  uv_timer_t idle;
  disco_dubbo_framer_t *framer; /* NULL for a rejected connection */
  uint64_t id;
  int handles; /* libuv handles not yet closed */
  int counted; /* included in stats.connections */
  int closing;
  char peer[64];
};

typedef struct {
  uv_write_t req;
  char *buf;
} disco__dwrite_t;

static void disco__server_maybe_free(disco_dubbo_server_t *s) {
  if (!s->closing || s->listener_open || s->conns.next != &s->conns)
    return;
  disco__handle_unregister(&s->base);
  if (s->close_cb != NULL)
    s->close_cb(s, s->data);
  disco_h2_writer_free(s->writer);
  free(s);
}

static void disco__conn_handle_closed(uv_handle_t *handle) {
  disco__dconn_t *c = handle->data;
  disco_dubbo_server_t *s = c->server;

  if (--c->handles > 0)
    return;
  disco__list_remove(&c->link);
  disco_dubbo_framer_free(c->framer);
  free(c);
  disco__server_maybe_free(s);
}

/* Idempotent. `why` is logged at `level` (NULL: nothing logged). */
static void disco__conn_close(disco__dconn_t *c, disco_log_level_t level,
                              const char *why) {
  if (c->closing)
    return;
  c->closing = 1;
  if (why != NULL)
    disco_log(c->server->loop, level, DISCO__DUBBO_COMPONENT,
              "closing connection %llu from %s: %s", (unsigned long long)c->id,
              c->peer, why);
  if (c->counted)
    c->server->stats.connections--;
  uv_close((uv_handle_t *)&c->tcp, disco__conn_handle_closed);
  uv_close((uv_handle_t *)&c->idle, disco__conn_handle_closed);
}

static void disco__conn_write_cb(uv_write_t *req, int status) {
  disco__dwrite_t *w = (disco__dwrite_t *)req;
  disco__dconn_t *c = req->handle->data;

  free(w->buf);
  free(w);
  if (status != 0 && status != UV_ECANCELED)
    disco__conn_close(c, DISCO_LOG_DEBUG, uv_strerror(status));
}

/* Takes `buf` (malloc'ed) in all cases. */
static int disco__conn_write(disco__dconn_t *c, char *buf, size_t len) {
  disco__dwrite_t *w;
  uv_buf_t b;
  int err;

  if (c->closing) {
    free(buf);
    return 0;
  }
  /* A peer that does not read its replies must not make us buffer without
   * bound. */
  if (c->tcp.write_queue_size > 2 * c->server->opts.max_frame) {
    free(buf);
    disco__conn_close(c, DISCO_LOG_WARN, "peer is not reading its replies");
    return 0;
  }
  w = malloc(sizeof(*w));
  if (w == NULL) {
    free(buf);
    return DISCO_ENOMEM;
  }
  w->buf = buf;
  b = uv_buf_init(buf, (unsigned int)len);
  err = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, disco__conn_write_cb);
  if (err != 0) {
    free(buf);
    free(w);
    disco__conn_close(c, DISCO_LOG_DEBUG, uv_strerror(err));
  }
  return 0;
}

static int disco__conn_write_copy(disco__dconn_t *c, const char *data,
                                  size_t len) {
  char *buf = malloc(len);

  if (buf == NULL)
    return DISCO_ENOMEM;
  memcpy(buf, data, len);
  return disco__conn_write(c, buf, len);
}

static void disco__conn_reply_error(disco__dconn_t *c, int64_t id, int status,
                                    const char *message) {
  char *buf;
  size_t len;

  if (disco_dubbo_response_encode(c->server->writer, id, status, NULL, 0,
                                  message, &buf, &len) == 0)
    disco__conn_write(c, buf, len);
}

static void disco__conn_frame(disco__dconn_t *c,
                              const disco_dubbo_frame_t *frame) {
  disco_dubbo_server_t *s = c->server;
  const disco_dubbo_header_t *h = &frame->header;
  disco_dubbo_request_t req;
  const char *why = NULL;
  char msg[256];
  int err;

  if (!(h->flags & DISCO_DUBBO_FLAG_REQUEST)) {
    /* A response to a server: nothing asked for it. */
    disco_log(s->loop, DISCO_LOG_DEBUG, DISCO__DUBBO_COMPONENT,
              "connection %llu: ignoring a response frame",
              (unsigned long long)c->id);
    return;
  }
  if (h->flags & DISCO_DUBBO_FLAG_EVENT) {
    char hb[DISCO_DUBBO_HEADER_LEN + 1];
    if (!(h->flags & DISCO_DUBBO_FLAG_TWOWAY))
      return;
    s->stats.heartbeats++;
    disco_dubbo_heartbeat_encode(h->id, 1, hb);
    disco__conn_write_copy(c, hb, sizeof(hb));
    return;
  }
  err = disco_dubbo_request_decode(frame->body, h->body_len, NULL, &req, &why);
  if (err != 0) {
    s->stats.protocol_errors++;
    snprintf(msg, sizeof(msg), "bad request body: %s",
             why != NULL ? why : disco_strerror(err));
    disco_log(s->loop, DISCO_LOG_WARN, DISCO__DUBBO_COMPONENT,
              "connection %llu from %s: %s", (unsigned long long)c->id, c->peer,
              msg);
    if (h->flags & DISCO_DUBBO_FLAG_TWOWAY)
      disco__conn_reply_error(c, h->id, DISCO_DUBBO_BAD_REQUEST, msg);
    disco_dubbo_request_free(&req);
    return;
  }
  req.id = h->id;
  req.two_way = (h->flags & DISCO_DUBBO_FLAG_TWOWAY) != 0;
  s->stats.requests++;
  s->on_request(s, c->id, &req);
  disco_dubbo_request_free(&req);
}

/* The connection still wants frames until it or its server closes. */
static int disco__conn_live(void *data) {
  disco__dconn_t *c = data;
  return !c->closing && !c->server->closing;
}

/* A whole frame: it counts as activity for the idle timeout. */
static void disco__conn_on_frame(void *data, const disco_dubbo_frame_t *frame) {
  disco__dconn_t *c = data;
  if (c->server->opts.idle_timeout_ms > 0)
    uv_timer_again(&c->idle);
  disco__conn_frame(c, frame);
}

static void disco__conn_read_cb(uv_stream_t *stream, ssize_t nread,
                                const uv_buf_t *buf) {
  disco__dconn_t *c = stream->data;
  char why[128];

  if (nread < 0) {
    if (nread == UV_EOF && disco_dubbo_framer_pending(c->framer) == 0)
      disco__conn_close(c, DISCO_LOG_DEBUG, "peer closed");
    else if (nread == UV_EOF)
      disco__conn_close(c, DISCO_LOG_INFO,
                        "peer closed in the middle of a "
                        "frame");
    else
      disco__conn_close(c, DISCO_LOG_INFO, uv_strerror((int)nread));
    free(buf->base);
    return;
  }
  if (disco__dubbo_feed(c->framer, buf->base, (size_t)nread, disco__conn_live,
                        disco__conn_on_frame, c, why, sizeof(why)) != 0) {
    c->server->stats.protocol_errors++;
    disco__conn_close(c, DISCO_LOG_WARN, why);
  }
  free(buf->base);
}

static void disco__conn_idle_cb(uv_timer_t *timer) {
  disco__dconn_t *c = timer->data;

  c->server->stats.idle_closed++;
  disco__conn_close(c, DISCO_LOG_INFO, "idle timeout");
}

static void disco__server_accept_cb(uv_stream_t *listener, int status) {
  disco_dubbo_server_t *s = listener->data;
  disco__dconn_t *c;
  int err;

  if (status != 0) {
    disco_log(s->loop, DISCO_LOG_WARN, DISCO__DUBBO_COMPONENT,
              "accept failed: %s", uv_strerror(status));
    return;
  }
  if (s->closing)
    return;
  c = calloc(1, sizeof(*c));
  if (c == NULL)
    return;
  c->server = s;
  c->id = ++s->next_conn_id;
  strcpy(c->peer, "?");
  uv_tcp_init(&s->loop->uv, &c->tcp);
  uv_timer_init(&s->loop->uv, &c->idle);
  c->tcp.data = c;
  c->idle.data = c;
  c->handles = 2;
  disco__list_insert_tail(&s->conns, &c->link);
  err = uv_accept(listener, (uv_stream_t *)&c->tcp);
  if (err != 0) {
    disco__conn_close(c, DISCO_LOG_WARN, uv_strerror(err));
    return;
  }
  s->stats.accepted++;
  disco__tcp_peer_text(&c->tcp, c->peer, sizeof(c->peer));
  if (s->stats.connections >= s->opts.max_connections) {
    s->stats.rejected++;
    disco__conn_close(c, DISCO_LOG_WARN, "over max_connections");
    return;
  }
  err = disco_dubbo_framer_new(s->opts.max_frame, &c->framer);
  if (err == 0)
    err = uv_read_start((uv_stream_t *)&c->tcp, disco__dubbo_alloc_cb,
                        disco__conn_read_cb);
  if (err != 0) {
    disco__conn_close(c, DISCO_LOG_WARN, "cannot start reading");
    return;
  }
  s->stats.connections++;
  c->counted = 1;
  if (s->opts.idle_timeout_ms > 0)
    uv_timer_start(&c->idle, disco__conn_idle_cb, s->opts.idle_timeout_ms,
                   s->opts.idle_timeout_ms);
  uv_tcp_nodelay(&c->tcp, 1);
}

static void disco__server_listener_closed(uv_handle_t *handle) {
  disco_dubbo_server_t *s = handle->data;

  s->listener_open = 0;
  disco__server_maybe_free(s);
}

static void disco__server_close_from_loop(disco__handle_t *base) {
  disco_dubbo_server_close(
      disco__container_of(base, disco_dubbo_server_t, base));
}

void disco_dubbo_server_options_init(disco_dubbo_server_options_t *opts) {
  opts->max_connections = 1024;
  opts->max_frame = DISCO_DUBBO_MAX_FRAME;
  opts->idle_timeout_ms = 180000;
}

int disco_dubbo_server_new(disco_loop_t *loop, const char *host, int port,
                           const disco_dubbo_server_options_t *opts,
                           disco_dubbo_request_cb on_request,
                           disco_handle_close_cb close_cb, void *data,
                           disco_dubbo_server_t **out) {
  disco_dubbo_server_t *s;
  struct sockaddr_storage addr;
  struct sockaddr_storage bound;
  int namelen = sizeof(bound);
  int err;

  if (loop == NULL || host == NULL || on_request == NULL || out == NULL ||
      port < 0 || port > 65535)
    return DISCO_EINVAL;
  if (loop->closing != DISCO__LOOP_OPEN)
    return DISCO_ECLOSED;
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0)
    return DISCO_EINVAL;
  s = calloc(1, sizeof(*s));
  if (s == NULL)
    return DISCO_ENOMEM;
  disco_dubbo_server_options_init(&s->opts);
  if (opts != NULL)
    s->opts = *opts;
  if (s->opts.max_frame == 0 || s->opts.max_frame > 0x7fffffff ||
      s->opts.max_connections == 0) {
    free(s);
    return DISCO_EINVAL;
  }
  err = disco_h2_writer_new(&s->writer);
  if (err != 0) {
    free(s);
    return err;
  }
  s->loop = loop;
  s->on_request = on_request;
  s->close_cb = close_cb;
  s->data = data;
  disco__list_init(&s->conns);
  uv_tcp_init(&loop->uv, &s->listener);
  s->listener.data = s;
  s->listener_open = 1;
  err = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0);
  if (err == 0)
    err = uv_listen((uv_stream_t *)&s->listener, 511, disco__server_accept_cb);
  if (err == 0)
    err = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &namelen);
  if (err != 0) {
    /* Not registered yet: close the socket quietly, free on its close. */
    s->closing = 1;
    s->close_cb = NULL;
    disco__list_init(&s->base.link);
    uv_close((uv_handle_t *)&s->listener, disco__server_listener_closed);
    return disco_translate_uv_error(err);
  }
  s->port = bound.ss_family == AF_INET6
                ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                : ntohs(((struct sockaddr_in *)&bound)->sin_port);
  disco__handle_register(loop, &s->base, disco__server_close_from_loop);
  *out = s;
  return 0;
}

int disco_dubbo_server_port(const disco_dubbo_server_t *server) {
  return server->port;
}

int disco_dubbo_server_reply(disco_dubbo_server_t *server, uint64_t conn_id,
                             int64_t request_id, int status, const char *value,
                             size_t len, const char *error_message) {
  struct disco__list *it;
  disco__dconn_t *c = NULL;
  char *buf;
  size_t buf_len;
  int err;

  if (server == NULL || status < 0 || status > 255)
    return DISCO_EINVAL;
  if (server->closing)
    return DISCO_ECLOSED;
  if (len > server->opts.max_frame)
    return DISCO_E2BIG;
  for (it = server->conns.next; it != &server->conns; it = it->next) {
    disco__dconn_t *x = disco__container_of(it, disco__dconn_t, link);
    if (x->id == conn_id) {
      c = x;
      break;
    }
  }
  if (c == NULL || c->closing)
    return 0;
  err = disco_dubbo_response_encode(server->writer, request_id, status, value,
                                    len, error_message, &buf, &buf_len);
  if (err != 0)
    return err;
  if (buf_len - DISCO_DUBBO_HEADER_LEN > server->opts.max_frame) {
    free(buf);
    return DISCO_E2BIG;
  }
  return disco__conn_write(c, buf, buf_len);
}

void disco_dubbo_server_stats(const disco_dubbo_server_t *server,
                              disco_dubbo_server_stats_t *stats) {
  *stats = server->stats;
}

void disco_dubbo_server_close(disco_dubbo_server_t *server) {
  struct disco__list *it;
  struct disco__list *next;

  if (server == NULL || server->closing)
    return;
  server->closing = 1;
  for (it = server->conns.next; it != &server->conns; it = next) {
    next = it->next;
    disco__conn_close(disco__container_of(it, disco__dconn_t, link),
                      DISCO_LOG_DEBUG, NULL);
  }
  uv_close((uv_handle_t *)&server->listener, disco__server_listener_closed);
}

void *disco_dubbo_server_data(const disco_dubbo_server_t *server) {
  return server->data;
}
