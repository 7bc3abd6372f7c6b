/*
 * Dubbo frames (WIRE.md §7): the 16-byte header, the status table and the
 * frame assembler that turns a stream's read chunks into whole frames.
 *
 * The assembler checks a header before it buffers the body, so a peer that
 * announces a huge frame is refused before anything is allocated for it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dubbo_internal.h"

/* The body buffer is kept between frames up to this size; larger ones are
 * released once their frame was handed out, so that one big frame does not
 * pin memory for the connection's lifetime. */
#define DISCO__FRAMER_KEEP (64 * 1024)

struct disco_dubbo_framer_s {
  size_t max_frame;
  char head[DISCO_DUBBO_HEADER_LEN];
  size_t head_len; /* header bytes held */
  disco_dubbo_header_t header;
  char *body;
  size_t body_cap;
  size_t body_len; /* body bytes held */
  int err;
  const char *why;
};

static const struct {
  int status;
  const char *name;
} disco__dubbo_statuses[] = {
  { DISCO_DUBBO_OK, "ok" },
  { DISCO_DUBBO_CLIENT_TIMEOUT, "client_timeout" },
  { DISCO_DUBBO_SERVER_TIMEOUT, "server_timeout" },
  { DISCO_DUBBO_BAD_REQUEST, "bad_request" },
  { DISCO_DUBBO_BAD_RESPONSE, "bad_response" },
  { DISCO_DUBBO_SERVICE_NOT_FOUND, "service_not_found" },
  { DISCO_DUBBO_SERVICE_ERROR, "service_error" },
  { DISCO_DUBBO_SERVER_ERROR, "server_error" },
  { DISCO_DUBBO_CLIENT_ERROR, "client_error" },
  { DISCO_DUBBO_THREADPOOL_EXHAUSTED, "threadpool_exhausted" },
};

#define DISCO__NSTATUS                                                         \
  (sizeof(disco__dubbo_statuses) / sizeof(disco__dubbo_statuses[0]))

const char *disco_dubbo_status_name(int status) {
  size_t i;

  for (i = 0; i < DISCO__NSTATUS; i++)
    if (disco__dubbo_statuses[i].status == status)
      return disco__dubbo_statuses[i].name;
  return NULL;
}

int disco_dubbo_status_parse(const char *name, int *status) {
  size_t i;

  if (name == NULL || status == NULL)
    return DISCO_EINVAL;
  for (i = 0; i < DISCO__NSTATUS; i++) {
    if (strcmp(disco__dubbo_statuses[i].name, name) == 0) {
      *status = disco__dubbo_statuses[i].status;
      return 0;
    }
  }
  return DISCO_EINVAL;
}

int disco_dubbo_status_error(int status) {
  switch (status) {
    case DISCO_DUBBO_OK:
      return 0;
    case DISCO_DUBBO_CLIENT_TIMEOUT:
    case DISCO_DUBBO_SERVER_TIMEOUT:
      return DISCO_ETIMEDOUT;
    case DISCO_DUBBO_SERVICE_NOT_FOUND:
      return DISCO_ENOENT;
    default:
      return DISCO_EIO;
  }
}

void disco_dubbo_header_encode(const disco_dubbo_header_t *header,
                               char out[DISCO_DUBBO_HEADER_LEN]) {
  uint64_t id = (uint64_t)header->id;
  unsigned char *p = (unsigned char *)out;
  int i;

  p[0] = 0xda;
  p[1] = 0xbb;
  p[2] = header->flags;
  p[3] = header->status;
  for (i = 0; i < 8; i++)
    p[4 + i] = (unsigned char)(id >> (56 - 8 * i));
  p[12] = (unsigned char)(header->body_len >> 24);
  p[13] = (unsigned char)(header->body_len >> 16);
  p[14] = (unsigned char)(header->body_len >> 8);
  p[15] = (unsigned char)header->body_len;
}

int disco_dubbo_header_decode(const char *buf, size_t max_frame,
                              disco_dubbo_header_t *header, const char **why) {
  const unsigned char *p = (const unsigned char *)buf;
  uint64_t id = 0;
  uint32_t len;
  int i;

  if (p[0] != 0xda || p[1] != 0xbb) {
    if (why != NULL)
      *why = "bad magic (not a dubbo frame)";
    return DISCO_EPROTO;
  }
  if ((p[2] & DISCO_DUBBO_SERIALIZATION_MASK) != DISCO_DUBBO_HESSIAN2) {
    if (why != NULL)
      *why = "serialization is not hessian2 (2)";
    return DISCO_EPROTO;
  }
  for (i = 0; i < 8; i++)
    id = (id << 8) | p[4 + i];
  len = ((uint32_t)p[12] << 24) | ((uint32_t)p[13] << 16) |
        ((uint32_t)p[14] << 8) | (uint32_t)p[15];
  if (len & 0x80000000u) {
    if (why != NULL)
      *why = "negative body length";
    return DISCO_EPROTO;
  }
  if (max_frame == 0)
    max_frame = DISCO_DUBBO_MAX_FRAME;
  if (len > max_frame) {
    if (why != NULL)
      *why = "frame over max_frame";
    return DISCO_E2BIG;
  }
  header->flags = p[2];
  header->status = p[3];
  header->id = (int64_t)id;
  header->body_len = len;
  return 0;
}

int disco_dubbo_framer_new(size_t max_frame, disco_dubbo_framer_t **out) {
  disco_dubbo_framer_t *f;

  if (out == NULL || max_frame > 0x7fffffff)
    return DISCO_EINVAL;
  f = calloc(1, sizeof(*f));
  if (f == NULL)
    return DISCO_ENOMEM;
  f->max_frame = max_frame != 0 ? max_frame : DISCO_DUBBO_MAX_FRAME;
  *out = f;
  return 0;
}

void disco_dubbo_framer_free(disco_dubbo_framer_t *framer) {
  if (framer == NULL)
    return;
  free(framer->body);
  free(framer);
}

/* Forgets the frame just handed out, and a large body buffer with it. */
static void disco__framer_reset(disco_dubbo_framer_t *f) {
  f->head_len = 0;
  f->body_len = 0;
  if (f->body_cap > DISCO__FRAMER_KEEP) {
    free(f->body);
    f->body = NULL;
    f->body_cap = 0;
  }
}

static int disco__framer_fail(disco_dubbo_framer_t *f, int err,
                              const char *why) {
  f->err = err;
  f->why = why;
  return err;
}

int disco_dubbo_framer_feed(disco_dubbo_framer_t *f, const char *data,
                            size_t len, size_t *used,
                            disco_dubbo_frame_t *frame) {
  size_t pos = 0;
  size_t n;
  const char *why = NULL;
  int err;

  *used = 0;
  if (f->err != 0)
    return f->err;
  /* A frame handed out by the previous call is done with now. */
  if (f->head_len == DISCO_DUBBO_HEADER_LEN &&
      f->body_len == f->header.body_len)
    disco__framer_reset(f);
  if (f->head_len < DISCO_DUBBO_HEADER_LEN) {
    n = DISCO_DUBBO_HEADER_LEN - f->head_len;
    if (n > len)
      n = len;
    memcpy(f->head + f->head_len, data, n);
    f->head_len += n;
    pos += n;
    /* Reject a wrong magic as soon as its bytes are in, so that garbage
     * shorter than a header is refused too. */
    if ((f->head_len >= 1 && (unsigned char)f->head[0] != 0xda) ||
        (f->head_len >= 2 && (unsigned char)f->head[1] != 0xbb)) {
      *used = pos;
      return disco__framer_fail(f, DISCO_EPROTO,
                                "bad magic (not a dubbo frame)");
    }
    if (f->head_len < DISCO_DUBBO_HEADER_LEN) {
      *used = pos;
      return 0;
    }
    err = disco_dubbo_header_decode(f->head, f->max_frame, &f->header, &why);
    if (err != 0) {
      *used = pos;
      return disco__framer_fail(f, err, why);
    }
    if (f->header.body_len > f->body_cap) {
      char *body = realloc(f->body, f->header.body_len);
      if (body == NULL) {
        *used = pos;
        return disco__framer_fail(f, DISCO_ENOMEM, "out of memory");
      }
      f->body = body;
      f->body_cap = f->header.body_len;
    }
    f->body_len = 0;
  }
  n = f->header.body_len - f->body_len;
  if (n > len - pos)
    n = len - pos;
  if (n > 0) {
    memcpy(f->body + f->body_len, data + pos, n);
    f->body_len += n;
    pos += n;
  }
  *used = pos;
  if (f->body_len < f->header.body_len)
    return 0;
  frame->header = f->header;
  frame->body = f->body != NULL ? f->body : "";
  return 1;
}

size_t disco_dubbo_framer_pending(const disco_dubbo_framer_t *f) {
  if (f->head_len == DISCO_DUBBO_HEADER_LEN &&
      f->body_len == f->header.body_len)
    return 0;
  return f->head_len + f->body_len;
}

const char *disco_dubbo_framer_error(const disco_dubbo_framer_t *f) {
  return f->err != 0 ? f->why : NULL;
}

/* ------------------------------------------- connection read helpers */

void disco__dubbo_alloc_cb(uv_handle_t *handle, size_t suggested,
                           uv_buf_t *buf) {
  (void)handle;
  (void)suggested;
  buf->base = malloc(DISCO__DUBBO_READ_BUF);
  buf->len = buf->base != NULL ? DISCO__DUBBO_READ_BUF : 0;
}

int disco__dubbo_feed(disco_dubbo_framer_t *framer, const char *data,
                      size_t len, disco__dubbo_live_cb live,
                      disco__dubbo_frame_cb on_frame, void *cb_data, char *why,
                      size_t why_len) {
  disco_dubbo_frame_t frame;
  size_t used;
  int rc;

  while (len > 0 && live(cb_data)) {
    rc = disco_dubbo_framer_feed(framer, data, len, &used, &frame);
    data += used;
    len -= used;
    if (rc < 0) {
      snprintf(why, why_len, "protocol error: %s",
               disco_dubbo_framer_error(framer));
      return DISCO_EPROTO;
    }
    if (rc == 1)
      on_frame(cb_data, &frame);
  }
  return 0;
}
