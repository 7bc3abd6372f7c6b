/*
 * The HTTP server on loopback, driven by raw TCP clients on the same loop:
 * keep-alive, bodies (Content-Length and chunked), a request split byte by
 * byte, pipelined requests answered in order, replies from a timer, a
 * client leaving before its reply, and every bound the server enforces
 * (400, 408, 413, 431, idle timeout, max_connections), then closing with
 * connections open. Each test ends by closing its loop, so each is a leak
 * check too under `make valgrind`.
 */
#include <stdio.h>
#include <stdlib.h>

#include "ctest.h"

#define TEST_HTTP_CLIENTS 4

typedef struct test_http_ctx_s test_http_ctx_t;

/* A raw client: what it sent is its business, what came back is in recv. */
typedef struct {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_shutdown_t shutdown;
  test_http_ctx_t *ctx;
  char recv[16384];
  size_t recv_len;
  int open;      /* the handle is initialised and not closed */
  int connected; /* the connect completed */
  int eof;       /* the server closed (or the connection failed) */
  int done;      /* what the test waits for happened */
  int want_responses;
  int want_eof;
} test_client_t;

struct test_http_ctx_s {
  ctest_t *t;
  disco_loop_t loop;
  disco_http_server_t *server;
  test_client_t clients[TEST_HTTP_CLIENTS];
  uv_timer_t poll;
  uv_timer_t later;
  int later_open;
  uint64_t held_id; /* a request left for later */
  int held;
  int server_closed;
  int done;
  uint64_t want_connections;
  /* What the last request looked like. */
  char method[16];
  char path[64];
  char query[64];
  char body[256];
  char header[128]; /* the value of x-test */
  char peer[64];
  int keep_alive;
};

/* ------------------------------------------------------------ server */

static void test_http_copy(char *dst, size_t size, const char *src,
                           size_t len) {
  if (len >= size)
    len = size - 1;
  memcpy(dst, src, len);
  dst[len] = '\0';
}

static void test_http_later_cb(uv_timer_t *timer) {
  test_http_ctx_t *ctx = timer->data;
  ASSERT_OK(ctx->t, disco_http_server_reply(ctx->server, ctx->held_id, 200,
                                            NULL, 0, "later", 5));
  ctx->held = 0;
}

static void test_http_on_request(disco_http_server_t *server,
                                 const disco_http_request_t *req) {
  test_http_ctx_t *ctx = disco_http_server_data(server);
  disco_http_header_t h = { "X-Reply", 7, "yes", 3 };
  char body[512];
  size_t i;
  int n;

  test_http_copy(ctx->method, sizeof(ctx->method), req->method,
                 strlen(req->method));
  test_http_copy(ctx->path, sizeof(ctx->path), req->path, req->path_len);
  if (req->query != NULL)
    test_http_copy(ctx->query, sizeof(ctx->query), req->query, req->query_len);
  else
    strcpy(ctx->query, "(none)");
  test_http_copy(ctx->body, sizeof(ctx->body), req->body, req->body_len);
  strcpy(ctx->header, "(none)");
  for (i = 0; i < req->nheaders; i++)
    if (strcmp(req->headers[i].name, "x-test") == 0)
      test_http_copy(ctx->header, sizeof(ctx->header), req->headers[i].value,
                     req->headers[i].value_len);
  test_http_copy(ctx->peer, sizeof(ctx->peer), req->peer, strlen(req->peer));
  ctx->keep_alive = req->keep_alive;

  if (strcmp(ctx->path, "/later") == 0) {
    ctx->held_id = req->id;
    ctx->held = 1;
    uv_timer_start(&ctx->later, test_http_later_cb, 50, 0);
  } else if (strcmp(ctx->path, "/never") == 0) {
    ctx->held_id = req->id;
    ctx->held = 1;
  } else {
    n = snprintf(body, sizeof(body), "%s %s %zu", ctx->method, ctx->path,
                 req->body_len);
    ASSERT_OK(ctx->t, disco_http_server_reply(server, req->id, 200, &h, 1, body,
                                              (size_t)n));
    /* Once only. */
    ASSERT_EQ(ctx->t,
              disco_http_server_reply(server, req->id, 200, NULL, 0, NULL, 0),
              DISCO_ECLOSED);
  }
}

static void test_http_server_closed(void *handle, void *data) {
  test_http_ctx_t *ctx = data;
  (void)handle;
  ctx->server_closed++;
}

static void test_http_later_closed(uv_handle_t *h) {
  (void)h;
}

/* Polls the server's open connection count (nothing calls back when the
 * server closes a connection by itself). */
static void test_http_poll_cb(uv_timer_t *timer) {
  test_http_ctx_t *ctx = timer->data;
  disco_http_server_stats_t st;
  if (ctx->server == NULL)
    return;
  disco_http_server_stats(ctx->server, &st);
  if (st.connections == ctx->want_connections)
    ctx->done = 1;
}

static void test_http_setup(ctest_t *t, test_http_ctx_t *ctx,
                            const disco_http_server_options_t *opts) {
  memset(ctx, 0, sizeof(*ctx));
  ctx->t = t;
  ASSERT_OK(t, disco_loop_init(&ctx->loop));
  uv_timer_init(&ctx->loop.uv, &ctx->later);
  ctx->later.data = ctx;
  ctx->later_open = 1;
  ASSERT_OK(t, disco_http_server_new(
                   &ctx->loop, "127.0.0.1", 0, opts, test_http_on_request,
                   test_http_server_closed, ctx, &ctx->server));
  ASSERT(t, disco_http_server_port(ctx->server) > 0);
}

static void test_client_closed(uv_handle_t *h) {
  test_client_t *cl = h->data;
  cl->open = 0;
}

/* Closes what is still open, runs the loop dry and closes it. */
static void test_http_finish(ctest_t *t, test_http_ctx_t *ctx) {
  int i;

  for (i = 0; i < TEST_HTTP_CLIENTS; i++)
    if (ctx->clients[i].open &&
        !uv_is_closing((uv_handle_t *)&ctx->clients[i].tcp))
      uv_close((uv_handle_t *)&ctx->clients[i].tcp, test_client_closed);
  if (ctx->later_open) {
    uv_close((uv_handle_t *)&ctx->later, test_http_later_closed);
    ctx->later_open = 0;
  }
  if (ctx->server_closed == 0) /* else freed already */
    disco_http_server_close(ctx->server);
  ASSERT_EQ(t, disco_loop_run(&ctx->loop), 0);
  ASSERT_EQ(t, ctx->server_closed, 1);
  ASSERT_OK(t, disco_loop_close(&ctx->loop));
}

/* Waits until the server has `n` connections open. */
static int test_http_wait_connections(ctest_t *t, test_http_ctx_t *ctx,
                                      uint64_t n) {
  int rc;
  ctx->done = 0;
  ctx->want_connections = n;
  uv_timer_init(&ctx->loop.uv, &ctx->poll);
  ctx->poll.data = ctx;
  uv_timer_start(&ctx->poll, test_http_poll_cb, 5, 5);
  rc = ctest_run_until(t, &ctx->loop, &ctx->done, 5000);
  uv_close((uv_handle_t *)&ctx->poll, NULL);
  return rc;
}

/* ------------------------------------------------------------ clients */

/* How many whole responses (head plus Content-Length bytes of body) are
 * at the start of buf. */
static int test_count_responses(const char *buf, size_t len) {
  size_t pos = 0;
  int n = 0;

  while (pos < len) {
    const char *end = NULL;
    const char *cl;
    size_t i, body = 0;
    for (i = pos; i + 3 < len; i++)
      if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
        end = buf + i;
        break;
      }
    if (end == NULL)
      break;
    for (cl = buf + pos; cl < end; cl++)
      if (strncmp(cl, "Content-Length: ", 16) == 0) {
        body = strtoul(cl + 16, NULL, 10);
        break;
      }
    if ((size_t)(end + 4 - buf) + body > len)
      break;
    pos = (size_t)(end + 4 - buf) + body;
    n++;
  }
  return n;
}

static void test_client_check(test_client_t *cl) {
  if ((cl->want_eof && cl->eof) ||
      (cl->want_responses > 0 &&
       test_count_responses(cl->recv, cl->recv_len) >= cl->want_responses))
    cl->done = 1;
}

static void test_client_alloc(uv_handle_t *h, size_t n, uv_buf_t *buf) {
  test_client_t *cl = h->data;
  (void)n;
  *buf = uv_buf_init(cl->recv + cl->recv_len,
                     (unsigned int)(sizeof(cl->recv) - 1 - cl->recv_len));
}

static void test_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  test_client_t *cl = s->data;
  (void)buf;
  if (n < 0) {
    cl->eof = 1;
    uv_close((uv_handle_t *)&cl->tcp, test_client_closed);
  } else {
    cl->recv_len += (size_t)n;
    cl->recv[cl->recv_len] = '\0';
  }
  test_client_check(cl);
}

static void test_client_connected(uv_connect_t *req, int status) {
  test_client_t *cl = req->data;
  if (status != 0) {
    cl->eof = 1;
    uv_close((uv_handle_t *)&cl->tcp, test_client_closed);
  } else {
    cl->connected = 1;
    uv_read_start((uv_stream_t *)&cl->tcp, test_client_alloc, test_client_read);
  }
  cl->done = 1;
}

/* Connects client i and waits for the connect. */
static test_client_t *test_client_open(test_http_ctx_t *ctx, int i) {
  test_client_t *cl = &ctx->clients[i];
  struct sockaddr_in addr;

  memset(cl, 0, sizeof(*cl));
  cl->ctx = ctx;
  uv_tcp_init(&ctx->loop.uv, &cl->tcp);
  cl->tcp.data = cl;
  cl->connect.data = cl;
  cl->open = 1;
  uv_ip4_addr("127.0.0.1", disco_http_server_port(ctx->server), &addr);
  uv_tcp_connect(&cl->connect, &cl->tcp, (struct sockaddr *)&addr,
                 test_client_connected);
  if (ctest_run_until(ctx->t, &ctx->loop, &cl->done, 5000) != 0)
    return cl;
  cl->done = 0;
  return cl;
}

static void test_client_written(uv_write_t *req, int status) {
  (void)status;
  free(req);
}

static void test_client_send(test_client_t *cl, const char *data, size_t len) {
  uv_write_t *req = malloc(sizeof(*req) + len);
  char *copy = (char *)(req + 1);
  uv_buf_t b;

  memcpy(copy, data, len);
  b = uv_buf_init(copy, (unsigned int)len);
  uv_write(req, (uv_stream_t *)&cl->tcp, &b, 1, test_client_written);
}

static void test_client_sends(test_client_t *cl, const char *s) {
  test_client_send(cl, s, strlen(s));
}

/* Closes the client's sending side (after what it wrote). */
static void test_client_shutdown(test_client_t *cl) {
  uv_shutdown(&cl->shutdown, (uv_stream_t *)&cl->tcp, NULL);
}

/* Waits for n whole responses in all (n = 0: for the server's close). */
#define WAIT_CLIENT(t, ctx, cl, n, eof)                                        \
  do {                                                                         \
    (cl)->done = 0;                                                            \
    (cl)->want_responses = (n);                                                \
    (cl)->want_eof = (eof);                                                    \
    test_client_check(cl);                                                     \
    if (ctest_run_until((t), &(ctx)->loop, &(cl)->done, 5000) != 0)            \
      return;                                                                  \
  } while (0)

/* -------------------------------------------------------------- tests */

void test_http_keep_alive(ctest_t *t) {
  test_http_ctx_t ctx;
  test_client_t *cl;
  disco_http_server_stats_t st;
  char addr[64];
  char want[64];

  test_http_setup(t, &ctx, NULL);
  if (ctest_failed(t))
    return;
  disco_http_server_address(ctx.server, addr, sizeof(addr));
  snprintf(want, sizeof(want), "127.0.0.1:%d",
           disco_http_server_port(ctx.server));
  ASSERT_STR_EQ(t, addr, want);
  cl = test_client_open(&ctx, 0);
  ASSERT(t, cl->connected);
  test_client_sends(cl, "GET /a/b%20c?x=1&y HTTP/1.1\r\nHost: h\r\n"
                        "X-Test: one\r\nx-test:  two  \r\n\r\n");
  WAIT_CLIENT(t, &ctx, cl, 1, 0);
  ASSERT(t, strncmp(cl->recv, "HTTP/1.1 200 OK\r\n", 17) == 0);
  ASSERT(t, strstr(cl->recv, "X-Reply: yes\r\n") != NULL);
  ASSERT(t, strstr(cl->recv, "Content-Length: 14\r\n") != NULL);
  ASSERT(t, strstr(cl->recv, "Connection:") == NULL);
  ASSERT(t, strstr(cl->recv, "\r\n\r\nGET /a/b%20c 0") != NULL);
  ASSERT_STR_EQ(t, ctx.method, "GET");
  ASSERT_STR_EQ(t, ctx.path, "/a/b%20c");
  ASSERT_STR_EQ(t, ctx.query, "x=1&y");
  ASSERT_STR_EQ(t, ctx.header, "one, two");
  ASSERT_STR_EQ(t, ctx.body, "");
  ASSERT(t, strncmp(ctx.peer, "127.0.0.1:", 10) == 0);
  ASSERT_EQ(t, ctx.keep_alive, 1);

  /* The same connection again; then HTTP/1.0 without keep-alive closes. */
  test_client_sends(cl, "GET /second-one HTTP/1.1\r\nHost: h\r\n\r\n");
  WAIT_CLIENT(t, &ctx, cl, 2, 0);
  ASSERT_STR_EQ(t, ctx.path, "/second-one");
  test_client_sends(cl, "GET /third HTTP/1.0\r\n\r\n");
  WAIT_CLIENT(t, &ctx, cl, 0, 1);
  ASSERT_EQ(t, test_count_responses(cl->recv, cl->recv_len), 3);
  ASSERT_STR_EQ(t, ctx.path, "/third");
  ASSERT_EQ(t, ctx.keep_alive, 0);
  ASSERT(t, strstr(cl->recv, "Connection: close\r\n\r\nGET /third 0") != NULL);

  /* HEAD: the length a GET would get, no body; Connection: close is
   * honoured. */
  cl = test_client_open(&ctx, 1);
  test_client_sends(cl, "HEAD /second-one HTTP/1.1\r\nConnection: close\r\n"
                        "\r\n");
  WAIT_CLIENT(t, &ctx, cl, 0, 1);
  ASSERT(t, cl->recv_len > 40);
  ASSERT_STR_EQ(t, cl->recv + cl->recv_len - 41,
                "Content-Length: 18\r\nConnection: close\r\n\r\n");
  disco_http_server_stats(ctx.server, &st);
  ASSERT_EQ(t, st.accepted, 2);
  ASSERT_EQ(t, st.requests, 4);
  ASSERT_EQ(t, st.replies, 4);
  ASSERT_EQ(t, st.bad_requests + st.too_large + st.timeouts + st.refused, 0);
  test_http_finish(t, &ctx);
}

void test_http_bodies(ctest_t *t) {
  test_http_ctx_t ctx;
  test_client_t *cl;

  test_http_setup(t, &ctx, NULL);
  if (ctest_failed(t))
    return;
  cl = test_client_open(&ctx, 0);
  test_client_sends(cl, "POST /p HTTP/1.1\r\nHost: h\r\n"
                        "Content-Length: 11\r\n\r\nhello world");
  WAIT_CLIENT(t, &ctx, cl, 1, 0);
  ASSERT_STR_EQ(t, ctx.method, "POST");
  ASSERT_STR_EQ(t, ctx.body, "hello world");
  ASSERT(t, strstr(cl->recv, "POST /p 11") != NULL);
  test_client_sends(cl, "PUT /c HTTP/1.1\r\nHost: h\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n"
                        "5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n"
                        "0\r\nX-Trailer: t\r\n\r\n");
  WAIT_CLIENT(t, &ctx, cl, 2, 0);
  ASSERT_STR_EQ(t, ctx.method, "PUT");
  ASSERT_STR_EQ(t, ctx.body, "hello, world");
  ASSERT(t, strstr(cl->recv, "PUT /c 12") != NULL);
  test_http_finish(t, &ctx);
}

void test_http_byte_by_byte(ctest_t *t) {
  test_http_ctx_t ctx;
  test_client_t *cl;
  const char req[] = "POST /slow?q=1 HTTP/1.1\r\nHost: h\r\nX-Test: v\r\n"
                     "Content-Length: 4\r\n\r\nbody";
  size_t i;
  int k;

  test_http_setup(t, &ctx, NULL);
  if (ctest_failed(t))
    return;
  cl = test_client_open(&ctx, 0);
  for (i = 0; i + 1 < sizeof(req); i++) {
    test_client_send(cl, req + i, 1);
    /* Let each byte arrive on its own. */
    for (k = 0; k < 3; k++)
      disco_loop_run_nowait(&ctx.loop);
  }
  WAIT_CLIENT(t, &ctx, cl, 1, 0);
  ASSERT_STR_EQ(t, ctx.path, "/slow");
  ASSERT_STR_EQ(t, ctx.query, "q=1");
  ASSERT_STR_EQ(t, ctx.header, "v");
  ASSERT_STR_EQ(t, ctx.body, "body");
  test_http_finish(t, &ctx);
}

void test_http_pipelined_in_order(ctest_t *t) {
  test_http_ctx_t ctx;
  test_client_t *cl;
  char *first;
  char *second;

  test_http_setup(t, &ctx, NULL);
  if (ctest_failed(t))
    return;
  cl = test_client_open(&ctx, 0);
  /* The first is answered from a timer; the second must wait for it. */
  test_client_sends(cl, "GET /later HTTP/1.1\r\nHost: h\r\n\r\n"
                        "GET /now HTTP/1.1\r\nHost: h\r\n\r\n");
  WAIT_CLIENT(t, &ctx, cl, 2, 0);
  first = strstr(cl->recv, "\r\n\r\nlater");
  second = strstr(cl->recv, "\r\n\r\nGET /now 0");
  ASSERT(t, first != NULL && second != NULL && first < second);
  test_http_finish(t, &ctx);
}

void test_http_malformed(ctest_t *t) {
  test_http_ctx_t ctx;
  test_client_t *cl;
  disco_http_server_stats_t st;

  test_http_setup(t, &ctx, NULL);
  if (ctest_failed(t))
    return;
  cl = test_client_open(&ctx, 0);
  test_client_sends(cl, "GARBAGE\r\n\r\n");
  WAIT_CLIENT(t, &ctx, cl, 0, 1);
  ASSERT(t, strncmp(cl->recv, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
  ASSERT(t, strstr(cl->recv, "Connection: close\r\n") != NULL);
  ASSERT(t, strstr(cl->recv, "HPE_INVALID_METHOD") != NULL);
  /* A bad header line on a good start. */
  cl = test_client_open(&ctx, 1);
  test_client_sends(cl, "GET / HTTP/1.1\r\nBad Header\r\n\r\n");
  WAIT_CLIENT(t, &ctx, cl, 0, 1);
  ASSERT(t, strncmp(cl->recv, "HTTP/1.1 400 ", 13) == 0);
  ASSERT(t, strstr(cl->recv, "HPE_") != NULL);
  disco_http_server_stats(ctx.server, &st);
  ASSERT_EQ(t, st.bad_requests, 2);
  ASSERT_EQ(t, st.requests, 0);
  test_http_finish(t, &ctx);
}

void test_http_limits(ctest_t *t) {
  test_http_ctx_t ctx;
  test_client_t *cl;
  disco_http_server_options_t opts;
  disco_http_server_stats_t st;
  char req[2048];
  int i, n;

  disco_http_server_options_init(&opts);
  opts.max_headers = 4;
  opts.max_header_bytes = 256;
  opts.max_body_bytes = 10;
  test_http_setup(t, &ctx, &opts);
  if (ctest_failed(t))
    return;

  /* Five headers. */
  cl = test_client_open(&ctx, 0);
  n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\n");
  for (i = 0; i < 5; i++)
    n += snprintf(req + n, sizeof(req) - (size_t)n, "H%d: v\r\n", i);
  snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
  test_client_sends(cl, req);
  WAIT_CLIENT(t, &ctx, cl, 0, 1);
  ASSERT(t, strncmp(cl->recv, "HTTP/1.1 431 ", 13) == 0);
  ASSERT(t, strstr(cl->recv, "max_headers") != NULL);

  /* One long header. */
  cl = test_client_open(&ctx, 1);
  n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nX-Long: ");
  memset(req + n, 'a', 300);
  snprintf(req + n + 300, sizeof(req) - (size_t)n - 300, "\r\n\r\n");
  test_client_sends(cl, req);
  WAIT_CLIENT(t, &ctx, cl, 0, 1);
  ASSERT(t, strncmp(cl->recv, "HTTP/1.1 431 ", 13) == 0);
  ASSERT(t, strstr(cl->recv, "max_header_bytes") != NULL);

  /* A body announced too large, refused before it comes. */
  cl = test_client_open(&ctx, 2);
  test_client_sends(cl, "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n");
  WAIT_CLIENT(t, &ctx, cl, 0, 1);
  ASSERT(t, strncmp(cl->recv, "HTTP/1.1 413 ", 13) == 0);

  /* A chunked body growing too large. */
  cl = test_client_open(&ctx, 3);
  test_client_sends(cl, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n");
  WAIT_CLIENT(t, &ctx, cl, 0, 1);
  ASSERT(t, strncmp(cl->recv, "HTTP/1.1 413 ", 13) == 0);

  /* Exactly at the limits is fine. */
  cl = test_client_open(&ctx, 0);
  test_client_sends(cl, "POST /ok HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n"
                        "Content-Length: 10\r\n\r\n0123456789");
  WAIT_CLIENT(t, &ctx, cl, 1, 0);
  ASSERT(t, strstr(cl->recv, "POST /ok 10") != NULL);
  disco_http_server_stats(ctx.server, &st);
  ASSERT_EQ(t, st.too_large, 4);
  ASSERT_EQ(t, st.requests, 1);
  test_http_finish(t, &ctx);
}

void test_http_request_timeout(ctest_t *t) {
  test_http_ctx_t ctx;
  test_client_t *cl;
  disco_http_server_options_t opts;
  disco_http_server_stats_t st;

  disco_http_server_options_init(&opts);
  opts.request_timeout_ms = 100;
  test_http_setup(t, &ctx, &opts);
  if (ctest_failed(t))
    return;
  cl = test_client_open(&ctx, 0);
  test_client_sends(cl, "GET / HTTP/1.1\r\nHost: h\r\n");
  WAIT_CLIENT(t, &ctx, cl, 0, 1);
  ASSERT(t, strncmp(cl->recv, "HTTP/1.1 408 Request Timeout\r\n", 30) == 0);
  disco_http_server_stats(ctx.server, &st);
  ASSERT_EQ(t, st.timeouts, 1);
  ASSERT_EQ(t, st.requests, 0);
  test_http_finish(t, &ctx);
}

void test_http_idle_timeout(ctest_t *t) {
  test_http_ctx_t ctx;
  test_client_t *cl;
  disco_http_server_options_t opts;
  disco_http_server_stats_t st;

  disco_http_server_options_init(&opts);
  opts.idle_timeout_ms = 100;
  test_http_setup(t, &ctx, &opts);
  if (ctest_failed(t))
    return;
  cl = test_client_open(&ctx, 0);
  test_client_sends(cl, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  WAIT_CLIENT(t, &ctx, cl, 1, 0);
  /* Then nothing: the server closes without a word. */
  WAIT_CLIENT(t, &ctx, cl, 0, 1);
  ASSERT_EQ(t, test_count_responses(cl->recv, cl->recv_len), 1);
  ASSERT(t, strstr(cl->recv, "408") == NULL);
  disco_http_server_stats(ctx.server, &st);
  ASSERT_EQ(t, st.timeouts, 0);
  ASSERT_EQ(t, st.connections, 0);
  test_http_finish(t, &ctx);
}

void test_http_max_connections(ctest_t *t) {
  test_http_ctx_t ctx;
  test_client_t *cl;
  disco_http_server_options_t opts;
  disco_http_server_stats_t st;

  disco_http_server_options_init(&opts);
  opts.max_connections = 2;
  test_http_setup(t, &ctx, &opts);
  if (ctest_failed(t))
    return;
  test_client_open(&ctx, 0);
  test_client_open(&ctx, 1);
  ASSERT_EQ(t, test_http_wait_connections(t, &ctx, 2), 0);
  cl = test_client_open(&ctx, 2);
  WAIT_CLIENT(t, &ctx, cl, 0, 1);
  ASSERT_EQ(t, cl->recv_len, 0);
  disco_http_server_stats(ctx.server, &st);
  ASSERT_EQ(t, st.refused, 1);
  ASSERT_EQ(t, st.accepted, 3);
  ASSERT_EQ(t, st.connections, 2);
  /* The admitted ones are served. */
  cl = &ctx.clients[1];
  test_client_sends(cl, "GET /in HTTP/1.1\r\n\r\n");
  WAIT_CLIENT(t, &ctx, cl, 1, 0);
  test_http_finish(t, &ctx);
}

void test_http_async_reply(ctest_t *t) {
  test_http_ctx_t ctx;
  test_client_t *cl;

  test_http_setup(t, &ctx, NULL);
  if (ctest_failed(t))
    return;
  cl = test_client_open(&ctx, 0);
  test_client_sends(cl, "GET /later HTTP/1.1\r\nHost: h\r\n\r\n");
  WAIT_CLIENT(t, &ctx, cl, 1, 0);
  ASSERT_EQ(t, ctx.held, 0);
  ASSERT(t, strstr(cl->recv, "\r\n\r\nlater") != NULL);
  /* The connection is still good. */
  test_client_sends(cl, "GET /again HTTP/1.1\r\nHost: h\r\n\r\n");
  WAIT_CLIENT(t, &ctx, cl, 2, 0);
  test_http_finish(t, &ctx);
}

void test_http_client_gone(ctest_t *t) {
  test_http_ctx_t ctx;
  test_client_t *cl;
  disco_http_server_stats_t st;

  test_http_setup(t, &ctx, NULL);
  if (ctest_failed(t))
    return;
  cl = test_client_open(&ctx, 0);
  test_client_sends(cl, "GET /never HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_EQ(t, test_http_wait_connections(t, &ctx, 1), 0);
  ASSERT_EQ(t, ctest_run_until(t, &ctx.loop, &ctx.held, 5000), 0);
  uv_close((uv_handle_t *)&cl->tcp, test_client_closed);
  ASSERT_EQ(t, test_http_wait_connections(t, &ctx, 0), 0);
  ASSERT_EQ(
      t,
      disco_http_server_reply(ctx.server, ctx.held_id, 200, NULL, 0, "late", 4),
      DISCO_ECLOSED);
  disco_http_server_stats(ctx.server, &st);
  ASSERT_EQ(t, st.requests, 1);
  ASSERT_EQ(t, st.replies, 0);
  test_http_finish(t, &ctx);
}

void test_http_close_with_connections(ctest_t *t) {
  test_http_ctx_t ctx;
  test_client_t *a;
  test_client_t *b;
  test_client_t *c;

  test_http_setup(t, &ctx, NULL);
  if (ctest_failed(t))
    return;
  a = test_client_open(&ctx, 0); /* idle */
  b = test_client_open(&ctx, 1); /* in the middle of a request */
  c = test_client_open(&ctx, 2); /* awaiting its reply */
  test_client_sends(b, "POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nab");
  test_client_sends(c, "GET /never HTTP/1.1\r\n\r\n");
  ASSERT_EQ(t, test_http_wait_connections(t, &ctx, 3), 0);
  ASSERT_EQ(t, ctest_run_until(t, &ctx.loop, &ctx.held, 5000), 0);
  disco_http_server_close(ctx.server);
  disco_http_server_close(ctx.server); /* idempotent */
  ASSERT_EQ(
      t,
      disco_http_server_reply(ctx.server, ctx.held_id, 200, NULL, 0, NULL, 0),
      DISCO_ECLOSED);
  WAIT_CLIENT(t, &ctx, a, 0, 1);
  WAIT_CLIENT(t, &ctx, b, 0, 1);
  WAIT_CLIENT(t, &ctx, c, 0, 1);
  ASSERT_EQ(t, a->recv_len + b->recv_len + c->recv_len, 0);
  test_http_finish(t, &ctx);
}

void test_http_invalid(ctest_t *t) {
  disco_loop_t loop;
  disco_http_server_t *s;
  disco_http_server_t *other;
  disco_http_server_options_t opts;
  disco_http_header_t bad = { "X", 1, "a\r\nb", 4 };

  ASSERT_OK(t, disco_loop_init(&loop));
  disco_http_server_options_init(&opts);
  opts.max_headers = 0;
  ASSERT_EQ(t,
            disco_http_server_new(&loop, "127.0.0.1", 0, &opts,
                                  test_http_on_request, NULL, NULL, &s),
            DISCO_EINVAL);
  ASSERT_EQ(t,
            disco_http_server_new(&loop, "nowhere", 0, NULL,
                                  test_http_on_request, NULL, NULL, &s),
            DISCO_EINVAL);
  ASSERT_OK(t, disco_http_server_new(&loop, "127.0.0.1", 0, NULL,
                                     test_http_on_request, NULL, NULL, &s));
  ASSERT_EQ(t,
            disco_http_server_new(&loop, "127.0.0.1", disco_http_server_port(s),
                                  NULL, test_http_on_request, NULL, NULL,
                                  &other),
            DISCO_EADDRINUSE);
  ASSERT_EQ(t, disco_http_server_reply(s, 1, 99, NULL, 0, NULL, 0),
            DISCO_EINVAL);
  ASSERT_EQ(t, disco_http_server_reply(s, 1, 200, &bad, 1, NULL, 0),
            DISCO_EINVAL);
  ASSERT_EQ(t, disco_http_server_reply(s, 1, 200, NULL, 0, NULL, 0),
            DISCO_ECLOSED);
  /* Closed with the loop. */
  ASSERT_OK(t, disco_loop_close(&loop));
}

void test_http_half_close(ctest_t *t) {
  test_http_ctx_t ctx;
  test_client_t *cl;

  test_http_setup(t, &ctx, NULL);
  if (ctest_failed(t))
    return;
  /* A client that sends its request and closes its side still gets the
   * reply: keep-alive, HTTP/1.0 and a refused request alike. */
  cl = test_client_open(&ctx, 0);
  test_client_sends(cl, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
  test_client_shutdown(cl);
  WAIT_CLIENT(t, &ctx, cl, 0, 1);
  ASSERT_EQ(t, test_count_responses(cl->recv, cl->recv_len), 1);
  ASSERT(t, strstr(cl->recv, "GET /a 0") != NULL);
  cl = test_client_open(&ctx, 1);
  test_client_sends(cl, "GET /b HTTP/1.0\r\n\r\n");
  test_client_shutdown(cl);
  WAIT_CLIENT(t, &ctx, cl, 0, 1);
  ASSERT(t, strstr(cl->recv, "GET /b 0") != NULL);
  cl = test_client_open(&ctx, 2);
  test_client_sends(cl, "NOT HTTP\r\n\r\n");
  test_client_shutdown(cl);
  WAIT_CLIENT(t, &ctx, cl, 0, 1);
  ASSERT(t, strncmp(cl->recv, "HTTP/1.1 400 ", 13) == 0);
  ASSERT_EQ(t, test_http_wait_connections(t, &ctx, 0), 0);
  test_http_finish(t, &ctx);
}
