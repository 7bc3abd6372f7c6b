/*
 * Dubbo request and response bodies over the hessian2 reader and writer
 * (WIRE.md §7): encoding whole frames, decoding bodies, counting the
 * parameters of a JVM method descriptor.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int disco_dubbo_desc_count(const char *desc, size_t len, size_t *count) {
  size_t i = 0;
  size_t n = 0;

  if (count == NULL || (desc == NULL && len > 0))
    return DISCO_EINVAL;
  while (i < len) {
    /* Array dimensions prefix an element type. */
    while (i < len && desc[i] == '[')
      i++;
    if (i == len)
      return DISCO_EPROTO;
    switch (desc[i]) {
      case 'B':
      case 'C':
      case 'D':
      case 'F':
      case 'I':
      case 'J':
      case 'S':
      case 'Z':
        i++;
        break;
      case 'L': {
        size_t start = ++i;
        while (i < len && desc[i] != ';')
          i++;
        if (i == len || i == start)
          return DISCO_EPROTO;
        i++;
        break;
      }
      default:
        return DISCO_EPROTO;
    }
    n++;
  }
  *count = n;
  return 0;
}

const char *disco_dubbo_attachment(const disco_h2_value_t *attachments,
                                   const char *key) {
  size_t i;

  if (attachments == NULL || attachments->type != DISCO_H2_MAP)
    return NULL;
  for (i = 0; i < attachments->u.map.count; i++) {
    const disco_h2_value_t *k = attachments->u.map.keys[i];
    const disco_h2_value_t *v = attachments->u.map.values[i];
    if (k->type == DISCO_H2_STRING && strcmp(k->u.bytes.data, key) == 0)
      return v->type == DISCO_H2_STRING ? v->u.bytes.data : NULL;
  }
  return NULL;
}

/* Reads the next value as a string (NULL for null when may_be_null). */
static int disco__read_string(disco_h2_reader_t *r, const char **out,
                              int may_be_null, const char **why,
                              const char *what) {
  disco_h2_value_t *v;
  int err = disco_h2_read(r, &v);

  if (err != 0) {
    if (why != NULL)
      *why = err == DISCO_EOF ? what : disco_h2_reader_error(r, NULL);
    return err == DISCO_EOF ? DISCO_EPROTO : err;
  }
  if (v->type == DISCO_H2_NULL && may_be_null) {
    *out = NULL;
    return 0;
  }
  if (v->type != DISCO_H2_STRING) {
    if (why != NULL)
      *why = what;
    return DISCO_EPROTO;
  }
  *out = v->u.bytes.data;
  return 0;
}

int disco_dubbo_request_decode(const char *body, size_t len,
                               const disco_h2_limits_t *limits,
                               disco_dubbo_request_t *req, const char **why) {
  disco_h2_value_t *v;
  size_t i;
  int err;

  memset(req, 0, sizeof(*req));
  err = disco_h2_reader_new(body, len, limits, &req->reader_);
  if (err != 0)
    return err;
  if ((err = disco__read_string(req->reader_, &req->dubbo_version, 1, why,
                                "no dubbo version")) != 0 ||
      (err = disco__read_string(req->reader_, &req->path, 0, why,
                                "no service path")) != 0 ||
      (err = disco__read_string(req->reader_, &req->version, 1, why,
                                "no service version")) != 0 ||
      (err = disco__read_string(req->reader_, &req->method, 0, why,
                                "no method name")) != 0 ||
      (err = disco__read_string(req->reader_, &req->param_types, 1, why,
                                "no parameter types")) != 0)
    return err;
  if (req->param_types == NULL)
    req->param_types = "";
  if (disco_dubbo_desc_count(req->param_types, strlen(req->param_types),
                             &req->nargs) != 0) {
    if (why != NULL)
      *why = "malformed parameter types";
    return DISCO_EPROTO;
  }
  if (req->nargs > 0) {
    if (req->nargs > len) { /* each argument takes a byte at least */
      if (why != NULL)
        *why = "more parameters than body bytes";
      return DISCO_EPROTO;
    }
    req->args = calloc(req->nargs, sizeof(*req->args));
    if (req->args == NULL)
      return DISCO_ENOMEM;
  }
  for (i = 0; i < req->nargs; i++) {
    err = disco_h2_read(req->reader_, &req->args[i]);
    if (err != 0) {
      if (why != NULL)
        *why = err == DISCO_EOF ? "fewer arguments than parameter types"
                                : disco_h2_reader_error(req->reader_, NULL);
      return err == DISCO_EOF ? DISCO_EPROTO : err;
    }
  }
  /* Attachments are absent in very old clients; tolerate that. */
  err = disco_h2_read(req->reader_, &v);
  if (err == DISCO_EOF)
    return 0;
  if (err != 0) {
    if (why != NULL)
      *why = disco_h2_reader_error(req->reader_, NULL);
    return err;
  }
  if (v->type == DISCO_H2_MAP) {
    req->attachments = v;
    req->group = disco_dubbo_attachment(v, "group");
  } else if (v->type != DISCO_H2_NULL) {
    if (why != NULL)
      *why = "attachments are not a map";
    return DISCO_EPROTO;
  }
  return 0;
}

void disco_dubbo_request_free(disco_dubbo_request_t *req) {
  if (req == NULL)
    return;
  free(req->args);
  disco_h2_reader_free(req->reader_);
  req->args = NULL;
  req->reader_ = NULL;
}

/* The message of a decoded Throwable: its detailMessage when a string,
 * else its class name. */
static const char *disco__exception_message(const disco_h2_value_t *v) {
  size_t i;

  if (v == NULL)
    return "null exception";
  if (v->type == DISCO_H2_STRING)
    return v->u.bytes.data;
  if (v->type == DISCO_H2_MAP) {
    for (i = 0; i < v->u.map.count; i++) {
      const disco_h2_value_t *k = v->u.map.keys[i];
      if (k->type == DISCO_H2_STRING &&
          strcmp(k->u.bytes.data, "detailMessage") == 0 &&
          v->u.map.values[i]->type == DISCO_H2_STRING)
        return v->u.map.values[i]->u.bytes.data;
    }
    return v->u.map.type != NULL ? v->u.map.type : "exception";
  }
  if (v->type != DISCO_H2_OBJECT)
    return "exception";
  for (i = 0; i < v->u.object.count; i++) {
    if (strcmp(v->u.object.field_names[i], "detailMessage") == 0 &&
        v->u.object.fields[i]->type == DISCO_H2_STRING)
      return v->u.object.fields[i]->u.bytes.data;
  }
  return v->u.object.class_name;
}

int disco_dubbo_response_decode(const char *body, size_t len,
                                const disco_h2_limits_t *limits,
                                disco_dubbo_response_t *resp,
                                const char **why) {
  disco_h2_value_t *v;
  int err;

  memset(resp, 0, sizeof(*resp));
  resp->kind = -1;
  err = disco_h2_reader_new(body, len, limits, &resp->reader_);
  if (err != 0)
    return err;
  err = disco_h2_read(resp->reader_, &v);
  if (err != 0 || v->type != DISCO_H2_INT || v->u.i < 0 || v->u.i > 5) {
    if (why != NULL)
      *why = err != 0 && err != DISCO_EOF
                 ? disco_h2_reader_error(resp->reader_, NULL)
                 : "response kind is not an int from 0 to 5";
    return err != 0 && err != DISCO_EOF ? err : DISCO_EPROTO;
  }
  resp->kind = v->u.i;
  if (resp->kind != DISCO_DUBBO_RESPONSE_NULL &&
      resp->kind != DISCO_DUBBO_RESPONSE_NULL_ATTACHMENTS) {
    err = disco_h2_read(resp->reader_, &v);
    if (err != 0) {
      if (why != NULL)
        *why = err == DISCO_EOF ? "no response value"
                                : disco_h2_reader_error(resp->reader_, NULL);
      return err == DISCO_EOF ? DISCO_EPROTO : err;
    }
    resp->value = v->type == DISCO_H2_NULL ? NULL : v;
  }
  if (resp->kind == DISCO_DUBBO_RESPONSE_EXCEPTION ||
      resp->kind == DISCO_DUBBO_RESPONSE_EXCEPTION_ATTACHMENTS)
    resp->message = disco__exception_message(resp->value);
  if (resp->kind >= DISCO_DUBBO_RESPONSE_EXCEPTION_ATTACHMENTS) {
    err = disco_h2_read(resp->reader_, &v);
    if (err != 0 || (v->type != DISCO_H2_MAP && v->type != DISCO_H2_NULL)) {
      if (why != NULL)
        *why = err != 0 && err != DISCO_EOF
                   ? disco_h2_reader_error(resp->reader_, NULL)
                   : "no attachments map";
      return err != 0 && err != DISCO_EOF ? err : DISCO_EPROTO;
    }
    resp->attachments = v->type == DISCO_H2_MAP ? v : NULL;
  }
  return 0;
}

void disco_dubbo_response_free(disco_dubbo_response_t *resp) {
  if (resp == NULL)
    return;
  disco_h2_reader_free(resp->reader_);
  resp->reader_ = NULL;
}

/* A growing frame buffer. */
typedef struct {
  char *data;
  size_t len;
  size_t cap;
} disco__buf_t;

static int disco__buf_add(disco__buf_t *b, const char *data, size_t len) {
  if (len > b->cap - b->len) {
    size_t cap = b->cap != 0 ? b->cap : 256;
    char *p;
    while (cap - b->len < len) {
      if (cap > ((size_t)1 << 31))
        return DISCO_E2BIG;
      cap *= 2;
    }
    p = realloc(b->data, cap);
    if (p == NULL)
      return DISCO_ENOMEM;
    b->data = p;
    b->cap = cap;
  }
  if (len > 0)
    memcpy(b->data + b->len, data, len);
  b->len += len;
  return 0;
}

/* Moves what the writer holds to the buffer and resets the writer. */
static int disco__buf_take(disco__buf_t *b, disco_h2_writer_t *w) {
  size_t len;
  const char *data = disco_h2_writer_data(w, &len);
  int err = disco__buf_add(b, data, len);

  disco_h2_writer_reset(w);
  return err;
}

/* Resets the writer and starts the buffer with room for the header. */
static int disco__buf_start(disco__buf_t *b, disco_h2_writer_t *w) {
  static const char zero[DISCO_DUBBO_HEADER_LEN] = { 0 };

  disco_h2_writer_reset(w);
  return disco__buf_add(b, zero, sizeof(zero));
}

/* Ends an encode that came this far with `err`: on an error the writer is
 * reset and the buffer freed; otherwise the header (flags, status, id and
 * the body's length) is filled in at the start and the buffer handed out. */
static int disco__buf_finish(disco__buf_t *b, disco_h2_writer_t *w, int err,
                             uint8_t flags, uint8_t status, int64_t id,
                             char **out, size_t *out_len) {
  disco_dubbo_header_t h;

  if (err == 0 && b->len - DISCO_DUBBO_HEADER_LEN > 0x7fffffff)
    err = DISCO_E2BIG;
  if (err != 0) {
    disco_h2_writer_reset(w);
    free(b->data);
    return err;
  }
  memset(&h, 0, sizeof(h));
  h.flags = flags;
  h.status = status;
  h.id = id;
  h.body_len = (uint32_t)(b->len - DISCO_DUBBO_HEADER_LEN);
  disco_dubbo_header_encode(&h, b->data);
  *out = b->data;
  *out_len = b->len;
  return 0;
}

static int disco__write_cstring(disco_h2_writer_t *w, const char *s) {
  if (s == NULL)
    return disco_h2_write_null(w);
  return disco_h2_write_string(w, s, strlen(s));
}

static int disco__write_pair(disco_h2_writer_t *w, const char *k,
                             const char *v) {
  int err = disco__write_cstring(w, k);
  return err != 0 ? err : disco__write_cstring(w, v);
}

int disco_dubbo_request_encode(disco_h2_writer_t *w, int64_t id,
                               const disco_dubbo_call_t *call, char **out,
                               size_t *out_len) {
  disco__buf_t b = { NULL, 0, 0 };
  size_t i;
  int err;

  if (w == NULL || call == NULL || call->method == NULL || call->path == NULL ||
      out == NULL || out_len == NULL ||
      (call->nattachments > 0 &&
       (call->attachment_keys == NULL || call->attachment_values == NULL)))
    return DISCO_EINVAL;
  err = disco__buf_start(&b, w);
  if (err == 0)
    err = disco__write_cstring(w, DISCO_DUBBO_VERSION);
  if (err == 0)
    err = disco__write_cstring(w, call->path);
  if (err == 0)
    err = disco__write_cstring(w, call->version != NULL ? call->version : "");
  if (err == 0)
    err = disco__write_cstring(w, call->method);
  if (err == 0)
    err = disco__write_cstring(w, call->param_types != NULL ? call->param_types
                                                            : "");
  if (err == 0)
    err = disco__buf_take(&b, w);
  /* The arguments are a stream of their own; the attachments map after
   * them defines no classes and refers to none of theirs, so the two
   * streams can simply be joined. */
  if (err == 0 && call->args_len > 0)
    err = disco__buf_add(&b, call->args, call->args_len);
  if (err == 0)
    err = disco_h2_write_map_begin(w, NULL);
  for (i = 0; err == 0 && i < call->nattachments; i++) {
    const char *k = call->attachment_keys[i];
    if (k == NULL || strcmp(k, "path") == 0 || strcmp(k, "interface") == 0 ||
        (strcmp(k, "version") == 0 && call->version != NULL) ||
        (strcmp(k, "group") == 0 && call->group != NULL))
      continue; /* set below from the call itself */
    err = disco__write_pair(w, k, call->attachment_values[i]);
  }
  if (err == 0)
    err = disco__write_pair(w, "path", call->path);
  if (err == 0)
    err = disco__write_pair(w, "interface", call->path);
  if (err == 0 && call->version != NULL)
    err = disco__write_pair(w, "version", call->version);
  if (err == 0 && call->group != NULL)
    err = disco__write_pair(w, "group", call->group);
  if (err == 0)
    err = disco_h2_write_end(w);
  if (err == 0)
    err = disco__buf_take(&b, w);
  return disco__buf_finish(&b, w, err,
                           DISCO_DUBBO_FLAG_REQUEST | DISCO_DUBBO_FLAG_TWOWAY |
                               DISCO_DUBBO_HESSIAN2,
                           0, id, out, out_len);
}

int disco_dubbo_response_encode(disco_h2_writer_t *w, int64_t id, int status,
                                const char *value, size_t len,
                                const char *error_message, char **out,
                                size_t *out_len) {
  disco__buf_t b = { NULL, 0, 0 };
  int err;

  if (w == NULL || out == NULL || out_len == NULL || status < 0 || status > 255)
    return DISCO_EINVAL;
  err = disco__buf_start(&b, w);
  if (status == DISCO_DUBBO_OK) {
    if (err == 0)
      err = disco_h2_write_int(w, value != NULL ? DISCO_DUBBO_RESPONSE_VALUE
                                                : DISCO_DUBBO_RESPONSE_NULL);
    if (err == 0)
      err = disco__buf_take(&b, w);
    if (err == 0 && value != NULL)
      err = disco__buf_add(&b, value, len);
  } else {
    const char *msg = error_message;
    if (msg == NULL)
      msg = disco_dubbo_status_name(status);
    if (err == 0)
      err = disco__write_cstring(w, msg != NULL ? msg : "error");
    if (err == 0)
      err = disco__buf_take(&b, w);
  }
  return disco__buf_finish(&b, w, err, DISCO_DUBBO_HESSIAN2, (uint8_t)status,
                           id, out, out_len);
}

void disco_dubbo_heartbeat_encode(int64_t id, int response,
                                  char out[DISCO_DUBBO_HEADER_LEN + 1]) {
  disco_dubbo_header_t h;

  memset(&h, 0, sizeof(h));
  h.flags = DISCO_DUBBO_FLAG_EVENT | DISCO_DUBBO_HESSIAN2;
  if (response)
    h.status = DISCO_DUBBO_OK;
  else
    h.flags |= DISCO_DUBBO_FLAG_REQUEST | DISCO_DUBBO_FLAG_TWOWAY;
  h.id = id;
  h.body_len = 1;
  disco_dubbo_header_encode(&h, out);
  out[DISCO_DUBBO_HEADER_LEN] = 'N';
}
