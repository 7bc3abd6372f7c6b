/*
 * The HTTP/1.1 client (core/http_client.c): the public C API, beside
 * disco.h, for the bindings and the C tests.
 *
 * A client talks to one host:port (an IP literal) over a small pool of
 * keep-alive connections (max_connections); requests beyond the pool wait
 * in FIFO order. Responses are parsed by http-parser, bounded
 * (max_header_bytes, max_body_bytes) and either buffered whole or streamed
 * (on_data), optionally cut into delimiter-separated records (split), as
 * newline-delimited JSON streams need.
 *
 * Each request ends exactly once in on_done, never from inside
 * disco_http_client_request(), unless it is canceled, which ends it
 * silently. Errors: DISCO_ECONNREFUSED (and other connect errors),
 * DISCO_ETIMEDOUT (connect_timeout, read_timeout, the request's timeout),
 * DISCO_ECONNRESET (the server closed or reset the connection before the
 * response was complete), DISCO_EMSGSIZE (over a bound), DISCO_EPROTO
 * (http-parser refused the response), DISCO_ECANCELED (the client closed),
 * DISCO_ENOMEM. A connection is reused only after a complete response
 * that allows it; a request whose reused connection turns out closed
 * before any byte of the response came is sent again, once, on a new
 * connection.
 *
 * Callbacks may make new requests, cancel any request and close the
 * client.
 */
#ifndef DISCO_HTTP_CLIENT_H
#define DISCO_HTTP_CLIENT_H

#include "disco.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct disco_http_client_s disco_http_client_t;

/* disco_http_client_request_t.read_timeout_ms: no read timeout. */
#define DISCO_HTTP_NO_READ_TIMEOUT (-1)
typedef struct disco_http_creq_s disco_http_creq_t;

typedef struct {
  uint64_t connect_timeout_ms; /* per connection attempt; 3000; 0: none */
  uint64_t read_timeout_ms;    /* silence while a request waits; 10000; 0 */
  uint64_t idle_timeout_ms;    /* an idle pooled connection; 30000; 0 */
  size_t max_connections;      /* default 8 */
  size_t max_header_bytes;     /* status line and headers; 16384 */
  size_t max_body_bytes;       /* buffered body, one split record; 8 MiB */
  const char *name;            /* in log lines; copied; "http-client" */
} disco_http_client_options_t;

/* A response as far as it came. Every pointer is valid only during the
 * callback; headers as the server's request headers (disco.h): names
 * lower-cased, repeated names joined with ", ". */
typedef struct {
  int status; /* 0 until the headers are complete */
  const disco_http_header_t *headers;
  size_t nheaders;
  const char *body; /* buffered requests; NULL when streamed */
  size_t body_len;
} disco_http_response_t;

/* The headers are complete (before any on_data). */
typedef void (*disco_http_headers_cb)(disco_http_creq_t *req,
                                      const disco_http_response_t *res,
                                      void *arg);
/* Body bytes (chunked encoding decoded), or one record without its
 * delimiter when the request has a split. */
typedef void (*disco_http_data_cb)(disco_http_creq_t *req, const char *data,
                                   size_t len, void *arg);
/* The end: err 0 or a DISCO_E* code with a message (NULL: none); res holds
 * what came (status 0 when the headers did not). The request is freed
 * after this returns. */
typedef void (*disco_http_done_cb)(disco_http_creq_t *req, int err,
                                   const char *message,
                                   const disco_http_response_t *res, void *arg);

typedef struct {
  const char *method; /* a token; NULL: "GET" */
  const char *path;   /* "/..." without spaces or control bytes */
  const disco_http_header_t *headers; /* Host and Content-Length are the
                                         client's */
  size_t nheaders;
  const char *body; /* NULL: none */
  size_t body_len;
  uint64_t timeout_ms; /* the whole request; 0: none */
  /* Silence allowed while this request waits or streams: 0 the client's
   * read_timeout_ms, DISCO_HTTP_NO_READ_TIMEOUT none (a watch stream that
   * may be quiet for long), else ms. */
  int64_t read_timeout_ms;
  disco_http_headers_cb on_headers; /* optional */
  disco_http_data_cb on_data;       /* optional: stream the body */
  const char *split;                /* with on_data: record delimiter */
  size_t split_len;                 /* 0: none; at most 8 */
  disco_http_done_cb on_done;       /* required */
  void *arg;
} disco_http_client_request_t;

typedef struct {
  uint64_t connections; /* open now: connecting, busy or idle */
  uint64_t idle;        /* of those, idle in the pool */
  uint64_t queued;      /* requests waiting for a connection */
  uint64_t active;      /* requests on a connection */
  uint64_t connects;    /* connections opened in all */
  uint64_t requests;    /* requests made in all */
  uint64_t reused;      /* requests sent on an already used connection */
  uint64_t retried;     /* requests sent again after a stale connection */
} disco_http_client_stats_t;

void disco_http_client_options_init(disco_http_client_options_t *opts);
/* host: an IPv4 or IPv6 literal (DISCO_EINVAL otherwise); opts may be
 * NULL. Connects lazily. */
int disco_http_client_new(disco_loop_t *loop, const char *host, int port,
                          const disco_http_client_options_t *opts,
                          disco_handle_close_cb close_cb, void *data,
                          disco_http_client_t **out);
/* Queues a request; *out names it for cancel until on_done ran.
 * DISCO_EINVAL for a bad method, path, header or split, DISCO_ECLOSED once
 * the client is closing. */
int disco_http_client_request(disco_http_client_t *client,
                              const disco_http_client_request_t *request,
                              disco_http_creq_t **out);
/* Ends a request whose on_done has not run, without calling it; a
 * connection it was using is closed. Must not be called after on_done. */
void disco_http_client_cancel(disco_http_creq_t *req);
void disco_http_client_stats(const disco_http_client_t *client,
                             disco_http_client_stats_t *stats);
/* Idempotent: every request ends with DISCO_ECANCELED (from inside this
 * call), connections close; close_cb runs on a later loop iteration, then
 * the client is freed. */
void disco_http_client_close(disco_http_client_t *client);
void *disco_http_client_data(const disco_http_client_t *client);

#ifdef __cplusplus
}
#endif
#endif /* DISCO_HTTP_CLIENT_H */
