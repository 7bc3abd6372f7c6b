/*
 * The HTTP/1.1 server (the admin endpoint of `disco serve`, small test
 * backends): a TCP listener and its connections, each with an http-parser,
 * an input buffer, the request being assembled and one timer.
 *
 * One request per connection is in flight. Once a request is complete the
 * parser stops (http_parser_pause) and nothing more is parsed until its
 * reply has been written; bytes that arrive meanwhile wait in the input
 * buffer, and reading stops when it is full. So replies go out in the order
 * of the requests, and a client that pipelines without reading its replies
 * holds at most one reply and one buffer of input.
 *
 * Every bound ends in a reply the client can read (400, 408, 413, 431) and
 * a close. A closing connection first shuts its side down and then reads
 * and discards what the client still sends, for a short while, before it
 * closes: closing a socket with unread input makes the kernel reset the
 * connection, and the client could lose the reply.
 *
 * The connection's one timer is, by turns: the idle timeout (between
 * requests), the request timeout (from the first byte of a request to its
 * end), nothing (while the owner prepares the reply) and the linger.
 *
 * Life cycle: closing the server closes the listener and every connection;
 * connections are freed as their two libuv handles (socket, timer) close,
 * and the server is freed once the listener and the last connection have.
 */
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DISCO__HTTP_COMPONENT "http-server"

/* Input not parsed yet, per connection. A read never asks for more than
 * what is free here. */
#define DISCO__HTTP_INBUF 16384

/* How long a closing connection still reads (and drops) the client's
 * input after the final reply, so that the reply is not reset away. */
#define DISCO__HTTP_LINGER_MS 2000

enum {
  DISCO__HTTP_TIMER_NONE,
  DISCO__HTTP_TIMER_IDLE,
  DISCO__HTTP_TIMER_REQUEST,
  DISCO__HTTP_TIMER_LINGER
};

typedef struct disco__hconn_s disco__hconn_t;

struct disco_http_server_s {
  disco__handle_t base;
  disco_loop_t *loop;
  uv_tcp_t listener;
  disco_http_server_options_t opts;
  disco_http_request_cb on_request;
  disco_handle_close_cb close_cb;
  void *data;
  struct disco__list conns;
  disco_http_server_stats_t stats;
  uint64_t next_conn_id;
  uint64_t next_request_id;
  int port;
  int closing;
  int listener_open;
  char name[64];
  char address[64];
};

/* A header of the request being parsed: offsets into conn->head, because
 * the buffer moves as it grows. */
typedef struct {
  size_t name_off;
  size_t name_len;
  size_t value_off;
  size_t value_len;
} disco__hfield_t;

struct disco__hconn_s {
  struct disco__list link; /* in server->conns until freed */
  disco_http_server_t *server;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_shutdown_t shutdown;
  http_parser parser;
  uint64_t id;
  int handles; /* libuv handles not yet closed */
  int counted; /* included in stats.connections */
  int closing;
  int reading;    /* uv_read_start is in effect */
  int processing; /* inside disco__conn_process */
  int timer_kind;
  int in_message;      /* a request has begun and is not complete */
  int complete;        /* the parser has just completed a request */
  int awaiting;        /* a request went to on_request; its reply is due */
  int writing;         /* a keep-alive reply is being written */
  int ending;          /* the final reply is queued: shut down, linger, close */
  int peer_eof;        /* the client has closed its side */
  uint64_t request_id; /* the request awaiting its reply */
  int keep_alive;      /* of the request awaiting its reply */
  int head_request;    /* it is a HEAD request: replies carry no body */
  int reject_status;   /* set by a parser callback that refused the input */
  const char *reject_why;
  /* Input not parsed yet. */
  char in[DISCO__HTTP_INBUF];
  size_t in_len;
  /* The request being parsed: its URL, then its header names and values,
   * as they came; the headers; the body. */
  char *head;
  size_t head_len;
  size_t head_cap;
  size_t url_len;
  size_t path_off; /* path and query, as offsets into head */
  size_t path_len;
  size_t query_off;
  size_t query_len;
  int has_query;
  disco__hfield_t *fields;
  size_t nfields;
  size_t fields_cap;
  size_t trailer_bytes; /* chunked trailers: counted, not kept */
  int last_was_value;
  int headers_done;
  char *body;
  size_t body_len;
  size_t body_cap;
  char peer[64];
};

typedef struct {
  uv_write_t req;
  char *buf;
} disco__hwrite_t;

/* ------------------------------------------------------------ helpers */

/* Appends data[0..n) to a growing buffer that stays NUL-terminated. */
static int disco__buf_append(char **buf, size_t *len, size_t *cap,
                             const char *data, size_t n) {
  if (*len + n + 1 > *cap) {
    size_t want = *cap < 256 ? 256 : *cap;
    char *grown;
    while (want < *len + n + 1)
      want *= 2;
    grown = realloc(*buf, want);
    if (grown == NULL)
      return DISCO_ENOMEM;
    *buf = grown;
    *cap = want;
  }
  memcpy(*buf + *len, data, n);
  *len += n;
  (*buf)[*len] = '\0';
  return 0;
}

static int disco__ascii_lower(int ch) {
  return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

static int disco__strn_ieq(const char *a, size_t alen, const char *b) {
  size_t i;
  if (alen != strlen(b))
    return 0;
  for (i = 0; i < alen; i++)
    if (disco__ascii_lower((unsigned char)a[i]) !=
        disco__ascii_lower((unsigned char)b[i]))
      return 0;
  return 1;
}

static const char *disco__reason(int status) {
  const char *r = http_status_str((enum http_status)status);
  return r == NULL || r[0] == '<' ? "Unknown" : r;
}

/* ------------------------------------------------------- connections */

static void disco__server_maybe_free(disco_http_server_t *s) {
  if (!s->closing || s->listener_open || s->conns.next != &s->conns)
    return;
  disco__handle_unregister(&s->base);
  if (s->close_cb != NULL)
    s->close_cb(s, s->data);
  free(s);
}

static void disco__conn_handle_closed(uv_handle_t *handle) {
  disco__hconn_t *c = handle->data;
  disco_http_server_t *s = c->server;

  if (--c->handles > 0)
    return;
  disco__list_remove(&c->link);
  free(c->head);
  free(c->fields);
  free(c->body);
  free(c);
  disco__server_maybe_free(s);
}

/* Idempotent. `why` is logged at `level` (NULL: nothing logged). */
static void disco__conn_close(disco__hconn_t *c, disco_log_level_t level,
                              const char *why) {
  if (c->closing)
    return;
  c->closing = 1;
  c->awaiting = 0;
  if (why != NULL)
    disco_log(c->server->loop, level, DISCO__HTTP_COMPONENT,
              "%s: closing connection %llu from %s: %s", c->server->name,
              (unsigned long long)c->id, c->peer, why);
  if (c->counted)
    c->server->stats.connections--;
  uv_close((uv_handle_t *)&c->tcp, disco__conn_handle_closed);
  uv_close((uv_handle_t *)&c->timer, disco__conn_handle_closed);
}

static void disco__conn_timer_cb(uv_timer_t *timer);

/* Arms the connection's one timer for `kind` (or stops it). */
static void disco__conn_timer(disco__hconn_t *c, int kind) {
  uint64_t ms = 0;

  if (c->closing)
    return;
  if (kind == DISCO__HTTP_TIMER_IDLE)
    ms = c->server->opts.idle_timeout_ms;
  else if (kind == DISCO__HTTP_TIMER_REQUEST)
    ms = c->server->opts.request_timeout_ms;
  else if (kind == DISCO__HTTP_TIMER_LINGER)
    ms = DISCO__HTTP_LINGER_MS;
  uv_timer_stop(&c->timer);
  c->timer_kind = DISCO__HTTP_TIMER_NONE;
  if (ms == 0)
    return;
  c->timer_kind = kind;
  uv_timer_start(&c->timer, disco__conn_timer_cb, ms, 0);
}

static void disco__conn_alloc_cb(uv_handle_t *handle, size_t suggested,
                                 uv_buf_t *buf) {
  disco__hconn_t *c = handle->data;
  (void)suggested;
  if (c->ending) /* input after the final reply is dropped */
    *buf = uv_buf_init(c->in, sizeof(c->in));
  else
    *buf = uv_buf_init(c->in + c->in_len,
                       (unsigned int)(sizeof(c->in) - c->in_len));
}

static void disco__conn_read_cb(uv_stream_t *stream, ssize_t nread,
                                const uv_buf_t *buf);

/* Reads while there is room for input, and always while lingering (what
 * comes then is dropped). Reading on while a reply is due is how a client
 * that leaves is noticed. */
static void disco__conn_update_reading(disco__hconn_t *c) {
  int want;

  if (c->closing)
    return;
  want = !c->peer_eof && (c->ending || c->in_len < sizeof(c->in));
  if (want && !c->reading) {
    if (uv_read_start((uv_stream_t *)&c->tcp, disco__conn_alloc_cb,
                      disco__conn_read_cb) != 0) {
      disco__conn_close(c, DISCO_LOG_WARN, "cannot start reading");
      return;
    }
    c->reading = 1;
  } else if (!want && c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
}

static void disco__conn_write_cb(uv_write_t *req, int status);

/* Queues buf[0..len) (malloc'ed; taken in all cases). 0, or -1 when the
 * connection was closed instead. */
static int disco__conn_write(disco__hconn_t *c, char *buf, size_t len) {
  disco__hwrite_t *w;
  uv_buf_t b;
  int err;

  if (c->closing) {
    free(buf);
    return -1;
  }
  w = malloc(sizeof(*w));
  if (w == NULL) {
    free(buf);
    disco__conn_close(c, DISCO_LOG_ERROR, "out of memory");
    return -1;
  }
  w->buf = buf;
  b = uv_buf_init(buf, (unsigned int)len);
  err = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, disco__conn_write_cb);
  if (err != 0) {
    free(buf);
    free(w);
    disco__conn_close(c, DISCO_LOG_DEBUG, uv_strerror(err));
    return -1;
  }
  return 0;
}

static void disco__conn_shutdown_cb(uv_shutdown_t *req, int status) {
  disco__hconn_t *c = req->handle->data;

  if (c->closing)
    return;
  if (status != 0 || c->peer_eof) {
    disco__conn_close(c, DISCO_LOG_DEBUG,
                      status != 0 ? uv_strerror(status) : "done");
    return;
  }
  disco__conn_timer(c, DISCO__HTTP_TIMER_LINGER);
}

/* After the final reply was queued: no more requests; the reply goes out,
 * then our side shuts down, then the client's input is drained for a while
 * (see the top of the file). */
static void disco__conn_end(disco__hconn_t *c) {
  int err;

  if (c->closing || c->ending)
    return;
  c->ending = 1;
  c->in_len = 0;
  disco__conn_timer(c, DISCO__HTTP_TIMER_NONE);
  err = uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp,
                    disco__conn_shutdown_cb);
  if (err != 0) {
    disco__conn_close(c, DISCO_LOG_DEBUG, uv_strerror(err));
    return;
  }
  disco__conn_update_reading(c);
}

/* The server's own answer to input it refuses (400, 408, 413, 431): a
 * short plain-text body saying why, then the connection ends. */
static void disco__conn_reject(disco__hconn_t *c, int status, const char *why) {
  disco_http_server_t *s = c->server;
  char *buf;
  int len;

  if (status == 400)
    s->stats.bad_requests++;
  else if (status == 408)
    s->stats.timeouts++;
  else
    s->stats.too_large++;
  disco_log(s->loop, DISCO_LOG_INFO, DISCO__HTTP_COMPONENT,
            "%s: connection %llu from %s: %d %s: %s", s->name,
            (unsigned long long)c->id, c->peer, status, disco__reason(status),
            why);
  buf = malloc(512);
  if (buf == NULL) {
    disco__conn_close(c, DISCO_LOG_ERROR, "out of memory");
    return;
  }
  len = snprintf(buf, 512,
                 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                 "Content-Length: %d\r\nConnection: close\r\n\r\n%.200s\n",
                 status, disco__reason(status), (int)strlen(why) + 1, why);
  if (len < 0 || len >= 512) {
    free(buf);
    disco__conn_close(c, DISCO_LOG_WARN, why);
    return;
  }
  if (disco__conn_write(c, buf, (size_t)len) == 0)
    disco__conn_end(c);
}

/* ------------------------------------------------- parser callbacks */

/* A callback that refuses the input says with which status and why, and
 * returns non-zero, which stops http_parser_execute with HPE_CB_*. */
static int disco__parser_refuse(disco__hconn_t *c, int status,
                                const char *why) {
  c->reject_status = status;
  c->reject_why = why;
  return -1;
}

/* Adds the bytes of the URL or a header to the request's head, within
 * max_header_bytes. */
static int disco__head_append(disco__hconn_t *c, const char *at, size_t len) {
  if (c->head_len + len > c->server->opts.max_header_bytes)
    return disco__parser_refuse(c, 431,
                                "request line and headers over "
                                "max_header_bytes");
  if (disco__buf_append(&c->head, &c->head_len, &c->head_cap, at, len) != 0)
    return disco__parser_refuse(c, 500, "out of memory");
  return 0;
}

static int disco__on_message_begin(http_parser *p) {
  disco__hconn_t *c = p->data;

  c->in_message = 1;
  c->head_len = 0;
  c->url_len = 0;
  c->nfields = 0;
  c->trailer_bytes = 0;
  c->last_was_value = 0;
  c->headers_done = 0;
  c->body_len = 0;
  c->has_query = 0;
  disco__conn_timer(c, DISCO__HTTP_TIMER_REQUEST);
  return 0;
}

static int disco__on_url(http_parser *p, const char *at, size_t len) {
  disco__hconn_t *c = p->data;

  c->url_len += len;
  return disco__head_append(c, at, len);
}

/* Trailers of a chunked body are counted against max_header_bytes and
 * otherwise dropped. */
static int disco__trailer(disco__hconn_t *c, size_t len) {
  c->trailer_bytes += len;
  if (c->head_len + c->trailer_bytes > c->server->opts.max_header_bytes)
    return disco__parser_refuse(c, 431, "trailers over max_header_bytes");
  return 0;
}

static int disco__on_header_field(http_parser *p, const char *at, size_t len) {
  disco__hconn_t *c = p->data;
  disco__hfield_t *f;

  if (c->headers_done)
    return disco__trailer(c, len);
  if (c->nfields == 0 || c->last_was_value) {
    if (c->nfields >= c->server->opts.max_headers)
      return disco__parser_refuse(c, 431, "more than max_headers headers");
    if (c->nfields == c->fields_cap) {
      size_t cap = c->fields_cap == 0 ? 16 : c->fields_cap * 2;
      disco__hfield_t *grown = realloc(c->fields, cap * sizeof(*grown));
      if (grown == NULL)
        return disco__parser_refuse(c, 500, "out of memory");
      c->fields = grown;
      c->fields_cap = cap;
    }
    f = &c->fields[c->nfields++];
    f->name_off = c->head_len;
    f->name_len = 0;
    f->value_off = c->head_len;
    f->value_len = 0;
    c->last_was_value = 0;
  }
  c->fields[c->nfields - 1].name_len += len;
  return disco__head_append(c, at, len);
}

static int disco__on_header_value(http_parser *p, const char *at, size_t len) {
  disco__hconn_t *c = p->data;
  disco__hfield_t *f;

  if (c->headers_done)
    return disco__trailer(c, len);
  if (c->nfields == 0)
    return 0;
  f = &c->fields[c->nfields - 1];
  if (!c->last_was_value) {
    f->value_off = c->head_len;
    f->value_len = 0;
    c->last_was_value = 1;
  }
  f->value_len += len;
  return disco__head_append(c, at, len);
}

/* Splits the URL into path and query (offsets into head). */
static int disco__split_url(disco__hconn_t *c) {
  struct http_parser_url u;

  if (c->url_len == 1 && c->head[0] == '*') { /* OPTIONS * */
    c->path_off = 0;
    c->path_len = 1;
    return 0;
  }
  http_parser_url_init(&u);
  if (http_parser_parse_url(c->head, c->url_len,
                            c->parser.method == HTTP_CONNECT, &u) != 0)
    return -1;
  if (u.field_set & (1 << UF_PATH)) {
    c->path_off = u.field_data[UF_PATH].off;
    c->path_len = u.field_data[UF_PATH].len;
  } else {
    c->path_off = 0;
    c->path_len = 0; /* an absolute URL without a path: "/" */
  }
  if (u.field_set & (1 << UF_QUERY)) {
    c->has_query = 1;
    c->query_off = u.field_data[UF_QUERY].off;
    c->query_len = u.field_data[UF_QUERY].len;
  }
  return 0;
}

static int disco__on_headers_complete(http_parser *p) {
  disco__hconn_t *c = p->data;

  c->headers_done = 1;
  if (disco__split_url(c) != 0)
    return disco__parser_refuse(c, 400, "invalid URL");
  if ((p->flags & F_CONTENTLENGTH) &&
      p->content_length > c->server->opts.max_body_bytes)
    return disco__parser_refuse(c, 413, "body over max_body_bytes");
  return 0;
}

static int disco__on_body(http_parser *p, const char *at, size_t len) {
  disco__hconn_t *c = p->data;

  if (c->body_len + len > c->server->opts.max_body_bytes)
    return disco__parser_refuse(c, 413, "body over max_body_bytes");
  if (disco__buf_append(&c->body, &c->body_len, &c->body_cap, at, len) != 0)
    return disco__parser_refuse(c, 500, "out of memory");
  return 0;
}

/* Stops the parser right after the request, so that the bytes behind it
 * wait for the reply. */
static int disco__on_message_complete(http_parser *p) {
  disco__hconn_t *c = p->data;

  c->in_message = 0;
  c->complete = 1;
  /* An upgrade (or CONNECT) is not served: the reply ends the connection,
   * since what follows would not be HTTP. */
  c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
  c->head_request = p->method == HTTP_HEAD;
  http_parser_pause(p, 1);
  return 0;
}

/* Immutable: the callbacks find their connection through parser.data. */
static const http_parser_settings disco__http_settings = {
  .on_message_begin = disco__on_message_begin,
  .on_url = disco__on_url,
  .on_header_field = disco__on_header_field,
  .on_header_value = disco__on_header_value,
  .on_headers_complete = disco__on_headers_complete,
  .on_body = disco__on_body,
  .on_message_complete = disco__on_message_complete,
};

/* --------------------------------------------------------- requests */

/* Hands the complete request to on_request: names lower-cased, repeated
 * names joined with ", ", values without trailing blanks. */
static void disco__conn_deliver(disco__hconn_t *c) {
  disco_http_server_t *s = c->server;
  disco_http_request_t req;
  disco_http_header_t *hs = NULL;
  char *block;
  char *out;
  size_t i, j, n = 0;
  char *merged = NULL;

  /* Each name and value once, a NUL after each, ", " per join; then the
   * path and the query, NUL-terminated. */
  block = malloc(c->head_len + 3 * c->nfields + c->url_len + 4);
  if (c->nfields > 0) {
    hs = malloc(c->nfields * sizeof(*hs));
    merged = calloc(c->nfields, 1);
  }
  if (block == NULL || (c->nfields > 0 && (hs == NULL || merged == NULL))) {
    free(block);
    free(hs);
    free(merged);
    disco__conn_close(c, DISCO_LOG_ERROR, "out of memory");
    return;
  }
  for (i = 0; i < c->nfields; i++) {
    disco__hfield_t *f = &c->fields[i];
    char *name = c->head + f->name_off;
    for (j = 0; j < f->name_len; j++)
      name[j] = (char)disco__ascii_lower((unsigned char)name[j]);
    while (f->value_len > 0 &&
           (c->head[f->value_off + f->value_len - 1] == ' ' ||
            c->head[f->value_off + f->value_len - 1] == '\t'))
      f->value_len--;
  }
  out = block;
  for (i = 0; i < c->nfields; i++) {
    disco__hfield_t *f = &c->fields[i];
    if (merged[i])
      continue;
    hs[n].name = out;
    hs[n].name_len = f->name_len;
    memcpy(out, c->head + f->name_off, f->name_len);
    out += f->name_len;
    *out++ = '\0';
    hs[n].value = out;
    memcpy(out, c->head + f->value_off, f->value_len);
    out += f->value_len;
    for (j = i + 1; j < c->nfields; j++) {
      disco__hfield_t *g = &c->fields[j];
      if (merged[j] || g->name_len != f->name_len ||
          memcmp(c->head + g->name_off, c->head + f->name_off, f->name_len))
        continue;
      merged[j] = 1;
      memcpy(out, ", ", 2);
      out += 2;
      memcpy(out, c->head + g->value_off, g->value_len);
      out += g->value_len;
    }
    hs[n].value_len = (size_t)(out - hs[n].value);
    *out++ = '\0';
    n++;
  }
  memset(&req, 0, sizeof(req));
  req.path = out;
  if (c->path_len == 0) {
    memcpy(out, "/", 1);
    req.path_len = 1;
  } else {
    memcpy(out, c->head + c->path_off, c->path_len);
    req.path_len = c->path_len;
  }
  out += req.path_len;
  *out++ = '\0';
  if (c->has_query) {
    req.query = out;
    req.query_len = c->query_len;
    memcpy(out, c->head + c->query_off, c->query_len);
    out += c->query_len;
    *out++ = '\0';
  }
  req.id = ++s->next_request_id;
  req.method = http_method_str((enum http_method)c->parser.method);
  req.headers = hs;
  req.nheaders = n;
  req.body = c->body != NULL ? c->body : "";
  req.body_len = c->body_len;
  req.peer = c->peer;
  req.http_major = c->parser.http_major;
  req.http_minor = c->parser.http_minor;
  req.keep_alive = c->keep_alive;
  c->awaiting = 1;
  c->request_id = req.id;
  disco__conn_timer(c, DISCO__HTTP_TIMER_NONE);
  s->stats.requests++;
  s->on_request(s, &req);
  free(block);
  free(hs);
  free(merged);
}

/* Parses buffered input while no reply is due: each complete request goes
 * to on_request, and refused input to disco__conn_reject. Not re-entered
 * (on_request may reply at once; the reply's write completion resumes). */
static void disco__conn_process(disco__hconn_t *c) {
  if (c->processing)
    return;
  c->processing = 1;
  while (!c->closing && !c->ending && !c->awaiting && !c->writing &&
         c->in_len > 0) {
    size_t used = http_parser_execute(&c->parser, &disco__http_settings, c->in,
                                      c->in_len);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);

    if (used > c->in_len)
      used = c->in_len;
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
    if (c->complete) {
      c->complete = 0;
      http_parser_pause(&c->parser, 0);
      disco__conn_deliver(c);
      continue;
    }
    if (e == HPE_HEADER_OVERFLOW) {
      disco__conn_reject(c, 431, "header section over the parser's limit");
    } else if (e != HPE_OK && c->reject_status == 500) {
      disco__conn_close(c, DISCO_LOG_ERROR, c->reject_why);
    } else if (e != HPE_OK && c->reject_status != 0) {
      disco__conn_reject(c, c->reject_status, c->reject_why);
    } else if (e != HPE_OK) {
      char why[160];
      snprintf(why, sizeof(why), "%s (%s)", http_errno_name(e),
               http_errno_description(e));
      disco__conn_reject(c, 400, why);
    } else if (used == 0) {
      break; /* cannot happen: the parser takes all unless it stops */
    }
  }
  c->processing = 0;
  disco__conn_update_reading(c);
}

static void disco__conn_write_cb(uv_write_t *req, int status) {
  disco__hwrite_t *w = (disco__hwrite_t *)req;
  disco__hconn_t *c = req->handle->data;

  free(w->buf);
  free(w);
  if (c->closing)
    return;
  if (status != 0) {
    disco__conn_close(c, DISCO_LOG_DEBUG, uv_strerror(status));
    return;
  }
  if (c->writing && c->peer_eof) {
    c->writing = 0;
    disco__conn_end(c);
  } else if (c->writing) {
    /* A keep-alive reply is out: on to the next request. */
    c->writing = 0;
    disco__conn_timer(c, DISCO__HTTP_TIMER_IDLE);
    disco__conn_process(c);
  }
}

static void disco__conn_read_cb(uv_stream_t *stream, ssize_t nread,
                                const uv_buf_t *buf) {
  disco__hconn_t *c = stream->data;
  (void)buf;

  if (nread == 0 || c->closing)
    return;
  if (nread == UV_EOF && (c->ending || c->writing)) {
    /* A client that closed its sending side may still read: the reply
     * being written goes out first (see the shutdown and write
     * callbacks). */
    c->peer_eof = 1;
    uv_read_stop(stream);
    c->reading = 0;
    if (c->ending && c->timer_kind == DISCO__HTTP_TIMER_LINGER)
      disco__conn_close(c, DISCO_LOG_DEBUG, "done");
    return;
  }
  if (nread < 0) {
    if (c->ending || (nread == UV_EOF && !c->in_message && !c->awaiting))
      disco__conn_close(c, DISCO_LOG_DEBUG, "peer closed");
    else if (nread == UV_EOF && c->awaiting)
      disco__conn_close(c, DISCO_LOG_INFO, "peer closed before the reply");
    else if (nread == UV_EOF)
      disco__conn_close(c, DISCO_LOG_INFO,
                        "peer closed in the middle of a request");
    else
      disco__conn_close(c, DISCO_LOG_INFO, uv_strerror((int)nread));
    return;
  }
  if (c->ending)
    return; /* dropped */
  c->in_len += (size_t)nread;
  disco__conn_process(c);
}

static void disco__conn_timer_cb(uv_timer_t *timer) {
  disco__hconn_t *c = timer->data;
  int kind = c->timer_kind;

  c->timer_kind = DISCO__HTTP_TIMER_NONE;
  if (kind == DISCO__HTTP_TIMER_IDLE)
    disco__conn_close(c, DISCO_LOG_DEBUG, "idle timeout");
  else if (kind == DISCO__HTTP_TIMER_REQUEST)
    disco__conn_reject(c, 408, "request not complete within request_timeout");
  else if (kind == DISCO__HTTP_TIMER_LINGER)
    disco__conn_close(c, DISCO_LOG_DEBUG, "closed after the final reply");
}

/* ------------------------------------------------------------ server */

static void disco__server_accept_cb(uv_stream_t *listener, int status) {
  disco_http_server_t *s = listener->data;
  disco__hconn_t *c;
  int err;

  if (status != 0) {
    disco_log(s->loop, DISCO_LOG_WARN, DISCO__HTTP_COMPONENT,
              "%s: accept failed: %s", s->name, uv_strerror(status));
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
  uv_timer_init(&s->loop->uv, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
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
    s->stats.refused++;
    disco__conn_close(c, DISCO_LOG_WARN, "over max_connections");
    return;
  }
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  s->stats.connections++;
  c->counted = 1;
  disco__conn_update_reading(c);
  disco__conn_timer(c, DISCO__HTTP_TIMER_IDLE);
  uv_tcp_nodelay(&c->tcp, 1);
}

static void disco__server_listener_closed(uv_handle_t *handle) {
  disco_http_server_t *s = handle->data;

  s->listener_open = 0;
  disco__server_maybe_free(s);
}

static void disco__server_close_from_loop(disco__handle_t *base) {
  disco_http_server_close(disco__container_of(base, disco_http_server_t, base));
}

void disco_http_server_options_init(disco_http_server_options_t *opts) {
  opts->max_connections = 256;
  opts->max_header_bytes = 8192;
  opts->max_headers = 64;
  opts->max_body_bytes = 1048576;
  opts->request_timeout_ms = 10000;
  opts->idle_timeout_ms = 30000;
  opts->name = NULL;
}

static void disco__server_set_address(disco_http_server_t *s,
                                      const struct sockaddr_storage *bound) {
  s->port = disco__sockaddr_text(bound, s->address, sizeof(s->address));
}

int disco_http_server_new(disco_loop_t *loop, const char *host, int port,
                          const disco_http_server_options_t *opts,
                          disco_http_request_cb on_request,
                          disco_handle_close_cb close_cb, void *data,
                          disco_http_server_t **out) {
  disco_http_server_t *s;
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
  disco_http_server_options_init(&s->opts);
  if (opts != NULL)
    s->opts = *opts;
  if (s->opts.max_connections == 0 || s->opts.max_header_bytes == 0 ||
      s->opts.max_headers == 0 || s->opts.max_body_bytes > 0x7fffffff) {
    free(s);
    return DISCO_EINVAL;
  }
  snprintf(s->name, sizeof(s->name), "%s",
           s->opts.name != NULL ? s->opts.name : "http");
  s->opts.name = s->name;
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
  disco__server_set_address(s, &bound);
  disco__handle_register(loop, &s->base, disco__server_close_from_loop);
  disco_log(loop, DISCO_LOG_DEBUG, DISCO__HTTP_COMPONENT, "%s: listening on %s",
            s->name, s->address);
  *out = s;
  return 0;
}

int disco_http_server_port(const disco_http_server_t *server) {
  return server->port;
}

void disco_http_server_address(const disco_http_server_t *server, char *buf,
                               size_t len) {
  if (len > 0)
    snprintf(buf, len, "%s", server->address);
}

int disco_http_server_reply(disco_http_server_t *server, uint64_t request_id,
                            int status, const disco_http_header_t *headers,
                            size_t nheaders, const char *body, size_t len) {
  struct disco__list *it;
  disco__hconn_t *c = NULL;
  size_t i, size;
  int keep, with_body, with_length;
  char *buf;
  char *out;

  if (server == NULL || status < 100 || status > 599 ||
      (nheaders > 0 && headers == NULL) || (len > 0 && body == NULL))
    return DISCO_EINVAL;
  for (i = 0; i < nheaders; i++)
    if (!disco__http_header_ok(headers[i].name, headers[i].name_len, 1) ||
        !disco__http_header_ok(headers[i].value, headers[i].value_len, 0))
      return DISCO_EINVAL;
  if (server->closing)
    return DISCO_ECLOSED;
  for (it = server->conns.next; it != &server->conns; it = it->next) {
    disco__hconn_t *x = disco__container_of(it, disco__hconn_t, link);
    if (x->awaiting && x->request_id == request_id) {
      c = x;
      break;
    }
  }
  if (c == NULL || c->closing)
    return DISCO_ECLOSED;

  keep = c->keep_alive;
  /* No body for 1xx, 204 and 304, nor in answer to HEAD (whose
   * Content-Length still tells the size of the body a GET would get). */
  with_length = !(status < 200 || status == 204 || status == 304);
  with_body = with_length && !c->head_request;
  size = 64 + 64 + (with_body ? len : 0);
  for (i = 0; i < nheaders; i++) {
    if (disco__strn_ieq(headers[i].name, headers[i].name_len, "connection") &&
        disco__strn_ieq(headers[i].value, headers[i].value_len, "close"))
      keep = 0;
    size += headers[i].name_len + headers[i].value_len + 4;
  }
  buf = malloc(size);
  if (buf == NULL)
    return DISCO_ENOMEM;
  out = buf +
        sprintf(buf, "HTTP/1.1 %d %.40s\r\n", status, disco__reason(status));
  for (i = 0; i < nheaders; i++) {
    const disco_http_header_t *h = &headers[i];
    if (disco__strn_ieq(h->name, h->name_len, "content-length") ||
        disco__strn_ieq(h->name, h->name_len, "connection"))
      continue;
    memcpy(out, h->name, h->name_len);
    out += h->name_len;
    memcpy(out, ": ", 2);
    out += 2;
    memcpy(out, h->value, h->value_len);
    out += h->value_len;
    memcpy(out, "\r\n", 2);
    out += 2;
  }
  if (with_length)
    out += sprintf(out, "Content-Length: %zu\r\n", len);
  if (!keep)
    out += sprintf(out, "Connection: close\r\n");
  else if (c->parser.http_major == 1 && c->parser.http_minor == 0)
    out += sprintf(out, "Connection: keep-alive\r\n");
  memcpy(out, "\r\n", 2);
  out += 2;
  if (with_body && len > 0) {
    memcpy(out, body, len);
    out += len;
  }
  c->awaiting = 0;
  server->stats.replies++;
  c->writing = keep;
  if (disco__conn_write(c, buf, (size_t)(out - buf)) != 0)
    return 0; /* closed: logged, nothing left to do */
  if (!keep)
    disco__conn_end(c);
  return 0;
}

void disco_http_server_stats(const disco_http_server_t *server,
                             disco_http_server_stats_t *stats) {
  *stats = server->stats;
}

void disco_http_server_close(disco_http_server_t *server) {
  struct disco__list *it;
  struct disco__list *next;

  if (server == NULL || server->closing)
    return;
  server->closing = 1;
  for (it = server->conns.next; it != &server->conns; it = next) {
    next = it->next;
    disco__conn_close(disco__container_of(it, disco__hconn_t, link),
                      DISCO_LOG_DEBUG, NULL);
  }
  uv_close((uv_handle_t *)&server->listener, disco__server_listener_closed);
}

void *disco_http_server_data(const disco_http_server_t *server) {
  return server->data;
}
