/*
 * The HTTP client against small scripted libuv servers on the same loop:
 * each test's server answers every request it reads through a function of
 * the test (send bytes now or one byte per timer tick, close, stay
 * silent), so that every misbehaviour the client must survive is exact:
 * keep-alive reuse, chunked bodies split byte by byte, Content-Length and
 * until-close bodies, a close mid-body, silence, oversized headers and
 * bodies, garbage, a refused connect, cancel mid-response, close with
 * requests pending, the FIFO queue beyond max_connections and a stale
 * pooled connection. Each test ends by closing its loop, so each is a leak
 * check too under `make valgrind`.
 */
#include <stdio.h>
#include <stdlib.h>

#include "ctest.h"
#include "http_client.h"

#define TEST_HC_CONNS 16
#define TEST_HC_REQS 16

typedef struct test_hc_s test_hc_t;
typedef struct test_sconn_s test_sconn_t;

/* Called with each complete request a server connection reads. */
typedef void (*test_hc_respond_fn)(test_sconn_t *sc, const char *request);

/* A server connection. */
struct test_sconn_s {
  uv_tcp_t tcp;
  uv_timer_t drip_timer;
  test_hc_t *ctx;
  int open;    /* handles not yet closed */
  int closing; /* uv_close requested */
  int served;  /* requests answered on this connection */
  int peer_eof;
  char in[8192];
  size_t in_len;
  const char *drip; /* bytes sent one per tick */
  size_t drip_len;
  size_t drip_pos;
  int close_after_drip;
};

/* What one request ended with. */
typedef struct {
  test_hc_t *ctx;
  disco_http_creq_t *req;
  int done;
  int err;
  char message[160];
  int status;
  char body[4096];
  char header[128]; /* the value of x-a */
  char data[4096];  /* on_data pieces joined with '|' */
  int pieces;
  int headers_calls;
} test_hc_result_t;

struct test_hc_s {
  ctest_t *t;
  disco_loop_t loop;
  uv_tcp_t listener;
  int port;
  test_hc_respond_fn respond;
  test_sconn_t conns[TEST_HC_CONNS];
  int accepted;
  int requests;       /* complete requests the server read */
  char paths[64][32]; /* their paths, in order */
  char last_request[1024];
  disco_http_client_t *client;
  int client_closed;
  test_hc_result_t results[TEST_HC_REQS];
  int done; /* what the test waits for */
  int want_done;
  int ended; /* requests ended */
  /* Behaviour switches for callbacks. */
  int cancel_on_data; /* 1: cancel in on_data, 2: in on_headers */
  int close_on_data;
  int done_on_data;
  int done_on_request; /* the server read a request */
};

/* ------------------------------------------------------------ server */

static void test_sconn_closed(uv_handle_t *h) {
  test_sconn_t *sc = h->data;
  sc->open--;
}

static void test_sconn_close(test_sconn_t *sc) {
  if (sc->closing)
    return;
  sc->closing = 1;
  uv_close((uv_handle_t *)&sc->tcp, test_sconn_closed);
  uv_close((uv_handle_t *)&sc->drip_timer, test_sconn_closed);
}

static void test_written(uv_write_t *req, int status) {
  (void)status;
  free(req);
}

static void test_sconn_send(test_sconn_t *sc, const char *data, size_t len) {
  uv_write_t *req;
  char *copy;
  uv_buf_t b;

  if (sc->closing || len == 0)
    return;
  req = malloc(sizeof(*req) + len);
  copy = (char *)(req + 1);
  memcpy(copy, data, len);
  b = uv_buf_init(copy, (unsigned int)len);
  uv_write(req, (uv_stream_t *)&sc->tcp, &b, 1, test_written);
}

static void test_sconn_sends(test_sconn_t *sc, const char *s) {
  test_sconn_send(sc, s, strlen(s));
}

static void test_drip_cb(uv_timer_t *timer) {
  test_sconn_t *sc = timer->data;

  if (sc->closing)
    return;
  if (sc->drip_pos < sc->drip_len) {
    test_sconn_send(sc, sc->drip + sc->drip_pos, 1);
    sc->drip_pos++;
    return;
  }
  uv_timer_stop(timer);
  if (sc->close_after_drip)
    test_sconn_close(sc);
}

/* Sends s one byte per millisecond, so that the client reads it in many
 * pieces; then closes when asked. */
static void test_sconn_drip(test_sconn_t *sc, const char *s, int then_close) {
  sc->drip = s;
  sc->drip_len = strlen(s);
  sc->drip_pos = 0;
  sc->close_after_drip = then_close;
  uv_timer_start(&sc->drip_timer, test_drip_cb, 1, 1);
}

/* The end of a request's head, plus its Content-Length body, or 0. */
static size_t test_request_len(const char *in, size_t len) {
  const char *end = NULL;
  const char *cl;
  size_t i, head, body = 0;

  for (i = 0; i + 3 < len; i++)
    if (memcmp(in + i, "\r\n\r\n", 4) == 0) {
      end = in + i;
      break;
    }
  if (end == NULL)
    return 0;
  head = (size_t)(end - in) + 4;
  for (cl = in; cl < end; cl++)
    if (strncmp(cl, "Content-Length: ", 16) == 0) {
      body = strtoul(cl + 16, NULL, 10);
      break;
    }
  return head + body <= len ? head + body : 0;
}

static void test_sconn_alloc(uv_handle_t *h, size_t n, uv_buf_t *buf) {
  test_sconn_t *sc = h->data;
  (void)n;
  *buf = uv_buf_init(sc->in + sc->in_len,
                     (unsigned int)(sizeof(sc->in) - 1 - sc->in_len));
}

static void test_sconn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  test_sconn_t *sc = s->data;
  test_hc_t *ctx = sc->ctx;
  size_t len;
  (void)buf;

  if (n < 0) {
    sc->peer_eof = 1;
    test_sconn_close(sc);
    return;
  }
  sc->in_len += (size_t)n;
  sc->in[sc->in_len] = '\0';
  while (!sc->closing && (len = test_request_len(sc->in, sc->in_len)) > 0) {
    char request[1024];
    size_t copy = len < sizeof(request) - 1 ? len : sizeof(request) - 1;
    const char *sp;
    memcpy(request, sc->in, copy);
    request[copy] = '\0';
    memmove(sc->in, sc->in + len, sc->in_len - len);
    sc->in_len -= len;
    memcpy(ctx->last_request, request, copy + 1);
    sp = strchr(request, ' ');
    if (sp != NULL && ctx->requests < 64) {
      size_t plen = strcspn(sp + 1, " ");
      if (plen >= sizeof(ctx->paths[0]))
        plen = sizeof(ctx->paths[0]) - 1;
      memcpy(ctx->paths[ctx->requests], sp + 1, plen);
      ctx->paths[ctx->requests][plen] = '\0';
    }
    ctx->requests++;
    ctx->respond(sc, request);
    sc->served++;
    if (ctx->done_on_request)
      ctx->done = 1;
  }
}

static void test_server_accept(uv_stream_t *listener, int status) {
  test_hc_t *ctx = listener->data;
  test_sconn_t *sc = NULL;
  int i;

  if (status != 0)
    return;
  for (i = 0; i < TEST_HC_CONNS; i++)
    if (ctx->conns[i].open == 0) {
      sc = &ctx->conns[i];
      break;
    }
  if (sc == NULL)
    return; /* the test's bound: the client's pool is smaller */
  memset(sc, 0, sizeof(*sc));
  sc->ctx = ctx;
  uv_tcp_init(&ctx->loop.uv, &sc->tcp);
  uv_timer_init(&ctx->loop.uv, &sc->drip_timer);
  sc->tcp.data = sc;
  sc->drip_timer.data = sc;
  sc->open = 2;
  if (uv_accept(listener, (uv_stream_t *)&sc->tcp) != 0) {
    test_sconn_close(sc);
    return;
  }
  ctx->accepted++;
  uv_read_start((uv_stream_t *)&sc->tcp, test_sconn_alloc, test_sconn_read);
}

/* ------------------------------------------------------------ client */

static void test_hc_client_closed(void *handle, void *data) {
  test_hc_t *ctx = data;
  (void)handle;
  ctx->client_closed++;
}

static void test_copy(char *dst, size_t size, const char *src, size_t len) {
  if (len >= size)
    len = size - 1;
  memcpy(dst, src, len);
  dst[len] = '\0';
}

static void test_hc_on_headers(disco_http_creq_t *req,
                               const disco_http_response_t *res, void *arg) {
  test_hc_result_t *r = arg;
  (void)res;
  r->headers_calls++;
  if (r->pieces > 0)
    ctest_fail(r->ctx->t, __FILE__, __LINE__, "on_headers after on_data");
  if (r->ctx->cancel_on_data == 2) {
    disco_http_client_cancel(req);
    r->ctx->done = 1;
  }
}

static void test_hc_on_data(disco_http_creq_t *req, const char *data,
                            size_t len, void *arg) {
  test_hc_result_t *r = arg;
  test_hc_t *ctx = r->ctx;
  size_t used = strlen(r->data);

  if (r->pieces > 0 && used + 1 < sizeof(r->data))
    r->data[used++] = '|';
  if (used + len < sizeof(r->data)) {
    memcpy(r->data + used, data, len);
    r->data[used + len] = '\0';
  }
  r->pieces++;
  if (ctx->cancel_on_data == 1) {
    disco_http_client_cancel(req);
    disco_http_client_cancel(req); /* idempotent */
    ctx->done = 1;
  }
  if (ctx->close_on_data)
    disco_http_client_close(ctx->client);
  if (ctx->done_on_data)
    ctx->done = 1;
}

static void test_hc_on_done(disco_http_creq_t *req, int err,
                            const char *message,
                            const disco_http_response_t *res, void *arg) {
  test_hc_result_t *r = arg;
  test_hc_t *ctx = r->ctx;
  size_t i;
  (void)req;

  if (r->done)
    ctest_fail(ctx->t, __FILE__, __LINE__, "on_done ran twice");
  r->done++;
  r->err = err;
  test_copy(r->message, sizeof(r->message), message != NULL ? message : "",
            message != NULL ? strlen(message) : 0);
  r->status = res->status;
  if (res->body != NULL)
    test_copy(r->body, sizeof(r->body), res->body, res->body_len);
  for (i = 0; i < res->nheaders; i++)
    if (strcmp(res->headers[i].name, "x-a") == 0)
      test_copy(r->header, sizeof(r->header), res->headers[i].value,
                res->headers[i].value_len);
  ctx->ended++;
  if (ctx->ended >= ctx->want_done)
    ctx->done = 1;
}

/* Starts the loop, the scripted server and a client (opts may be NULL). */
static void test_hc_setup(ctest_t *t, test_hc_t *ctx, test_hc_respond_fn fn,
                          const disco_http_client_options_t *opts) {
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int namelen = sizeof(bound);
  int i;

  memset(ctx, 0, sizeof(*ctx));
  ctx->t = t;
  ctx->respond = fn;
  for (i = 0; i < TEST_HC_REQS; i++)
    ctx->results[i].ctx = ctx;
  ASSERT_OK(t, disco_loop_init(&ctx->loop));
  uv_tcp_init(&ctx->loop.uv, &ctx->listener);
  ctx->listener.data = ctx;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  ASSERT_EQ(t, uv_tcp_bind(&ctx->listener, (struct sockaddr *)&addr, 0), 0);
  ASSERT_EQ(t, uv_listen((uv_stream_t *)&ctx->listener, 64, test_server_accept),
            0);
  uv_tcp_getsockname(&ctx->listener, (struct sockaddr *)&bound, &namelen);
  ctx->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  ASSERT_OK(t, disco_http_client_new(&ctx->loop, "127.0.0.1", ctx->port, opts,
                                     test_hc_client_closed, ctx, &ctx->client));
}

/* Makes request i (streamed when `split` is not NULL: "" streams raw). */
static int test_hc_request(test_hc_t *ctx, int i, const char *method,
                           const char *path, const char *split) {
  disco_http_client_request_t r;
  disco_http_header_t h = { "X-Test", 6, "yes", 3 };

  memset(&r, 0, sizeof(r));
  r.method = method;
  r.path = path;
  r.headers = &h;
  r.nheaders = 1;
  if (method != NULL && strcmp(method, "POST") == 0) {
    r.body = "{\"k\":1}";
    r.body_len = 7;
  }
  r.on_done = test_hc_on_done;
  r.on_headers = test_hc_on_headers;
  if (split != NULL) {
    r.on_data = test_hc_on_data;
    r.split = split;
    r.split_len = strlen(split);
  }
  r.arg = &ctx->results[i];
  return disco_http_client_request(ctx->client, &r, &ctx->results[i].req);
}

/* Runs the loop until `n` requests in all have ended. */
#define WAIT_ENDED(t, ctx, n)                                                  \
  do {                                                                         \
    (ctx)->want_done = (n);                                                    \
    (ctx)->done = (ctx)->ended >= (n);                                         \
    if (ctest_run_until((t), &(ctx)->loop, &(ctx)->done, 5000) != 0)           \
      return;                                                                  \
  } while (0)

/* One request, waited for; its result. */
#define FETCH(t, ctx, i, method, path, split)                                  \
  do {                                                                         \
    ASSERT_OK((t), test_hc_request((ctx), (i), (method), (path), (split)));    \
    WAIT_ENDED((t), (ctx), (ctx)->ended + 1);                                  \
  } while (0)

static void test_listener_closed(uv_handle_t *h) {
  (void)h;
}

/* Closes the client, the server and the loop (each test's leak check). */
static void test_hc_finish(ctest_t *t, test_hc_t *ctx) {
  int i;

  if (ctx->client_closed == 0)
    disco_http_client_close(ctx->client);
  for (i = 0; i < TEST_HC_CONNS; i++)
    if (ctx->conns[i].open > 0)
      test_sconn_close(&ctx->conns[i]);
  uv_close((uv_handle_t *)&ctx->listener, test_listener_closed);
  ASSERT_EQ(t, disco_loop_run(&ctx->loop), 0);
  ASSERT_EQ(t, ctx->client_closed, 1);
  ASSERT_OK(t, disco_loop_close(&ctx->loop));
}

/* ---------------------------------------------------------- servers */

static void test_respond_ok(test_sconn_t *sc, const char *request) {
  char body[64];
  char out[256];
  const char *sp = strchr(request, ' ');
  size_t plen = sp != NULL ? strcspn(sp + 1, " ") : 0;

  snprintf(body, sizeof(body), "%.*s #%d", (int)plen, sp + 1, sc->served + 1);
  snprintf(out, sizeof(out),
           "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nX-A: one\r\n"
           "x-a:  two \r\n\r\n%s",
           strlen(body), body);
  test_sconn_sends(sc, out);
}

static void test_respond_chunked_drip(test_sconn_t *sc, const char *request) {
  (void)request;
  test_sconn_drip(sc,
                  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nab\ncd\r\n3\r\n\nef\r\n4\r\ng\n\nh\r\n0\r\n\r\n",
                  0);
}

static void test_respond_until_close(test_sconn_t *sc, const char *request) {
  (void)request;
  test_sconn_drip(sc, "HTTP/1.0 200 OK\r\nX-A: old\r\n\r\nuntil the end", 1);
}

static void test_respond_mid_body(test_sconn_t *sc, const char *request) {
  (void)request;
  test_sconn_sends(sc, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
                       "only ten b");
  test_sconn_close(sc);
}

static void test_respond_silent(test_sconn_t *sc, const char *request) {
  (void)sc;
  (void)request;
}

static void test_respond_big_headers(test_sconn_t *sc, const char *request) {
  static char out[2048];
  (void)request;
  strcpy(out, "HTTP/1.1 200 OK\r\nX-Big: ");
  memset(out + strlen(out), 'h', 1000);
  out[25 + 1000] = '\0';
  strcat(out, "\r\nContent-Length: 0\r\n\r\n");
  test_sconn_sends(sc, out);
}

static void test_respond_big_body(test_sconn_t *sc, const char *request) {
  char chunk[80];
  int i;

  if (strstr(request, "/announced") != NULL) {
    test_sconn_sends(sc, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
    return;
  }
  /* Chunked, no length announced: 3 chunks of 60 bytes. */
  test_sconn_sends(sc, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  memcpy(chunk, "3c\r\n", 4);
  memset(chunk + 4, 'x', 60);
  memcpy(chunk + 64, "\r\n", 3);
  for (i = 0; i < 3; i++)
    test_sconn_sends(sc, chunk);
  test_sconn_sends(sc, "0\r\n\r\n");
}

static void test_respond_garbage(test_sconn_t *sc, const char *request) {
  (void)request;
  test_sconn_sends(sc, "SSH-2.0-OpenSSH_9.2\r\n\r\n");
}

/* Answers the first request on a connection; closes at the second, as a
 * server does that times an idle keep-alive connection out just as the
 * client reuses it. */
static void test_respond_stale(test_sconn_t *sc, const char *request) {
  if (sc->served == 0 && strstr(request, "/fresh-fails") == NULL)
    test_respond_ok(sc, request);
  else
    test_sconn_close(sc);
}

static void test_respond_stream_forever(test_sconn_t *sc, const char *request) {
  (void)request;
  test_sconn_sends(sc, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "6\r\nline1\n\r\n");
}

/* -------------------------------------------------------------- tests */

void test_http_client_keep_alive(ctest_t *t) {
  test_hc_t ctx;
  disco_http_client_stats_t st;
  char host[64];

  test_hc_setup(t, &ctx, test_respond_ok, NULL);
  if (ctest_failed(t))
    return;
  FETCH(t, &ctx, 0, NULL, "/a?x=1", NULL);
  FETCH(t, &ctx, 1, "POST", "/b", NULL);
  FETCH(t, &ctx, 2, "GET", "/c", NULL);
  ASSERT_EQ(t, ctx.results[0].err, 0);
  ASSERT_EQ(t, ctx.results[0].status, 200);
  ASSERT_STR_EQ(t, ctx.results[0].body, "/a?x=1 #1");
  ASSERT_STR_EQ(t, ctx.results[0].header, "one, two");
  ASSERT_EQ(t, ctx.results[0].headers_calls, 1);
  ASSERT_STR_EQ(t, ctx.results[1].body, "/b #2");
  ASSERT_STR_EQ(t, ctx.results[2].body, "/c #3");
  ASSERT_EQ(t, ctx.accepted, 1);
  /* The last request as sent: request line, Host, the caller's headers,
   * Content-Length only with a body. */
  snprintf(host, sizeof(host), "Host: 127.0.0.1:%d\r\n", ctx.port);
  ASSERT(t, strncmp(ctx.last_request, "GET /c HTTP/1.1\r\n", 17) == 0);
  ASSERT(t, strstr(ctx.last_request, host) != NULL);
  ASSERT(t, strstr(ctx.last_request, "X-Test: yes\r\n") != NULL);
  ASSERT(t, strstr(ctx.last_request, "Content-Length") == NULL);
  disco_http_client_stats(ctx.client, &st);
  ASSERT_EQ(t, st.connects, 1);
  ASSERT_EQ(t, st.requests, 3);
  ASSERT_EQ(t, st.reused, 2);
  ASSERT_EQ(t, st.idle, 1);
  ASSERT_EQ(t, st.active + st.queued + st.retried, 0);
  test_hc_finish(t, &ctx);
}

void test_http_client_chunked_split(ctest_t *t) {
  test_hc_t ctx;

  test_hc_setup(t, &ctx, test_respond_chunked_drip, NULL);
  if (ctest_failed(t))
    return;
  /* Records cut across chunks and reads; an empty record; the last one
   * unterminated. */
  FETCH(t, &ctx, 0, NULL, "/lines", "\n");
  ASSERT_EQ(t, ctx.results[0].err, 0);
  ASSERT_EQ(t, ctx.results[0].status, 200);
  ASSERT_STR_EQ(t, ctx.results[0].data, "ab|cd|efg||h");
  ASSERT_EQ(t, ctx.results[0].pieces, 5);
  ASSERT_EQ(t, ctx.results[0].headers_calls, 1);
  ASSERT_STR_EQ(t, ctx.results[0].body, "");
  /* A two-byte delimiter cut between reads. */
  FETCH(t, &ctx, 1, NULL, "/lines", "\n\n");
  ASSERT_STR_EQ(t, ctx.results[1].data, "ab\ncd\nefg|h");
  /* Buffered: the decoded body whole. */
  FETCH(t, &ctx, 2, NULL, "/lines", NULL);
  ASSERT_STR_EQ(t, ctx.results[2].body, "ab\ncd\nefg\n\nh");
  ASSERT_EQ(t, ctx.accepted, 1);
  test_hc_finish(t, &ctx);
}

void test_http_client_until_close(ctest_t *t) {
  test_hc_t ctx;
  disco_http_client_stats_t st;

  test_hc_setup(t, &ctx, test_respond_until_close, NULL);
  if (ctest_failed(t))
    return;
  FETCH(t, &ctx, 0, NULL, "/", NULL);
  ASSERT_EQ(t, ctx.results[0].err, 0);
  ASSERT_STR_EQ(t, ctx.results[0].body, "until the end");
  ASSERT_STR_EQ(t, ctx.results[0].header, "old");
  FETCH(t, &ctx, 1, NULL, "/", "");
  ASSERT_EQ(t, ctx.results[1].err, 0);
  ASSERT(t, ctx.results[1].pieces > 1);
  ASSERT_EQ(t, ctx.accepted, 2);
  disco_http_client_stats(ctx.client, &st);
  ASSERT_EQ(t, st.connections, 0);
  test_hc_finish(t, &ctx);
}

void test_http_client_close_mid_body(ctest_t *t) {
  test_hc_t ctx;

  test_hc_setup(t, &ctx, test_respond_mid_body, NULL);
  if (ctest_failed(t))
    return;
  FETCH(t, &ctx, 0, NULL, "/", NULL);
  ASSERT_EQ(t, ctx.results[0].err, DISCO_ECONNRESET);
  ASSERT_STR_EQ(t, ctx.results[0].message, "closed mid-body");
  ASSERT_EQ(t, ctx.results[0].status, 200);
  ASSERT_STR_EQ(t, ctx.results[0].body, "only ten b");
  test_hc_finish(t, &ctx);
}

void test_http_client_read_timeout(ctest_t *t) {
  test_hc_t ctx;
  disco_http_client_options_t opts;
  disco_http_client_request_t r;

  disco_http_client_options_init(&opts);
  opts.read_timeout_ms = 30;
  test_hc_setup(t, &ctx, test_respond_silent, &opts);
  if (ctest_failed(t))
    return;
  FETCH(t, &ctx, 0, NULL, "/", NULL);
  ASSERT_EQ(t, ctx.results[0].err, DISCO_ETIMEDOUT);
  ASSERT(t, strstr(ctx.results[0].message, "no response byte") != NULL);
  ASSERT_EQ(t, ctx.results[0].status, 0);
  /* The request's own deadline. */
  memset(&r, 0, sizeof(r));
  r.path = "/";
  r.timeout_ms = 10;
  r.on_done = test_hc_on_done;
  r.arg = &ctx.results[1];
  ASSERT_OK(t, disco_http_client_request(ctx.client, &r, &ctx.results[1].req));
  WAIT_ENDED(t, &ctx, 2);
  ASSERT_EQ(t, ctx.results[1].err, DISCO_ETIMEDOUT);
  ASSERT(t, strstr(ctx.results[1].message, "within its timeout") != NULL);
  test_hc_finish(t, &ctx);
}

void test_http_client_limits(ctest_t *t) {
  test_hc_t ctx;
  disco_http_client_options_t opts;

  disco_http_client_options_init(&opts);
  opts.max_header_bytes = 256;
  opts.max_body_bytes = 100;
  test_hc_setup(t, &ctx, test_respond_big_headers, &opts);
  if (ctest_failed(t))
    return;
  FETCH(t, &ctx, 0, NULL, "/", NULL);
  ASSERT_EQ(t, ctx.results[0].err, DISCO_EMSGSIZE);
  ASSERT(t, strstr(ctx.results[0].message, "max_header_bytes") != NULL);
  ctx.respond = test_respond_big_body;
  FETCH(t, &ctx, 1, NULL, "/announced", NULL);
  ASSERT_EQ(t, ctx.results[1].err, DISCO_EMSGSIZE);
  ASSERT(t, strstr(ctx.results[1].message, "Content-Length") != NULL);
  FETCH(t, &ctx, 2, NULL, "/chunked", NULL);
  ASSERT_EQ(t, ctx.results[2].err, DISCO_EMSGSIZE);
  ASSERT_STR_EQ(t, ctx.results[2].message, "body over max_body_bytes");
  /* Streamed without split: no bound on the whole body. */
  FETCH(t, &ctx, 3, NULL, "/chunked", "");
  ASSERT_EQ(t, ctx.results[3].err, 0);
  ASSERT_EQ(t, strlen(ctx.results[3].data) - (size_t)ctx.results[3].pieces + 1,
            180);
  /* Streamed with a split: one record of 180 is over the bound. */
  FETCH(t, &ctx, 4, NULL, "/chunked", "\n");
  ASSERT_EQ(t, ctx.results[4].err, DISCO_EMSGSIZE);
  ASSERT_STR_EQ(t, ctx.results[4].message, "record over max_body_bytes");
  ASSERT_EQ(t, ctx.results[4].pieces, 0);
  test_hc_finish(t, &ctx);
}

void test_http_client_garbage(ctest_t *t) {
  test_hc_t ctx;

  test_hc_setup(t, &ctx, test_respond_garbage, NULL);
  if (ctest_failed(t))
    return;
  FETCH(t, &ctx, 0, NULL, "/", NULL);
  ASSERT_EQ(t, ctx.results[0].err, DISCO_EPROTO);
  ASSERT(t, strncmp(ctx.results[0].message, "HPE_", 4) == 0);
  ASSERT_EQ(t, ctx.results[0].status, 0);
  test_hc_finish(t, &ctx);
}

void test_http_client_refused(ctest_t *t) {
  test_hc_t ctx;
  disco_http_client_t *other;
  disco_http_client_request_t r;

  test_hc_setup(t, &ctx, test_respond_ok, NULL);
  if (ctest_failed(t))
    return;
  /* A port nobody listens on: this test's listener, closed first. */
  uv_close((uv_handle_t *)&ctx.listener, test_listener_closed);
  disco_loop_run(&ctx.loop);
  uv_tcp_init(&ctx.loop.uv, &ctx.listener); /* for test_hc_finish */
  FETCH(t, &ctx, 0, NULL, "/", NULL);
  ASSERT_EQ(t, ctx.results[0].err, DISCO_ECONNREFUSED);
  ASSERT(t, strstr(ctx.results[0].message, "connect to 127.0.0.1:") != NULL);
  /* Bad arguments fail at once, without a callback. */
  ASSERT_EQ(t,
            disco_http_client_new(&ctx.loop, "localhost", 80, NULL, NULL, NULL,
                                  &other),
            DISCO_EINVAL);
  memset(&r, 0, sizeof(r));
  r.on_done = test_hc_on_done;
  r.arg = &ctx.results[1];
  r.path = "relative";
  ASSERT_EQ(t, disco_http_client_request(ctx.client, &r, &ctx.results[1].req),
            DISCO_EINVAL);
  r.path = "/a b";
  ASSERT_EQ(t, disco_http_client_request(ctx.client, &r, &ctx.results[1].req),
            DISCO_EINVAL);
  r.path = "/";
  r.method = "GE T";
  ASSERT_EQ(t, disco_http_client_request(ctx.client, &r, &ctx.results[1].req),
            DISCO_EINVAL);
  test_hc_finish(t, &ctx);
  ASSERT_EQ(t, ctx.results[1].done, 0);
}

void test_http_client_cancel(ctest_t *t) {
  test_hc_t ctx;
  disco_http_client_stats_t st;
  int i;

  test_hc_setup(t, &ctx, test_respond_stream_forever, NULL);
  if (ctest_failed(t))
    return;
  /* From inside on_data: no on_done; the connection closes. */
  ctx.cancel_on_data = 1;
  ASSERT_OK(t, test_hc_request(&ctx, 0, NULL, "/", "\n"));
  ASSERT_EQ(t, ctest_run_until(t, &ctx.loop, &ctx.done, 5000), 0);
  ASSERT_STR_EQ(t, ctx.results[0].data, "line1");
  /* From inside on_headers. */
  ctx.done = 0;
  ctx.cancel_on_data = 2;
  ASSERT_OK(t, test_hc_request(&ctx, 1, NULL, "/", "\n"));
  ASSERT_EQ(t, ctest_run_until(t, &ctx.loop, &ctx.done, 5000), 0);
  ASSERT_EQ(t, ctx.results[1].pieces, 0);
  /* From outside, queued and on a connection. */
  ctx.cancel_on_data = 0;
  ASSERT_OK(t, test_hc_request(&ctx, 2, NULL, "/", "\n"));
  disco_http_client_cancel(ctx.results[2].req);
  ctx.done = 0;
  ctx.done_on_data = 1;
  ASSERT_OK(t, test_hc_request(&ctx, 3, NULL, "/", "\n"));
  ASSERT_EQ(t, ctest_run_until(t, &ctx.loop, &ctx.done, 5000), 0);
  disco_http_client_cancel(ctx.results[3].req);
  for (i = 0; i < 10; i++)
    disco_loop_run_nowait(&ctx.loop);
  for (i = 0; i < 4; i++)
    ASSERT_EQ(t, ctx.results[i].done, 0);
  disco_http_client_stats(ctx.client, &st);
  ASSERT_EQ(t, st.connections, 0);
  ASSERT_EQ(t, st.connects, 3);
  ASSERT_EQ(t, ctx.accepted, 3);
  test_hc_finish(t, &ctx);
}

void test_http_client_close_pending(ctest_t *t) {
  test_hc_t ctx;
  disco_http_client_options_t opts;
  int i;

  disco_http_client_options_init(&opts);
  opts.max_connections = 1;
  test_hc_setup(t, &ctx, test_respond_silent, &opts);
  if (ctest_failed(t))
    return;
  for (i = 0; i < 3; i++)
    ASSERT_OK(t, test_hc_request(&ctx, i, NULL, "/", NULL));
  ctx.done_on_request = 1;
  ASSERT_EQ(t, ctest_run_until(t, &ctx.loop, &ctx.done, 5000), 0);
  ASSERT_EQ(t, ctx.requests, 1);
  disco_http_client_close(ctx.client);
  disco_http_client_close(ctx.client);
  for (i = 0; i < 3; i++) {
    ASSERT_EQ(t, ctx.results[i].done, 1);
    ASSERT_EQ(t, ctx.results[i].err, DISCO_ECANCELED);
    ASSERT_STR_EQ(t, ctx.results[i].message, "client closed");
  }
  ASSERT_EQ(t, ctx.client_closed, 0); /* later */
  ASSERT_EQ(t, disco_http_client_request(ctx.client, NULL, NULL), DISCO_EINVAL);
  test_hc_finish(t, &ctx);
}

void test_http_client_close_in_callback(ctest_t *t) {
  test_hc_t ctx;

  test_hc_setup(t, &ctx, test_respond_stream_forever, NULL);
  if (ctest_failed(t))
    return;
  ctx.close_on_data = 1;
  ASSERT_OK(t, test_hc_request(&ctx, 0, NULL, "/", "\n"));
  ASSERT_OK(t, test_hc_request(&ctx, 1, NULL, "/", "\n"));
  WAIT_ENDED(t, &ctx, 2);
  ASSERT_EQ(t, ctx.results[0].err, DISCO_ECANCELED);
  ASSERT_EQ(t, ctx.results[1].err, DISCO_ECANCELED);
  ASSERT_EQ(t, ctx.results[0].pieces + ctx.results[1].pieces, 1);
  test_hc_finish(t, &ctx);
}

void test_http_client_queue(ctest_t *t) {
  test_hc_t ctx;
  disco_http_client_options_t opts;
  disco_http_client_stats_t st;
  char path[16];
  int i;

  disco_http_client_options_init(&opts);
  opts.max_connections = 2;
  test_hc_setup(t, &ctx, test_respond_ok, &opts);
  if (ctest_failed(t))
    return;
  for (i = 0; i < TEST_HC_REQS; i++) {
    static char paths[TEST_HC_REQS][16];
    snprintf(paths[i], sizeof(paths[i]), "/%d", i);
    ASSERT_OK(t, test_hc_request(&ctx, i, NULL, paths[i], NULL));
  }
  disco_http_client_stats(ctx.client, &st);
  ASSERT_EQ(t, st.queued, TEST_HC_REQS);
  WAIT_ENDED(t, &ctx, TEST_HC_REQS);
  for (i = 0; i < TEST_HC_REQS; i++) {
    snprintf(path, sizeof(path), "/%d", i);
    ASSERT_EQ(t, ctx.results[i].err, 0);
    ASSERT(t, strncmp(ctx.results[i].body, path, strlen(path)) == 0);
    /* FIFO: the server read them in the order they were made. */
    ASSERT_STR_EQ(t, ctx.paths[i], path);
  }
  ASSERT_EQ(t, ctx.accepted, 2);
  disco_http_client_stats(ctx.client, &st);
  ASSERT_EQ(t, st.connects, 2);
  ASSERT_EQ(t, st.reused, TEST_HC_REQS - 2);
  ASSERT_EQ(t, st.queued + st.active, 0);
  test_hc_finish(t, &ctx);
}

void test_http_client_stale_retry(ctest_t *t) {
  test_hc_t ctx;
  disco_http_client_stats_t st;

  test_hc_setup(t, &ctx, test_respond_stale, NULL);
  if (ctest_failed(t))
    return;
  FETCH(t, &ctx, 0, NULL, "/one", NULL);
  ASSERT_EQ(t, ctx.results[0].err, 0);
  /* The pooled connection is closed by the server when reused: sent again
   * on a new connection. */
  FETCH(t, &ctx, 1, NULL, "/two", NULL);
  ASSERT_EQ(t, ctx.results[1].err, 0);
  ASSERT_STR_EQ(t, ctx.results[1].body, "/two #1");
  disco_http_client_stats(ctx.client, &st);
  ASSERT_EQ(t, st.retried, 1);
  ASSERT_EQ(t, st.connects, 2);
  /* A fresh connection that closes without an answer is not retried. */
  FETCH(t, &ctx, 2, NULL, "/fresh-fails", NULL);
  ASSERT_EQ(t, ctx.results[2].err, DISCO_ECONNRESET);
  ASSERT_STR_EQ(t, ctx.results[2].message, "closed before the response");
  disco_http_client_stats(ctx.client, &st);
  ASSERT_EQ(t, st.retried, 2); /* it was on the pooled one first */
  ASSERT_EQ(t, st.connects, 3);
  test_hc_finish(t, &ctx);
}

void test_http_client_loop_close(ctest_t *t) {
  test_hc_t ctx;
  int i;

  test_hc_setup(t, &ctx, test_respond_silent, NULL);
  if (ctest_failed(t))
    return;
  ASSERT_OK(t, test_hc_request(&ctx, 0, NULL, "/", NULL));
  ctx.done_on_request = 1;
  ASSERT_EQ(t, ctest_run_until(t, &ctx.loop, &ctx.done, 5000), 0);
  for (i = 0; i < TEST_HC_CONNS; i++)
    if (ctx.conns[i].open > 0)
      test_sconn_close(&ctx.conns[i]);
  uv_close((uv_handle_t *)&ctx.listener, test_listener_closed);
  /* disco_loop_close() closes the client, which ends the request. */
  ASSERT_OK(t, disco_loop_close(&ctx.loop));
  ASSERT_EQ(t, ctx.results[0].done, 1);
  ASSERT_EQ(t, ctx.results[0].err, DISCO_ECANCELED);
  ASSERT_EQ(t, ctx.client_closed, 1);
}

static void test_other_closed(void *handle, void *data) {
  int *closed = data;
  (void)handle;
  (*closed)++;
}

/* Takes no connection: libuv then stops accepting on this listener. */
static void test_never_accept(uv_stream_t *listener, int status) {
  (void)listener;
  (void)status;
}

static void test_filler_connected(uv_connect_t *req, int status) {
  (void)req;
  (void)status;
}

void test_http_client_connect_timeout(ctest_t *t) {
  test_hc_t ctx;
  disco_http_client_options_t opts;
  disco_http_client_t *other;
  disco_http_client_request_t r;
  uv_tcp_t full;
  uv_tcp_t fillers[3];
  uv_connect_t connects[3];
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int namelen = sizeof(bound);
  int closed = 0;
  int i;

  test_hc_setup(t, &ctx, test_respond_ok, NULL);
  if (ctest_failed(t))
    return;
  /* A listener that never accepts, its backlog filled: the kernel drops
   * further SYNs, so a connect hangs as towards a host that is down. */
  uv_tcp_init(&ctx.loop.uv, &full);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  ASSERT_EQ(t, uv_tcp_bind(&full, (struct sockaddr *)&addr, 0), 0);
  ASSERT_EQ(t, uv_listen((uv_stream_t *)&full, 0, test_never_accept), 0);
  uv_tcp_getsockname(&full, (struct sockaddr *)&bound, &namelen);
  for (i = 0; i < 3; i++) {
    uv_tcp_init(&ctx.loop.uv, &fillers[i]);
    uv_tcp_connect(&connects[i], &fillers[i], (struct sockaddr *)&bound,
                   test_filler_connected);
  }
  disco_http_client_options_init(&opts);
  opts.connect_timeout_ms = 50;
  ASSERT_OK(
      t, disco_http_client_new(&ctx.loop, "127.0.0.1",
                               ntohs(((struct sockaddr_in *)&bound)->sin_port),
                               &opts, test_other_closed, &closed, &other));
  memset(&r, 0, sizeof(r));
  r.path = "/";
  r.on_done = test_hc_on_done;
  r.arg = &ctx.results[0];
  ASSERT_OK(t, disco_http_client_request(other, &r, &ctx.results[0].req));
  WAIT_ENDED(t, &ctx, 1);
  ASSERT_EQ(t, ctx.results[0].err, DISCO_ETIMEDOUT);
  ASSERT(t, strstr(ctx.results[0].message, "connect to 127.0.0.1:") != NULL);
  disco_http_client_close(other);
  for (i = 0; i < 3; i++)
    uv_close((uv_handle_t *)&fillers[i], NULL);
  uv_close((uv_handle_t *)&full, NULL);
  test_hc_finish(t, &ctx);
  ASSERT_EQ(t, closed, 1);
}
