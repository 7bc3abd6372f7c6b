/*
 * The HTTP client's response parsing: http-parser callbacks that store a
 * response's status, headers and body in a disco__hcres_t, within the
 * client's bounds. Interim 1xx responses (100 Continue) are skipped.
 *
 * Nothing here calls the client's owner, so the owner's callbacks never
 * run inside http_parser_execute(); the connection code delivers what was
 * stored once the parser returns.
 */
#include <stdlib.h>
#include <string.h>

#include "http_client_internal.h"

/* What a header line costs beyond its name and value (": " and CRLF), so
 * that many empty headers still count against max_header_bytes. */
#define DISCO__HC_LINE_COST 4

static int disco__hc_append(char **buf, size_t *len, size_t *cap,
                            const char *data, size_t n) {
  if (*len + n > *cap) {
    size_t want = *cap == 0 ? 1024 : *cap;
    char *grown;
    while (want < *len + n)
      want *= 2;
    grown = realloc(*buf, want);
    if (grown == NULL)
      return DISCO_ENOMEM;
    *buf = grown;
    *cap = want;
  }
  memcpy(*buf + *len, data, n);
  *len += n;
  return 0;
}

/* A callback's refusal: stops http_parser_execute with HPE_CB_*. */
static int disco__hc_refuse(disco__hcres_t *res, int err, const char *why) {
  res->err = err;
  res->why = why;
  return -1;
}

static int disco__hc_count_head(disco__hcres_t *res, size_t len) {
  res->head_bytes += len;
  if (res->head_bytes > res->max_header_bytes)
    return disco__hc_refuse(res, DISCO_EMSGSIZE,
                            "status line and headers over max_header_bytes");
  return 0;
}

static int disco__hc_head_append(disco__hcres_t *res, const char *at,
                                 size_t len) {
  if (disco__hc_count_head(res, len) != 0)
    return -1;
  if (disco__hc_append(&res->head, &res->head_len, &res->head_cap, at, len))
    return disco__hc_refuse(res, DISCO_ENOMEM, "out of memory");
  return 0;
}

static void disco__hc_drop_headers(disco__hcres_t *res) {
  free(res->headers);
  free(res->header_block);
  res->headers = NULL;
  res->header_block = NULL;
  res->nheaders = 0;
}

void disco__hcres_reset(disco__hcres_t *res, size_t max_header_bytes,
                        size_t max_body_bytes, int streamed, int head_only) {
  disco__hc_drop_headers(res);
  http_parser_init(&res->parser, HTTP_RESPONSE);
  res->parser.data = res;
  res->max_header_bytes = max_header_bytes;
  res->max_body_bytes = max_body_bytes;
  res->streamed = streamed;
  res->head_only = head_only;
  res->got_bytes = 0;
  res->headers_done = 0;
  res->complete = 0;
  res->status = 0;
  res->head_bytes = 0;
  res->head_len = 0;
  res->nfields = 0;
  res->last_was_value = 0;
  res->body_len = 0;
  res->err = 0;
  res->why = NULL;
}

void disco__hcres_free(disco__hcres_t *res) {
  disco__hc_drop_headers(res);
  free(res->head);
  free(res->fields);
  free(res->body);
  memset(res, 0, sizeof(*res));
}

void disco__hcres_view(const disco__hcres_t *res, disco_http_response_t *out) {
  memset(out, 0, sizeof(*out));
  if (!res->headers_done)
    return;
  out->status = res->status;
  out->headers = res->headers;
  out->nheaders = res->nheaders;
  if (!res->streamed) {
    out->body = res->body != NULL ? res->body : "";
    out->body_len = res->body_len;
  }
}

static int disco__hc_on_message_begin(http_parser *p) {
  disco__hcres_t *res = p->data;

  /* Also after an interim 1xx response: start the real one afresh. */
  disco__hc_drop_headers(res);
  res->headers_done = 0;
  res->status = 0;
  res->head_bytes = 0;
  res->head_len = 0;
  res->nfields = 0;
  res->last_was_value = 0;
  res->body_len = 0;
  return 0;
}

static int disco__hc_on_status(http_parser *p, const char *at, size_t len) {
  (void)at;
  /* "HTTP/1.1 200 " and CRLF, roughly, besides the reason phrase. */
  return disco__hc_count_head(p->data, len + 15);
}

static int disco__hc_on_header_field(http_parser *p, const char *at,
                                     size_t len) {
  disco__hcres_t *res = p->data;
  disco__hcfield_t *f;

  if (res->headers_done) /* trailers: counted, dropped */
    return disco__hc_count_head(res, len);
  if (res->nfields == 0 || res->last_was_value) {
    if (disco__hc_count_head(res, DISCO__HC_LINE_COST) != 0)
      return -1;
    if (res->nfields == res->fields_cap) {
      size_t cap = res->fields_cap == 0 ? 16 : res->fields_cap * 2;
      disco__hcfield_t *grown = realloc(res->fields, cap * sizeof(*grown));
      if (grown == NULL)
        return disco__hc_refuse(res, DISCO_ENOMEM, "out of memory");
      res->fields = grown;
      res->fields_cap = cap;
    }
    f = &res->fields[res->nfields++];
    f->name_off = res->head_len;
    f->name_len = 0;
    f->value_off = res->head_len;
    f->value_len = 0;
    res->last_was_value = 0;
  }
  res->fields[res->nfields - 1].name_len += len;
  return disco__hc_head_append(res, at, len);
}

static int disco__hc_on_header_value(http_parser *p, const char *at,
                                     size_t len) {
  disco__hcres_t *res = p->data;
  disco__hcfield_t *f;

  if (res->headers_done)
    return disco__hc_count_head(res, len);
  if (res->nfields == 0)
    return 0;
  f = &res->fields[res->nfields - 1];
  if (!res->last_was_value) {
    f->value_off = res->head_len;
    f->value_len = 0;
    res->last_was_value = 1;
  }
  f->value_len += len;
  return disco__hc_head_append(res, at, len);
}

static char disco__hc_lower(char ch) {
  return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

/* Builds res->headers: names lower-cased, values without trailing blanks,
 * repeated names joined with ", " in order. */
static int disco__hc_merge_headers(disco__hcres_t *res) {
  size_t i, j, n = 0;
  char *out;
  char *merged;

  for (i = 0; i < res->nfields; i++) {
    disco__hcfield_t *f = &res->fields[i];
    char *name = res->head + f->name_off;
    for (j = 0; j < f->name_len; j++)
      name[j] = disco__hc_lower(name[j]);
    while (f->value_len > 0 &&
           (res->head[f->value_off + f->value_len - 1] == ' ' ||
            res->head[f->value_off + f->value_len - 1] == '\t'))
      f->value_len--;
  }
  /* Each field's name and value, two NULs and two bytes of ", " at most. */
  res->header_block = malloc(res->head_len + 4 * res->nfields + 1);
  res->headers = malloc((res->nfields + 1) * sizeof(*res->headers));
  merged = calloc(res->nfields + 1, 1);
  if (res->header_block == NULL || res->headers == NULL || merged == NULL) {
    free(merged);
    return -1;
  }
  out = res->header_block;
  for (i = 0; i < res->nfields; i++) {
    disco__hcfield_t *f = &res->fields[i];
    disco_http_header_t *h = &res->headers[n];
    if (merged[i])
      continue;
    h->name = out;
    h->name_len = f->name_len;
    memcpy(out, res->head + f->name_off, f->name_len);
    out += f->name_len;
    *out++ = '\0';
    h->value = out;
    memcpy(out, res->head + f->value_off, f->value_len);
    out += f->value_len;
    for (j = i + 1; j < res->nfields; j++) {
      disco__hcfield_t *g = &res->fields[j];
      if (merged[j] || g->name_len != f->name_len ||
          memcmp(res->head + g->name_off, res->head + f->name_off,
                 f->name_len) != 0)
        continue;
      merged[j] = 1;
      memcpy(out, ", ", 2);
      out += 2;
      memcpy(out, res->head + g->value_off, g->value_len);
      out += g->value_len;
    }
    h->value_len = (size_t)(out - h->value);
    *out++ = '\0';
    n++;
  }
  res->nheaders = n;
  free(merged);
  return 0;
}

static int disco__hc_on_headers_complete(http_parser *p) {
  disco__hcres_t *res = p->data;

  if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101)
    return 0; /* interim: the real response follows */
  res->status = p->status_code;
  if (disco__hc_merge_headers(res) != 0)
    return disco__hc_refuse(res, DISCO_ENOMEM, "out of memory");
  res->headers_done = 1;
  if (!res->streamed && !res->head_only && (p->flags & F_CONTENTLENGTH) &&
      p->content_length > res->max_body_bytes)
    return disco__hc_refuse(res, DISCO_EMSGSIZE,
                            "Content-Length over max_body_bytes");
  /* 1: no body follows, whatever the headers announce. */
  return res->head_only ? 1 : 0;
}

static int disco__hc_on_body(http_parser *p, const char *at, size_t len) {
  disco__hcres_t *res = p->data;

  if (!res->streamed && res->body_len + len > res->max_body_bytes)
    return disco__hc_refuse(res, DISCO_EMSGSIZE, "body over max_body_bytes");
  if (disco__hc_append(&res->body, &res->body_len, &res->body_cap, at, len))
    return disco__hc_refuse(res, DISCO_ENOMEM, "out of memory");
  return 0;
}

/* Pauses the parser after the response, so that bytes behind it (which a
 * server should not send unasked) stay unparsed. */
static int disco__hc_on_message_complete(http_parser *p) {
  disco__hcres_t *res = p->data;

  if (!res->headers_done)
    return 0; /* the end of an interim response */
  res->complete = 1;
  http_parser_pause(p, 1);
  return 0;
}

const http_parser_settings disco__hcres_settings = {
  .on_message_begin = disco__hc_on_message_begin,
  .on_status = disco__hc_on_status,
  .on_header_field = disco__hc_on_header_field,
  .on_header_value = disco__hc_on_header_value,
  .on_headers_complete = disco__hc_on_headers_complete,
  .on_body = disco__hc_on_body,
  .on_message_complete = disco__hc_on_message_complete,
};
