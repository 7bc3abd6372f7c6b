/*
 * The dubbo protocol: the frame codec and assembler, request and response
 * bodies, a server and a client talking over loopback (replies sync and
 * async, status mapping, timeouts, heartbeats, many concurrent calls,
 * reconnects, close), and a server surviving abusive peers.
 */
#include <stdio.h>
#include <stdlib.h>

#include "ctest.h"

/* ------------------------------------------------------------ helpers */

static void test_dubbo_header(char *out, uint8_t flags, int64_t id,
                              uint32_t len) {
  disco_dubbo_header_t h;

  memset(&h, 0, sizeof(h));
  h.flags = flags;
  h.id = id;
  h.body_len = len;
  disco_dubbo_header_encode(&h, out);
}

/* ------------------------------------------------------- frame codec */

void test_dubbo_frame_codec(ctest_t *t) {
  disco_dubbo_framer_t *f;
  disco_dubbo_frame_t frame;
  disco_dubbo_header_t h;
  char stream[16 + 5 + 17 + 16];
  char bad[16];
  const char *why;
  size_t used, i, pos;
  int got = 0;
  int rc;

  test_dubbo_header(stream, 0xc2, 7, 5);
  memcpy(stream + 16, "hello", 5);
  disco_dubbo_heartbeat_encode(8, 0, stream + 21);
  test_dubbo_header(stream + 38, 0x02, -1, 0);
  ASSERT_OK(t, disco_dubbo_header_decode(stream, 0, &h, NULL));
  ASSERT_EQ(t, h.flags, 0xc2);
  ASSERT_EQ(t, h.id, 7);
  ASSERT_EQ(t, h.body_len, 5);

  /* One byte at a time. */
  ASSERT_OK(t, disco_dubbo_framer_new(0, &f));
  for (i = 0; i < sizeof(stream); i++) {
    rc = disco_dubbo_framer_feed(f, stream + i, 1, &used, &frame);
    ASSERT_EQ(t, used, 1);
    if (rc == 1) {
      got++;
      if (got == 1) {
        ASSERT_EQ(t, frame.header.id, 7);
        ASSERT(t, memcmp(frame.body, "hello", 5) == 0);
      } else if (got == 2) {
        ASSERT_EQ(t, frame.header.flags, 0xe2);
        ASSERT_EQ(t, frame.body[0], 'N');
      } else {
        ASSERT_EQ(t, frame.header.id, -1);
        ASSERT_EQ(t, frame.header.body_len, 0);
      }
    } else {
      ASSERT_EQ(t, rc, 0);
      ASSERT(t, disco_dubbo_framer_pending(f) > 0);
    }
  }
  ASSERT_EQ(t, got, 3);
  /* All at once. */
  got = 0;
  for (pos = 0; pos < sizeof(stream); pos += used) {
    rc = disco_dubbo_framer_feed(f, stream + pos, sizeof(stream) - pos, &used,
                                 &frame);
    got += rc == 1;
  }
  ASSERT_EQ(t, got, 3);
  ASSERT_EQ(t, disco_dubbo_framer_pending(f), 0);
  disco_dubbo_framer_free(f);

  /* Errors: magic (even before a whole header), serialization, negative
   * length, over max_frame. */
  ASSERT_OK(t, disco_dubbo_framer_new(1024, &f));
  ASSERT_EQ(t, disco_dubbo_framer_feed(f, "GET", 3, &used, &frame),
            DISCO_EPROTO);
  ASSERT(t, strstr(disco_dubbo_framer_error(f), "magic") != NULL);
  ASSERT_EQ(t, disco_dubbo_framer_feed(f, stream, 16, &used, &frame),
            DISCO_EPROTO);
  disco_dubbo_framer_free(f);
  test_dubbo_header(bad, 0xc6, 1, 0); /* fastjson */
  ASSERT_EQ(t, disco_dubbo_header_decode(bad, 0, &h, &why), DISCO_EPROTO);
  test_dubbo_header(bad, 0xc2, 1, 0x80000000u);
  ASSERT_EQ(t, disco_dubbo_header_decode(bad, 0, &h, &why), DISCO_EPROTO);
  ASSERT(t, strstr(why, "negative") != NULL);
  test_dubbo_header(bad, 0xc2, 1, 0x7fffffff);
  ASSERT_EQ(t, disco_dubbo_header_decode(bad, 0, &h, &why), DISCO_E2BIG);
  test_dubbo_header(bad, 0xc2, 1, 1025);
  ASSERT_OK(t, disco_dubbo_framer_new(1024, &f));
  ASSERT_EQ(t, disco_dubbo_framer_feed(f, bad, 16, &used, &frame), DISCO_E2BIG);
  disco_dubbo_framer_free(f);
}

void test_dubbo_status_and_desc(ctest_t *t) {
  size_t n;
  int st;

  ASSERT_STR_EQ(t, disco_dubbo_status_name(60), "service_not_found");
  ASSERT(t, disco_dubbo_status_name(61) == NULL);
  ASSERT_OK(t, disco_dubbo_status_parse("threadpool_exhausted", &st));
  ASSERT_EQ(t, st, 100);
  ASSERT_EQ(t, disco_dubbo_status_parse("nope", &st), DISCO_EINVAL);
  ASSERT_EQ(t, disco_dubbo_status_error(20), 0);
  ASSERT_EQ(t, disco_dubbo_status_error(30), DISCO_ETIMEDOUT);
  ASSERT_EQ(t, disco_dubbo_status_error(31), DISCO_ETIMEDOUT);
  ASSERT_EQ(t, disco_dubbo_status_error(60), DISCO_ENOENT);
  ASSERT_EQ(t, disco_dubbo_status_error(70), DISCO_EIO);
  ASSERT_OK(t, disco_dubbo_desc_count("", 0, &n));
  ASSERT_EQ(t, n, 0);
  ASSERT_OK(t, disco_dubbo_desc_count("Ljava/lang/String;", 18, &n));
  ASSERT_EQ(t, n, 1);
  ASSERT_OK(t, disco_dubbo_desc_count("I[J[[Ljava/lang/Object;ZLa/B;", 29, &n));
  ASSERT_EQ(t, n, 5);
  ASSERT_EQ(t, disco_dubbo_desc_count("Ljava/lang/String", 17, &n),
            DISCO_EPROTO);
  ASSERT_EQ(t, disco_dubbo_desc_count("[", 1, &n), DISCO_EPROTO);
  ASSERT_EQ(t, disco_dubbo_desc_count("Q", 1, &n), DISCO_EPROTO);
  ASSERT_EQ(t, disco_dubbo_desc_count("L;", 2, &n), DISCO_EPROTO);
}

/* --------------------------------------------------------------- bodies */

void test_dubbo_bodies(ctest_t *t) {
  disco_h2_writer_t *w;
  disco_h2_writer_t *args;
  disco_dubbo_call_t call;
  disco_dubbo_request_t req;
  disco_dubbo_response_t resp;
  disco_dubbo_header_t h;
  const char *keys[] = { "timeout", "group" };
  const char *values[] = { "3000", "ignored" };
  const char *fields[] = { "stackTrace", "detailMessage" };
  const char *why = NULL;
  const char *data;
  char *frame;
  size_t len, flen;

  ASSERT_OK(t, disco_h2_writer_new(&w));
  ASSERT_OK(t, disco_h2_writer_new(&args));
  ASSERT_OK(t, disco_h2_write_string(args, "rev1", 4));
  data = disco_h2_writer_data(args, &len);
  memset(&call, 0, sizeof(call));
  call.path = "org.apache.dubbo.metadata.MetadataService";
  call.version = "1.0.0";
  call.group = "app";
  call.method = "getMetadataInfo";
  call.param_types = "Ljava/lang/String;";
  call.args = data;
  call.args_len = len;
  call.nattachments = 2;
  call.attachment_keys = keys;
  call.attachment_values = values;
  ASSERT_OK(t, disco_dubbo_request_encode(w, 42, &call, &frame, &flen));
  ASSERT_OK(t, disco_dubbo_header_decode(frame, 0, &h, NULL));
  ASSERT_EQ(t, h.flags, 0xc2);
  ASSERT_EQ(t, h.id, 42);
  ASSERT_EQ(t, h.body_len, flen - 16);
  ASSERT_OK(
      t, disco_dubbo_request_decode(frame + 16, flen - 16, NULL, &req, &why));
  ASSERT_STR_EQ(t, req.dubbo_version, "2.0.2");
  ASSERT_STR_EQ(t, req.path, call.path);
  ASSERT_STR_EQ(t, req.version, "1.0.0");
  ASSERT_STR_EQ(t, req.method, "getMetadataInfo");
  ASSERT_STR_EQ(t, req.param_types, "Ljava/lang/String;");
  ASSERT_EQ(t, req.nargs, 1);
  ASSERT_EQ(t, req.args[0]->type, DISCO_H2_STRING);
  ASSERT_STR_EQ(t, req.args[0]->u.bytes.data, "rev1");
  ASSERT_STR_EQ(t, req.group, "app");
  ASSERT_STR_EQ(t, disco_dubbo_attachment(req.attachments, "interface"),
                call.path);
  ASSERT_STR_EQ(t, disco_dubbo_attachment(req.attachments, "timeout"), "3000");
  disco_dubbo_request_free(&req);
  /* A truncated body: fewer arguments than the descriptor lists. */
  ASSERT_EQ(t, disco_dubbo_request_decode(frame + 16, 60, NULL, &req, &why),
            DISCO_EPROTO);
  disco_dubbo_request_free(&req);
  free(frame);

  /* A value response, a null one, an error status. */
  ASSERT_OK(t, disco_dubbo_response_encode(w, 42, DISCO_DUBBO_OK, data, len,
                                           NULL, &frame, &flen));
  ASSERT_EQ(t, (unsigned char)frame[2], 0x02);
  ASSERT_EQ(t, frame[3], 20);
  ASSERT_OK(
      t, disco_dubbo_response_decode(frame + 16, flen - 16, NULL, &resp, &why));
  ASSERT_EQ(t, resp.kind, DISCO_DUBBO_RESPONSE_VALUE);
  ASSERT_STR_EQ(t, resp.value->u.bytes.data, "rev1");
  disco_dubbo_response_free(&resp);
  free(frame);
  ASSERT_OK(t, disco_dubbo_response_encode(w, 42, DISCO_DUBBO_OK, NULL, 0, NULL,
                                           &frame, &flen));
  ASSERT_OK(
      t, disco_dubbo_response_decode(frame + 16, flen - 16, NULL, &resp, &why));
  ASSERT_EQ(t, resp.kind, DISCO_DUBBO_RESPONSE_NULL);
  ASSERT(t, resp.value == NULL);
  disco_dubbo_response_free(&resp);
  free(frame);

  /* An exception with attachments: the message is detailMessage. */
  disco_h2_writer_reset(args);
  ASSERT_OK(t, disco_h2_write_int(args, 3));
  ASSERT_OK(t, disco_h2_write_object_begin(args, "java.lang.RuntimeException",
                                           2, fields));
  ASSERT_OK(t, disco_h2_write_null(args));
  ASSERT_OK(t, disco_h2_write_string(args, "boom", 4));
  ASSERT_OK(t, disco_h2_write_map_begin(args, NULL));
  ASSERT_OK(t, disco_h2_write_string(args, "k", 1));
  ASSERT_OK(t, disco_h2_write_string(args, "v", 1));
  ASSERT_OK(t, disco_h2_write_end(args));
  data = disco_h2_writer_data(args, &len);
  ASSERT_OK(t, disco_dubbo_response_decode(data, len, NULL, &resp, &why));
  ASSERT_EQ(t, resp.kind, 3);
  ASSERT_STR_EQ(t, resp.message, "boom");
  ASSERT_EQ(t, resp.value->type, DISCO_H2_OBJECT);
  ASSERT_STR_EQ(t, disco_dubbo_attachment(resp.attachments, "k"), "v");
  disco_dubbo_response_free(&resp);
  /* Without a detailMessage: the class name. */
  disco_h2_writer_reset(args);
  ASSERT_OK(t, disco_h2_write_int(args, 0));
  ASSERT_OK(t, disco_h2_write_object_begin(args, "a.BadThing", 1, fields));
  ASSERT_OK(t, disco_h2_write_null(args));
  data = disco_h2_writer_data(args, &len);
  ASSERT_OK(t, disco_dubbo_response_decode(data, len, NULL, &resp, &why));
  ASSERT_STR_EQ(t, resp.message, "a.BadThing");
  disco_dubbo_response_free(&resp);
  /* Not a kind. */
  ASSERT_EQ(t, disco_dubbo_response_decode("\x99", 1, NULL, &resp, &why),
            DISCO_EPROTO);
  disco_dubbo_response_free(&resp);
  disco_h2_writer_free(args);
  disco_h2_writer_free(w);
}

/* ------------------------------------------------- server and client */

typedef struct {
  ctest_t *t;
  disco_loop_t *loop;
  disco_dubbo_server_t *server;
  disco_dubbo_client_t *client;
  disco_timer_t *timer;
  disco_h2_writer_t *w;
  uint64_t later_conn;
  int64_t later_id;
  int done;
  int results;
  int ok;
  int mismatched;
  int last_status;
  int last_dubbo_status;
  char last_message[128];
  char last_value[64];
  int server_closed;
  int client_closed;
  int errors[8];
} test_dubbo_ctx_t;

static void test_dubbo_on_request(disco_dubbo_server_t *server,
                                  uint64_t conn_id,
                                  const disco_dubbo_request_t *req) {
  test_dubbo_ctx_t *ctx = disco_dubbo_server_data(server);
  const char *data;
  size_t len;

  if (strcmp(req->method, "echo") == 0 && req->nargs == 1) {
    disco_h2_writer_reset(ctx->w);
    disco_h2_write_value(ctx->w, req->args[0]);
    data = disco_h2_writer_data(ctx->w, &len);
    ASSERT_OK(ctx->t,
              disco_dubbo_server_reply(server, conn_id, req->id, DISCO_DUBBO_OK,
                                       data, len, NULL));
  } else if (strcmp(req->method, "later") == 0) {
    ctx->later_conn = conn_id;
    ctx->later_id = req->id;
  } else if (strcmp(req->method, "never") == 0) {
    return;
  } else if (strcmp(req->method, "group") == 0) {
    disco_h2_writer_reset(ctx->w);
    disco_h2_write_string(ctx->w, req->group != NULL ? req->group : "-", 1);
    data = disco_h2_writer_data(ctx->w, &len);
    disco_dubbo_server_reply(server, conn_id, req->id, DISCO_DUBBO_OK, data,
                             len, NULL);
  } else {
    ASSERT_OK(ctx->t,
              disco_dubbo_server_reply(server, conn_id, req->id,
                                       DISCO_DUBBO_SERVICE_NOT_FOUND, NULL, 0,
                                       "no such service here"));
  }
}

static void test_dubbo_server_closed(void *handle, void *data) {
  test_dubbo_ctx_t *ctx = data;
  (void)handle;
  ctx->server_closed++;
}

static void test_dubbo_client_closed(void *handle, void *data) {
  test_dubbo_ctx_t *ctx = data;
  (void)handle;
  ctx->client_closed++;
}

static void test_dubbo_result_cb(disco_dubbo_client_t *client,
                                 const disco_dubbo_result_t *r, void *arg) {
  test_dubbo_ctx_t *ctx = disco_dubbo_client_data(client);

  ctx->results++;
  ctx->last_status = r->status;
  ctx->last_dubbo_status = r->dubbo_status;
  snprintf(ctx->last_message, sizeof(ctx->last_message), "%s",
           r->message != NULL ? r->message : "");
  ctx->last_value[0] = '\0';
  if (r->value != NULL && r->value->type == DISCO_H2_STRING)
    snprintf(ctx->last_value, sizeof(ctx->last_value), "%s",
             r->value->u.bytes.data);
  if (r->status == 0)
    ctx->ok++;
  /* arg, when set, is the int the echo must return. */
  if (arg != NULL) {
    if (r->value == NULL || r->value->type != DISCO_H2_INT ||
        r->value->u.i != (int32_t)(intptr_t)arg)
      ctx->mismatched++;
  }
  ctx->done = 1;
}

static int test_dubbo_call(test_dubbo_ctx_t *ctx, const char *method,
                           const char *arg, uint64_t timeout) {
  disco_h2_writer_t *w;
  disco_dubbo_call_t call;
  const char *data;
  size_t len;
  int err;

  if (disco_h2_writer_new(&w) != 0)
    return DISCO_ENOMEM;
  disco_h2_write_string(w, arg, strlen(arg));
  data = disco_h2_writer_data(w, &len);
  memset(&call, 0, sizeof(call));
  call.path = "org.apache.dubbo.metadata.MetadataService";
  call.version = "1.0.0";
  call.group = "g";
  call.method = method;
  call.param_types = "Ljava/lang/String;";
  call.args = data;
  call.args_len = len;
  err = disco_dubbo_client_call(ctx->client, &call, timeout,
                                test_dubbo_result_cb, NULL);
  disco_h2_writer_free(w);
  return err;
}

static void test_dubbo_later_cb(disco_timer_t *timer) {
  test_dubbo_ctx_t *ctx = disco_timer_data(timer);
  char value[] = { 0x05, 'l', 'a', 't', 'e', 'r' };

  ASSERT_OK(ctx->t, disco_dubbo_server_reply(ctx->server, ctx->later_conn,
                                             ctx->later_id, DISCO_DUBBO_OK,
                                             value, sizeof(value), NULL));
}

static void test_dubbo_setup(ctest_t *t, disco_loop_t *loop,
                             test_dubbo_ctx_t *ctx,
                             const disco_dubbo_server_options_t *sopts,
                             const disco_dubbo_client_options_t *copts) {
  memset(ctx, 0, sizeof(*ctx));
  ctx->t = t;
  ctx->loop = loop;
  ASSERT_OK(t, disco_loop_init(loop));
  ASSERT_OK(t, disco_h2_writer_new(&ctx->w));
  ASSERT_OK(t, disco_dubbo_server_new(
                   loop, "127.0.0.1", 0, sopts, test_dubbo_on_request,
                   test_dubbo_server_closed, ctx, &ctx->server));
  ASSERT(t, disco_dubbo_server_port(ctx->server) > 0);
  ASSERT_OK(t, disco_dubbo_client_new(
                   loop, "127.0.0.1", disco_dubbo_server_port(ctx->server),
                   copts, test_dubbo_client_closed, ctx, &ctx->client));
}

/* Runs the loop until the closed server and client are gone, checks how
 * often each close callback ran, and frees what test_dubbo_setup made. */
static void test_dubbo_finish(ctest_t *t, disco_loop_t *loop,
                              test_dubbo_ctx_t *ctx, int server_closed,
                              int client_closed) {
  ASSERT_EQ(t, disco_loop_run(loop), 0);
  ASSERT_EQ(t, ctx->server_closed, server_closed);
  ASSERT_EQ(t, ctx->client_closed, client_closed);
  disco_h2_writer_free(ctx->w);
  ASSERT_OK(t, disco_loop_close(loop));
}

#define WAIT(t, ctx, ms)                                                       \
  do {                                                                         \
    (ctx)->done = 0;                                                           \
    if (ctest_run_until((t), (ctx)->loop, &(ctx)->done, (ms)) != 0)            \
      return;                                                                  \
  } while (0)

void test_dubbo_call_reply(ctest_t *t) {
  test_dubbo_ctx_t ctx;
  disco_loop_t loop;
  disco_dubbo_server_stats_t st;

  test_dubbo_setup(t, &loop, &ctx, NULL, NULL);
  if (ctest_failed(t))
    return;
  ASSERT_EQ(t, disco_dubbo_client_connected(ctx.client), 0);
  ASSERT_OK(t, test_dubbo_call(&ctx, "echo", "rev1", 0));
  ASSERT_EQ(t, ctx.results, 0); /* never from inside the call */
  WAIT(t, &ctx, 5000);
  ASSERT_EQ(t, ctx.last_status, 0);
  ASSERT_EQ(t, ctx.last_dubbo_status, 20);
  ASSERT_STR_EQ(t, ctx.last_value, "rev1");
  ASSERT(t, disco_dubbo_client_connected(ctx.client));
  /* The group attachment reaches the server. */
  ASSERT_OK(t, test_dubbo_call(&ctx, "group", "x", 0));
  WAIT(t, &ctx, 5000);
  ASSERT_STR_EQ(t, ctx.last_value, "g");
  /* Service not found: ENOENT and the server's message. */
  ASSERT_OK(t, test_dubbo_call(&ctx, "missing", "x", 0));
  WAIT(t, &ctx, 5000);
  ASSERT_EQ(t, ctx.last_status, DISCO_ENOENT);
  ASSERT_EQ(t, ctx.last_dubbo_status, 60);
  ASSERT_STR_EQ(t, ctx.last_message, "no such service here");
  /* An async reply from a timer. */
  ASSERT_OK(t, disco_timer_new(&loop, NULL, &ctx, &ctx.timer));
  ASSERT_OK(t, test_dubbo_call(&ctx, "later", "x", 0));
  ASSERT_OK(t, disco_timer_start(ctx.timer, test_dubbo_later_cb, 50, 0));
  WAIT(t, &ctx, 5000);
  ASSERT_EQ(t, ctx.last_status, 0);
  ASSERT_STR_EQ(t, ctx.last_value, "later");
  /* A timeout fails that call only; a late reply is dropped. */
  ASSERT_OK(t, test_dubbo_call(&ctx, "never", "x", 50));
  WAIT(t, &ctx, 5000);
  ASSERT_EQ(t, ctx.last_status, DISCO_ETIMEDOUT);
  ASSERT_OK(t, disco_dubbo_server_reply(ctx.server, 1, 999, DISCO_DUBBO_OK,
                                        NULL, 0, NULL));
  ASSERT_OK(t, test_dubbo_call(&ctx, "echo", "after", 0));
  WAIT(t, &ctx, 5000);
  ASSERT_STR_EQ(t, ctx.last_value, "after");
  /* A heartbeat. */
  ASSERT_OK(t, disco_dubbo_client_heartbeat(ctx.client, 0, test_dubbo_result_cb,
                                            NULL));
  WAIT(t, &ctx, 5000);
  ASSERT_EQ(t, ctx.last_status, 0);
  disco_dubbo_server_stats(ctx.server, &st);
  ASSERT_EQ(t, st.heartbeats, 1);
  ASSERT_EQ(t, st.requests, 6);
  ASSERT_EQ(t, st.connections, 1);
  ASSERT_EQ(t, st.protocol_errors, 0);
  /* A reply to a connection that is not there is dropped silently. */
  ASSERT_OK(t, disco_dubbo_server_reply(ctx.server, 12345, 1, DISCO_DUBBO_OK,
                                        NULL, 0, NULL));
  disco_dubbo_client_close(ctx.client);
  disco_dubbo_server_close(ctx.server);
  disco_timer_close(ctx.timer);
  ASSERT_EQ(
      t,
      disco_dubbo_client_call(ctx.client, NULL, 0, test_dubbo_result_cb, NULL),
      DISCO_EINVAL);
  ASSERT_EQ(t, test_dubbo_call(&ctx, "echo", "x", 0), DISCO_ECLOSED);
  ASSERT_EQ(t, disco_dubbo_server_reply(ctx.server, 1, 1, 20, NULL, 0, NULL),
            DISCO_ECLOSED);
  test_dubbo_finish(t, &loop, &ctx, 1, 1);
}

void test_dubbo_concurrent_calls(ctest_t *t) {
  test_dubbo_ctx_t ctx;
  disco_loop_t loop;
  disco_h2_writer_t *w;
  disco_dubbo_call_t call;
  const char *data;
  size_t len;
  intptr_t i;
  int n = 200;

  test_dubbo_setup(t, &loop, &ctx, NULL, NULL);
  if (ctest_failed(t))
    return;
  ASSERT_OK(t, disco_h2_writer_new(&w));
  memset(&call, 0, sizeof(call));
  call.path = "svc";
  call.method = "echo";
  call.param_types = "I";
  for (i = 1; i <= n; i++) {
    disco_h2_writer_reset(w);
    ASSERT_OK(t, disco_h2_write_int(w, (int32_t)(i * 1000)));
    data = disco_h2_writer_data(w, &len);
    call.args = data;
    call.args_len = len;
    ASSERT_OK(t, disco_dubbo_client_call(ctx.client, &call, 0,
                                         test_dubbo_result_cb,
                                         (void *)(i * 1000)));
  }
  disco_h2_writer_free(w);
  while (ctx.results < n) {
    WAIT(t, &ctx, 5000);
  }
  ASSERT_EQ(t, ctx.ok, n);
  ASSERT_EQ(t, ctx.mismatched, 0);
  disco_dubbo_client_close(ctx.client);
  disco_dubbo_server_close(ctx.server);
  test_dubbo_finish(t, &loop, &ctx, 1, 1);
}

void test_dubbo_reconnect(ctest_t *t) {
  test_dubbo_ctx_t ctx;
  disco_loop_t loop;
  disco_dubbo_client_options_t copts;
  int port;

  disco_dubbo_client_options_init(&copts);
  copts.backoff_min_ms = 20;
  test_dubbo_setup(t, &loop, &ctx, NULL, &copts);
  if (ctest_failed(t))
    return;
  port = disco_dubbo_server_port(ctx.server);
  ASSERT_OK(t, test_dubbo_call(&ctx, "echo", "one", 0));
  WAIT(t, &ctx, 5000);
  ASSERT_STR_EQ(t, ctx.last_value, "one");
  /* The server goes away with a call pending: ECONNRESET. */
  ASSERT_OK(t, test_dubbo_call(&ctx, "never", "x", 0));
  ASSERT_OK(t, disco_timer_new(&loop, NULL, &ctx, &ctx.timer));
  disco_dubbo_server_close(ctx.server);
  WAIT(t, &ctx, 5000);
  ASSERT_EQ(t, ctx.last_status, DISCO_ECONNRESET);
  ASSERT_EQ(t, disco_dubbo_client_connected(ctx.client), 0);
  /* Nobody listens: ECONNREFUSED. */
  ASSERT_OK(t, test_dubbo_call(&ctx, "echo", "x", 0));
  WAIT(t, &ctx, 5000);
  ASSERT_EQ(t, ctx.last_status, DISCO_ECONNREFUSED);
  /* Back on the same port: the next call reconnects (after the backoff). */
  ASSERT_OK(t, disco_dubbo_server_new(
                   &loop, "127.0.0.1", port, NULL, test_dubbo_on_request,
                   test_dubbo_server_closed, &ctx, &ctx.server));
  ASSERT_OK(t, test_dubbo_call(&ctx, "echo", "two", 0));
  WAIT(t, &ctx, 5000);
  ASSERT_EQ(t, ctx.last_status, 0);
  ASSERT_STR_EQ(t, ctx.last_value, "two");
  /* Close cancels pending calls, from inside the close. */
  ASSERT_OK(t, test_dubbo_call(&ctx, "never", "x", 0));
  ctx.results = 0;
  disco_dubbo_client_close(ctx.client);
  ASSERT_EQ(t, ctx.results, 1);
  ASSERT_EQ(t, ctx.last_status, DISCO_ECANCELED);
  disco_timer_close(ctx.timer);
  disco_dubbo_server_close(ctx.server);
  test_dubbo_finish(t, &loop, &ctx, 2, 1);
}

void test_dubbo_heartbeat_timeout(ctest_t *t) {
  test_dubbo_ctx_t ctx;
  disco_loop_t loop;
  disco_dubbo_client_options_t copts;
  disco_dubbo_server_stats_t st;

  disco_dubbo_client_options_init(&copts);
  copts.heartbeat_ms = 30;
  test_dubbo_setup(t, &loop, &ctx, NULL, &copts);
  if (ctest_failed(t))
    return;
  ASSERT_OK(t, test_dubbo_call(&ctx, "echo", "x", 0));
  WAIT(t, &ctx, 5000);
  /* Idle: heartbeats go out and are answered; the connection stays. */
  ASSERT_OK(t, test_dubbo_call(&ctx, "never", "x", 250));
  WAIT(t, &ctx, 5000);
  ASSERT_EQ(t, ctx.last_status, DISCO_ETIMEDOUT);
  disco_dubbo_server_stats(ctx.server, &st);
  ASSERT_CMP(t, st.heartbeats, >=, 3);
  ASSERT(t, disco_dubbo_client_connected(ctx.client));
  ASSERT_EQ(t, st.accepted, 1);
  /* loop close closes both and cancels what is pending. */
  ASSERT_OK(t, test_dubbo_call(&ctx, "never", "x", 0));
  ctx.results = 0;
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx.results, 1);
  ASSERT_EQ(t, ctx.last_status, DISCO_ECANCELED);
  ASSERT_EQ(t, ctx.server_closed, 1);
  ASSERT_EQ(t, ctx.client_closed, 1);
  disco_h2_writer_free(ctx.w);
}

/* ------------------------------------------------------------- abuse */

typedef struct test_raw_s test_raw_t;

typedef struct {
  ctest_t *t;
  int connected;
  int closed_by_server;
  int done;
  int target;
  int logs_rejected;
  int logs_protocol;
  int logs_idle;
  int logs_midframe;
} test_abuse_ctx_t;

struct test_raw_s {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  test_abuse_ctx_t *ctx;
  char *send;
  size_t send_len;
  int close_after_send;
  char buf[64];
};

static void test_raw_closed(uv_handle_t *h) {
  free(h->data);
}

static void test_raw_alloc(uv_handle_t *h, size_t n, uv_buf_t *buf) {
  test_raw_t *raw = h->data;
  (void)n;
  *buf = uv_buf_init(raw->buf, sizeof(raw->buf));
}

static void test_raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  test_raw_t *raw = s->data;
  (void)buf;
  if (n < 0) {
    raw->ctx->closed_by_server++;
    if (raw->ctx->closed_by_server >= raw->ctx->target)
      raw->ctx->done = 1;
    uv_close((uv_handle_t *)&raw->tcp, test_raw_closed);
  }
}

static void test_raw_written(uv_write_t *req, int status) {
  test_raw_t *raw = req->data;
  (void)status;
  if (raw->close_after_send) {
    raw->ctx->closed_by_server++; /* counted as ended */
    if (raw->ctx->closed_by_server >= raw->ctx->target)
      raw->ctx->done = 1;
    uv_close((uv_handle_t *)&raw->tcp, test_raw_closed);
  }
}

static void test_raw_connected(uv_connect_t *req, int status) {
  test_raw_t *raw = req->data;
  uv_buf_t b;

  if (status != 0) {
    raw->ctx->closed_by_server++;
    if (raw->ctx->closed_by_server >= raw->ctx->target)
      raw->ctx->done = 1;
    uv_close((uv_handle_t *)&raw->tcp, test_raw_closed);
    return;
  }
  raw->ctx->connected++;
  if (!raw->close_after_send)
    uv_read_start((uv_stream_t *)&raw->tcp, test_raw_alloc, test_raw_read);
  if (raw->send_len > 0) {
    b = uv_buf_init(raw->send, (unsigned int)raw->send_len);
    raw->write.data = raw;
    uv_write(&raw->write, (uv_stream_t *)&raw->tcp, &b, 1, test_raw_written);
  }
}

static void test_raw_open(disco_loop_t *loop, test_abuse_ctx_t *ctx, int port,
                          char *send, size_t len, int close_after_send) {
  test_raw_t *raw = calloc(1, sizeof(*raw));
  struct sockaddr_in addr;

  raw->ctx = ctx;
  raw->send = send;
  raw->send_len = len;
  raw->close_after_send = close_after_send;
  uv_tcp_init(&loop->uv, &raw->tcp);
  raw->tcp.data = raw;
  raw->connect.data = raw;
  uv_ip4_addr("127.0.0.1", port, &addr);
  uv_tcp_connect(&raw->connect, &raw->tcp, (struct sockaddr *)&addr,
                 test_raw_connected);
}

static void test_abuse_sink(void *ud, disco_log_level_t level,
                            const char *component, const char *msg) {
  test_abuse_ctx_t *ctx = ud;
  (void)level;
  (void)component;
  if (strstr(msg, "max_connections") != NULL)
    ctx->logs_rejected++;
  if (strstr(msg, "protocol error") != NULL)
    ctx->logs_protocol++;
  if (strstr(msg, "idle timeout") != NULL)
    ctx->logs_idle++;
  if (strstr(msg, "middle of a frame") != NULL)
    ctx->logs_midframe++;
}

void test_dubbo_server_abuse(ctest_t *t) {
  test_dubbo_ctx_t ctx;
  test_abuse_ctx_t abuse;
  disco_loop_t loop;
  disco_dubbo_server_options_t sopts;
  disco_dubbo_server_stats_t st;
  char garbage[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  char huge[16];
  char partial[16 + 10];
  int port, i, n;

  disco_dubbo_server_options_init(&sopts);
  sopts.idle_timeout_ms = 300;
  sopts.max_connections = 64;
  test_dubbo_setup(t, &loop, &ctx, &sopts, NULL);
  if (ctest_failed(t))
    return;
  memset(&abuse, 0, sizeof(abuse));
  abuse.t = t;
  disco_log_set_sink(&loop, test_abuse_sink, &abuse);
  port = disco_dubbo_server_port(ctx.server);
  test_dubbo_header(huge, 0xc2, 1, 0x7fffffff);
  test_dubbo_header(partial, 0xc2, 1, 100);
  memset(partial + 16, 'x', 10);

  /* An idle client, garbage, a 2 GiB header, a disconnect mid-frame. */
  abuse.target = 4;
  test_raw_open(&loop, &abuse, port, NULL, 0, 0);
  test_raw_open(&loop, &abuse, port, garbage, sizeof(garbage) - 1, 0);
  test_raw_open(&loop, &abuse, port, huge, sizeof(huge), 0);
  test_raw_open(&loop, &abuse, port, partial, sizeof(partial), 1);
  ASSERT_EQ(t, ctest_run_until(t, &loop, &abuse.done, 5000), 0);
  /* Let the server see the last disconnect. */
  for (i = 0; i < 10; i++)
    disco_loop_run_nowait(&loop);
  disco_dubbo_server_stats(ctx.server, &st);
  ASSERT_EQ(t, st.protocol_errors, 2);
  ASSERT_EQ(t, st.idle_closed, 1);
  ASSERT_EQ(t, abuse.logs_protocol, 2);
  ASSERT_EQ(t, abuse.logs_idle, 1);

  /* 1,000 connections at once: all but max_connections are turned away,
   * the others idle out. */
  n = (int)ctest_scaled(1000, 200);
  abuse.done = 0;
  abuse.closed_by_server = 0;
  abuse.target = n;
  for (i = 0; i < n; i++)
    test_raw_open(&loop, &abuse, port, NULL, 0, 0);
  ASSERT_EQ(t, ctest_run_until(t, &loop, &abuse.done, 20000), 0);
  disco_dubbo_server_stats(ctx.server, &st);
  /* Slots freed by idle timeouts during the flood are taken again. */
  ASSERT_EQ(t, st.accepted, 4 + (uint64_t)n);
  ASSERT_CMP(t, st.rejected, >=, (uint64_t)(n / 2));
  ASSERT_EQ(t, abuse.logs_rejected, (int)st.rejected);
  ASSERT_CMP(t, st.connections, <=, 64);

  /* A well-behaved client is served afterwards. */
  ASSERT_OK(t, test_dubbo_call(&ctx, "echo", "still here", 0));
  WAIT(t, &ctx, 5000);
  ASSERT_EQ(t, ctx.last_status, 0);
  ASSERT_STR_EQ(t, ctx.last_value, "still here");
  ASSERT_CMP(t, abuse.logs_midframe, >=, 1);
  disco_log_set_sink(&loop, NULL, NULL);
  ASSERT_OK(t, disco_loop_close(&loop));
  disco_h2_writer_free(ctx.w);
}
