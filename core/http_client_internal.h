/*
 * Private to core/http_client*.c: the response being parsed, shared by the
 * connection code (http_client.c) and the parser callbacks that fill it
 * (http_client_response.c).
 */
#ifndef DISCO_HTTP_CLIENT_INTERNAL_H
#define DISCO_HTTP_CLIENT_INTERNAL_H

#include <http_parser.h>

#include "http_client.h"
#include "internal.h"

/* A header of the response: offsets into head, which moves as it grows. */
typedef struct {
  size_t name_off;
  size_t name_len;
  size_t value_off;
  size_t value_len;
} disco__hcfield_t;

/*
 * One response, filled by http_parser_execute() through the callbacks of
 * disco__hcres_settings (parser.data points here). The callbacks never
 * call the owner: they store and bound what comes, and the connection code
 * delivers it after http_parser_execute() returns, so that a callback of
 * the owner never runs inside the parser.
 */
typedef struct {
  http_parser parser;
  size_t max_header_bytes;
  size_t max_body_bytes;
  int streamed;  /* body bytes go to `body` for delivery, unbounded here */
  int head_only; /* the request was HEAD: no body whatever the headers say */
  /* What came. */
  int got_bytes;    /* any byte of the response has arrived */
  int headers_done; /* status and headers are complete */
  int complete;     /* the whole response is in (the parser is paused) */
  int status;
  size_t head_bytes; /* status text, names, values, trailers, line ends */
  char *head;        /* header names and values as they came */
  size_t head_len;
  size_t head_cap;
  disco__hcfield_t *fields;
  size_t nfields;
  size_t fields_cap;
  int last_was_value;
  /* The merged headers (after headers_done). */
  disco_http_header_t *headers;
  size_t nheaders;
  char *header_block;
  /* The buffered body, or streamed bytes not delivered yet. */
  char *body;
  size_t body_len;
  size_t body_cap;
  /* A callback's refusal: DISCO_EMSGSIZE or DISCO_ENOMEM, and why. */
  int err;
  const char *why;
} disco__hcres_t;

extern const http_parser_settings disco__hcres_settings;

/* Readies res for a new response (keeping its buffers). */
void disco__hcres_reset(disco__hcres_t *res, size_t max_header_bytes,
                        size_t max_body_bytes, int streamed, int head_only);
void disco__hcres_free(disco__hcres_t *res);
/* The public view of what came (body only when buffered). */
void disco__hcres_view(const disco__hcres_t *res, disco_http_response_t *out);

/* http_client_request.c: the request's bytes (request line, Host unless
 * given, the headers without Content-Length and Transfer-Encoding,
 * Content-Length when there is a body or the method usually has one, the
 * body) into a new buffer; DISCO_EINVAL for a bad method, path or header,
 * DISCO_ENOMEM. `host` is the Host header's value. */
int disco__hc_encode(const char *host, const disco_http_client_request_t *r,
                     const char *method, char **out, size_t *out_len);

#endif /* DISCO_HTTP_CLIENT_INTERNAL_H */
