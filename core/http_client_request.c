/*
 * Writing a request of the HTTP client: checks what the caller gave
 * (method a token, path without spaces or control bytes, header names and
 * values that cannot break the header section) and lays out the bytes
 * that go on the wire, kept by the request so that it can be sent again
 * after a stale pooled connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_client_internal.h"

static int disco__hc_token(const char *s) {
  size_t i;

  if (s == NULL || s[0] == '\0' || strlen(s) > 32)
    return 0;
  for (i = 0; s[i] != '\0'; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch <= ' ' || ch >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", ch) != NULL)
      return 0;
  }
  return 1;
}

static int disco__hc_ieq(const char *s, size_t len, const char *lower) {
  size_t i;

  if (strlen(lower) != len)
    return 0;
  for (i = 0; i < len; i++) {
    char ch = s[i];
    if (ch >= 'A' && ch <= 'Z')
      ch = (char)(ch - 'A' + 'a');
    if (ch != lower[i])
      return 0;
  }
  return 1;
}

/* The request's bytes: request line, Host (unless given), the headers
 * (without Content-Length, Transfer-Encoding), Content-Length when there is
 * a body or the method usually has one, the body. */
int disco__hc_encode(const char *host, const disco_http_client_request_t *r,
                     const char *method, char **out, size_t *out_len) {
  size_t i, size, plen;
  int has_host = 0;
  int with_length;
  char *buf;
  char *p;

  if (!disco__hc_token(method) || r->path == NULL || r->path[0] != '/')
    return DISCO_EINVAL;
  plen = strlen(r->path);
  for (i = 0; i < plen; i++)
    if ((unsigned char)r->path[i] <= ' ' || (unsigned char)r->path[i] == 0x7f)
      return DISCO_EINVAL;
  if ((r->nheaders > 0 && r->headers == NULL) ||
      (r->body_len > 0 && r->body == NULL))
    return DISCO_EINVAL;
  size = strlen(method) + plen + 16 + strlen(host) + 16 + 48 + r->body_len;
  for (i = 0; i < r->nheaders; i++) {
    const disco_http_header_t *h = &r->headers[i];
    if (!disco__http_header_ok(h->name, h->name_len, 1) ||
        !disco__http_header_ok(h->value, h->value_len, 0))
      return DISCO_EINVAL;
    if (disco__hc_ieq(h->name, h->name_len, "host"))
      has_host = 1;
    size += h->name_len + h->value_len + 4;
  }
  buf = malloc(size);
  if (buf == NULL)
    return DISCO_ENOMEM;
  p = buf + sprintf(buf, "%s %s HTTP/1.1\r\n", method, r->path);
  if (!has_host)
    p += sprintf(p, "Host: %s\r\n", host);
  for (i = 0; i < r->nheaders; i++) {
    const disco_http_header_t *h = &r->headers[i];
    if (disco__hc_ieq(h->name, h->name_len, "content-length") ||
        disco__hc_ieq(h->name, h->name_len, "transfer-encoding"))
      continue;
    memcpy(p, h->name, h->name_len);
    p += h->name_len;
    memcpy(p, ": ", 2);
    p += 2;
    memcpy(p, h->value, h->value_len);
    p += h->value_len;
    memcpy(p, "\r\n", 2);
    p += 2;
  }
  with_length = r->body != NULL || strcmp(method, "POST") == 0 ||
                strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;
  if (with_length)
    p += sprintf(p, "Content-Length: %zu\r\n", r->body_len);
  memcpy(p, "\r\n", 2);
  p += 2;
  if (r->body_len > 0) {
    memcpy(p, r->body, r->body_len);
    p += r->body_len;
  }
  *out = buf;
  *out_len = (size_t)(p - buf);
  return 0;
}
