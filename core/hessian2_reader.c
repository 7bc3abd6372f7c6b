/*
 * The Hessian 2.0 reader (WIRE.md §7b; the API is in disco.h).
 *
 * A recursive-descent decoder over a borrowed buffer. Every value, string
 * and array it produces lives in one arena freed with the reader. Limits
 * are checked before the memory they guard is allocated: a length field is
 * first compared with the limit (DISCO_E2BIG), then with the bytes left in
 * the input (DISCO_EPROTO: every element takes at least one byte), so a
 * header announcing gigabytes costs nothing.
 *
 * Stream state shared by successive values (class definitions, type
 * strings, back-reference targets) lives in growable tables that are also
 * arena-allocated. A container is recorded as a reference target when it
 * starts, before its contents are read, so `Q` may name a container still
 * being filled: that is how cycles arise, and why a container's value node
 * is allocated first and its arrays attached once complete.
 *
 * Strings: Hessian counts UTF-16 code units and Java writes each unit as
 * 1-3 bytes of UTF-8, a non-BMP character as two 3-byte surrogates. The
 * reader joins such pairs (even across chunks) into proper 4-byte UTF-8,
 * keeps an unpaired surrogate as its 3-byte form, and also accepts a
 * 4-byte sequence as two units (other writers emit them). A string is
 * decoded twice: a first pass measures it (and validates every chunk
 * header) so that the limit is checked before the one allocation.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DISCO__H2_BLOCK 65536
#define DISCO__H2_ALIGN 16

typedef struct disco__h2_block_s disco__h2_block_t;

struct disco__h2_block_s {
  disco__h2_block_t *next;
  size_t used;
  size_t size;
  /* data follows, aligned */
};

typedef struct {
  const char *name;
  size_t count;
  const char *const *fields;
} disco__h2_class_t;

struct disco_h2_reader_s {
  const unsigned char *buf;
  size_t len;
  size_t pos;
  disco_h2_limits_t limits;
  disco__h2_block_t *blocks;
  size_t total;    /* bytes handed out by the arena */
  size_t elements; /* items + entries + fields + refs so far */
  size_t depth;
  disco__h2_class_t *classes;
  size_t nclasses, cap_classes;
  const char **types;
  size_t ntypes, cap_types;
  disco_h2_value_t **refs;
  size_t nrefs, cap_refs;
  int err;
  size_t err_pos;
  char message[96];
};

void disco_h2_limits_init(disco_h2_limits_t *limits) {
  limits->max_depth = 64;
  limits->max_elements = 1000000;
  limits->max_string = 8 * 1024 * 1024;
  limits->max_total = 64 * 1024 * 1024;
}

/* Records the first error (later ones are consequences) and returns it. */
static int disco__h2_fail(disco_h2_reader_t *r, int err, size_t pos,
                          const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static int disco__h2_fail(disco_h2_reader_t *r, int err, size_t pos,
                          const char *fmt, ...) {
  va_list ap;
  if (r->err != 0)
    return r->err;
  r->err = err;
  r->err_pos = pos;
  va_start(ap, fmt);
  vsnprintf(r->message, sizeof(r->message), fmt, ap);
  va_end(ap);
  return err;
}

static int disco__h2_truncated(disco_h2_reader_t *r) {
  return disco__h2_fail(r, DISCO_EPROTO, r->len, "truncated input");
}

/* ----------------------------------------------------------------- arena */

static void *disco__h2_alloc(disco_h2_reader_t *r, size_t size) {
  disco__h2_block_t *b = r->blocks;
  size_t head =
      (sizeof(*b) + DISCO__H2_ALIGN - 1) & ~(size_t)(DISCO__H2_ALIGN - 1);
  size_t need;
  char *p;

  if (size == 0)
    size = 1;
  if (size > ((size_t)-1) / 2)
    goto too_big;
  need = (size + DISCO__H2_ALIGN - 1) & ~(size_t)(DISCO__H2_ALIGN - 1);
  if (need > r->limits.max_total || r->total > r->limits.max_total - need)
    goto too_big;
  if (b == NULL || b->size - b->used < need) {
    size_t bsize = need > DISCO__H2_BLOCK / 4 ? need : DISCO__H2_BLOCK;
    disco__h2_block_t *nb = malloc(head + bsize);
    if (nb == NULL) {
      disco__h2_fail(r, DISCO_ENOMEM, r->pos, "out of memory");
      return NULL;
    }
    nb->used = 0;
    nb->size = bsize;
    if (b != NULL && bsize != DISCO__H2_BLOCK) {
      /* A large one-off block goes behind the current one, which keeps
       * serving small allocations. */
      nb->next = b->next;
      b->next = nb;
    } else {
      nb->next = b;
      r->blocks = nb;
    }
    b = nb;
  }
  p = (char *)b + head + b->used;
  b->used += need;
  r->total += need;
  return p;

too_big:
  disco__h2_fail(r, DISCO_E2BIG, r->pos, "values over max_total");
  return NULL;
}

/* Grows an arena array of `elem`-sized items to hold at least n + 1. The
 * old copy is abandoned in the arena: at most as much again, counted in
 * max_total. */
static int disco__h2_grow(disco_h2_reader_t *r, void **arr, size_t *cap,
                          size_t n, size_t elem) {
  size_t ncap;
  void *na;
  if (n < *cap)
    return 0;
  ncap = *cap ? *cap * 2 : 8;
  if (ncap > ((size_t)-1) / elem)
    return disco__h2_fail(r, DISCO_E2BIG, r->pos, "values over max_total");
  na = disco__h2_alloc(r, ncap * elem);
  if (na == NULL)
    return r->err;
  if (n > 0)
    memcpy(na, *arr, n * elem);
  *arr = na;
  *cap = ncap;
  return 0;
}

/* Counts n more elements against max_elements. */
static int disco__h2_count(disco_h2_reader_t *r, size_t n, size_t pos) {
  if (n > r->limits.max_elements || r->elements > r->limits.max_elements - n)
    return disco__h2_fail(r, DISCO_E2BIG, pos, "elements over max_elements");
  r->elements += n;
  return 0;
}

/* --------------------------------------------------------------- scalars */

static int disco__h2_need(disco_h2_reader_t *r, size_t n) {
  if (r->len - r->pos < n)
    return disco__h2_truncated(r);
  return 0;
}

static uint64_t disco__h2_be(const unsigned char *p, size_t n) {
  uint64_t v = 0;
  size_t i;
  for (i = 0; i < n; i++)
    v = (v << 8) | p[i];
  return v;
}

/* After the tag byte `tag` of an int (the caller consumed it): the int.
 * Returns 1 when tag is not an int tag. */
static int disco__h2_int_body(disco_h2_reader_t *r, int tag, int32_t *out) {
  const unsigned char *p;
  if (tag >= 0x80 && tag <= 0xbf) {
    *out = tag - 0x90;
  } else if (tag >= 0xc0 && tag <= 0xcf) {
    if (disco__h2_need(r, 1))
      return r->err;
    *out = (tag - 0xc8) * 256 + r->buf[r->pos];
    r->pos += 1;
  } else if (tag >= 0xd0 && tag <= 0xd7) {
    if (disco__h2_need(r, 2))
      return r->err;
    p = r->buf + r->pos;
    *out = (tag - 0xd4) * 65536 + p[0] * 256 + p[1];
    r->pos += 2;
  } else if (tag == 'I') {
    if (disco__h2_need(r, 4))
      return r->err;
    *out = (int32_t)(uint32_t)disco__h2_be(r->buf + r->pos, 4);
    r->pos += 4;
  } else {
    return 1;
  }
  return 0;
}

/* An int production (field counts, lengths, indexes). */
static int disco__h2_read_int(disco_h2_reader_t *r, int32_t *out,
                              const char *what) {
  size_t at = r->pos;
  int tag;
  int rc;
  if (disco__h2_need(r, 1))
    return r->err;
  tag = r->buf[r->pos++];
  rc = disco__h2_int_body(r, tag, out);
  if (rc == 1)
    return disco__h2_fail(r, DISCO_EPROTO, at,
                          "expected an int (%s), got 0x%02x", what,
                          (unsigned)tag);
  return rc;
}

/* A non-negative int used as a count or an index. */
static int disco__h2_read_size(disco_h2_reader_t *r, size_t *out,
                               const char *what) {
  size_t at = r->pos;
  int32_t v;
  if (disco__h2_read_int(r, &v, what))
    return r->err;
  if (v < 0)
    return disco__h2_fail(r, DISCO_EPROTO, at, "negative %s", what);
  *out = (size_t)v;
  return 0;
}

/* --------------------------------------------------------------- strings */

/* The UTF-8 encoding of code point c (up to 0x10ffff) into out (NULL to
 * measure); returns its length. */
static size_t disco__h2_put_utf8(char *out, uint32_t c) {
  if (c < 0x80) {
    if (out)
      out[0] = (char)c;
    return 1;
  }
  if (c < 0x800) {
    if (out) {
      out[0] = (char)(0xc0 | (c >> 6));
      out[1] = (char)(0x80 | (c & 0x3f));
    }
    return 2;
  }
  if (c < 0x10000) {
    if (out) {
      out[0] = (char)(0xe0 | (c >> 12));
      out[1] = (char)(0x80 | ((c >> 6) & 0x3f));
      out[2] = (char)(0x80 | (c & 0x3f));
    }
    return 3;
  }
  if (out) {
    out[0] = (char)(0xf0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    out[3] = (char)(0x80 | (c & 0x3f));
  }
  return 4;
}

/* The state of one string decode, carried across its chunks. */
typedef struct {
  char *out;        /* NULL while measuring */
  size_t len;       /* bytes produced */
  uint32_t pending; /* a high surrogate waiting for its low half, or 0 */
} disco__h2_utf_t;

static void disco__h2_emit(disco__h2_utf_t *u, uint32_t c) {
  u->len += disco__h2_put_utf8(u->out ? u->out + u->len : NULL, c);
}

static void disco__h2_unit(disco__h2_utf_t *u, uint32_t c) {
  if (u->pending != 0) {
    if (c >= 0xdc00 && c <= 0xdfff) {
      disco__h2_emit(u, 0x10000 + ((u->pending - 0xd800) << 10) + (c - 0xdc00));
      u->pending = 0;
      return;
    }
    disco__h2_emit(u, u->pending);
    u->pending = 0;
  }
  if (c >= 0xd800 && c <= 0xdbff)
    u->pending = c;
  else
    disco__h2_emit(u, c);
}

/* Decodes `units` UTF-16 units of UTF-8 at r->pos, advancing it. */
static int disco__h2_chunk(disco_h2_reader_t *r, size_t units,
                           disco__h2_utf_t *u) {
  const unsigned char *p = r->buf;
  while (units > 0) {
    size_t at = r->pos;
    uint32_t c;
    size_t n;
    size_t i;
    if (at >= r->len)
      return disco__h2_truncated(r);
    c = p[at];
    if (c < 0x80) {
      n = 1;
    } else if ((c & 0xe0) == 0xc0) {
      n = 2;
      c &= 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 3;
      c &= 0x0f;
    } else if ((c & 0xf8) == 0xf0 && units >= 2) {
      n = 4;
      c &= 0x07;
    } else {
      return disco__h2_fail(r, DISCO_EPROTO, at, "invalid UTF-8 in string");
    }
    if (r->len - at < n)
      return disco__h2_truncated(r);
    for (i = 1; i < n; i++) {
      if ((p[at + i] & 0xc0) != 0x80)
        return disco__h2_fail(r, DISCO_EPROTO, at, "invalid UTF-8 in string");
      c = (c << 6) | (p[at + i] & 0x3f);
    }
    r->pos = at + n;
    if (n == 4) {
      if (c < 0x10000 || c > 0x10ffff)
        return disco__h2_fail(r, DISCO_EPROTO, at, "invalid UTF-8 in string");
      disco__h2_unit(u, 0xd800 + ((c - 0x10000) >> 10));
      disco__h2_unit(u, 0xdc00 + ((c - 0x10000) & 0x3ff));
      units -= 2;
    } else {
      disco__h2_unit(u, c);
      units -= 1;
    }
  }
  return 0;
}

/* The chunk header at r->pos for a string (is_binary 0) or binary: sets
 * *len and *final and advances. Returns 1 (not an error) when the byte is
 * not such a header. */
static int disco__h2_chunk_head(disco_h2_reader_t *r, int is_binary,
                                size_t *len, int *final) {
  int tag;
  if (disco__h2_need(r, 1))
    return r->err;
  tag = r->buf[r->pos];
  *final = 1;
  if (!is_binary && tag <= 0x1f) {
    *len = (size_t)tag;
    r->pos += 1;
    return 0;
  }
  if (is_binary && tag >= 0x20 && tag <= 0x2f) {
    *len = (size_t)(tag - 0x20);
    r->pos += 1;
    return 0;
  }
  if ((!is_binary && tag >= 0x30 && tag <= 0x33) ||
      (is_binary && tag >= 0x34 && tag <= 0x37)) {
    if (disco__h2_need(r, 2))
      return r->err;
    *len =
        (size_t)((tag - (is_binary ? 0x34 : 0x30)) * 256 + r->buf[r->pos + 1]);
    r->pos += 2;
    return 0;
  }
  if ((!is_binary && (tag == 'S' || tag == 'R')) ||
      (is_binary && (tag == 'B' || tag == 'A'))) {
    if (disco__h2_need(r, 3))
      return r->err;
    *len = (size_t)disco__h2_be(r->buf + r->pos + 1, 2);
    *final = tag == 'S' || tag == 'B';
    r->pos += 3;
    return 0;
  }
  return 1;
}

/* A string or binary whose first chunk header is at r->pos; the result is
 * arena-allocated and NUL-terminated. */
static int disco__h2_read_chunked(disco_h2_reader_t *r, int is_binary,
                                  const char **data, size_t *len) {
  size_t start = r->pos;
  int pass;
  disco__h2_utf_t u;
  char *out = NULL;

  /* Pass 0 measures and validates; pass 1 fills the allocation. */
  for (pass = 0; pass < 2; pass++) {
    int final = 0;
    r->pos = start;
    u.out = out;
    u.len = 0;
    u.pending = 0;
    while (!final) {
      size_t at = r->pos;
      size_t n = 0;
      int rc = disco__h2_chunk_head(r, is_binary, &n, &final);
      if (rc == 1)
        return disco__h2_fail(r, DISCO_EPROTO, at, "bad %s chunk tag 0x%02x",
                              is_binary ? "binary" : "string",
                              (unsigned)r->buf[at]);
      if (rc)
        return rc;
      if (r->len - r->pos < n)
        return disco__h2_truncated(r);
      if (is_binary) {
        if (out)
          memcpy(out + u.len, r->buf + r->pos, n);
        u.len += n;
        r->pos += n;
      } else if (disco__h2_chunk(r, n, &u)) {
        return r->err;
      }
      if (u.len > r->limits.max_string)
        return disco__h2_fail(r, DISCO_E2BIG, start, "%s over max_string",
                              is_binary ? "binary" : "string");
    }
    if (u.pending != 0) {
      disco__h2_emit(&u, u.pending);
      u.pending = 0;
    }
    if (u.len > r->limits.max_string)
      return disco__h2_fail(r, DISCO_E2BIG, start, "%s over max_string",
                            is_binary ? "binary" : "string");
    if (pass == 0) {
      out = disco__h2_alloc(r, u.len + 1);
      if (out == NULL)
        return r->err;
    }
  }
  out[u.len] = '\0';
  *data = out;
  *len = u.len;
  return 0;
}

/* A string production (class names, field names, types). */
static int disco__h2_read_string(disco_h2_reader_t *r, const char **out,
                                 const char *what) {
  size_t len;
  size_t at = r->pos;
  int tag;
  if (disco__h2_need(r, 1))
    return r->err;
  tag = r->buf[at];
  if (!(tag <= 0x1f || (tag >= 0x30 && tag <= 0x33) || tag == 'S' ||
        tag == 'R'))
    return disco__h2_fail(r, DISCO_EPROTO, at,
                          "expected a string (%s), got 0x%02x", what,
                          (unsigned)tag);
  return disco__h2_read_chunked(r, 0, out, &len);
}

/* A type: a string (remembered) or an int naming a remembered one. */
static int disco__h2_read_type(disco_h2_reader_t *r, const char **out) {
  size_t at = r->pos;
  int tag;
  int32_t idx;
  if (disco__h2_need(r, 1))
    return r->err;
  tag = r->buf[at];
  if (tag <= 0x1f || (tag >= 0x30 && tag <= 0x33) || tag == 'S' || tag == 'R') {
    if (disco__h2_read_string(r, out, "type"))
      return r->err;
    if (disco__h2_count(r, 1, at) ||
        disco__h2_grow(r, (void **)&r->types, &r->cap_types, r->ntypes,
                       sizeof(*r->types)))
      return r->err;
    r->types[r->ntypes++] = *out;
    return 0;
  }
  if (disco__h2_read_int(r, &idx, "type"))
    return r->err;
  if (idx < 0 || (size_t)idx >= r->ntypes)
    return disco__h2_fail(r, DISCO_EPROTO, at, "unknown type reference %ld",
                          (long)idx);
  *out = r->types[idx];
  return 0;
}

/* ------------------------------------------------------------ containers */

static int disco__h2_value(disco_h2_reader_t *r, disco_h2_value_t **out);

static disco_h2_value_t *disco__h2_node(disco_h2_reader_t *r,
                                        disco_h2_type_t type) {
  disco_h2_value_t *v = disco__h2_alloc(r, sizeof(*v));
  if (v != NULL) {
    memset(v, 0, sizeof(*v));
    v->type = type;
  }
  return v;
}

/* Makes v the next back-reference target. */
static int disco__h2_add_ref(disco_h2_reader_t *r, disco_h2_value_t *v) {
  if (disco__h2_grow(r, (void **)&r->refs, &r->cap_refs, r->nrefs,
                     sizeof(*r->refs)))
    return r->err;
  r->refs[r->nrefs++] = v;
  return 0;
}

/* Checks a length announced by a header before anything is allocated for
 * it: each element takes at least `min_bytes` of the input. */
static int disco__h2_check_len(disco_h2_reader_t *r, size_t n, size_t min_bytes,
                               size_t at) {
  if (disco__h2_count(r, n, at))
    return r->err;
  if (n > (r->len - r->pos) / min_bytes)
    return disco__h2_fail(r, DISCO_EPROTO, at,
                          "length %zu beyond the end of the input", n);
  return 0;
}

/* Whether a variable-length container goes on: 1 for another entry, 0
 * when its 'Z' came (consumed), -1 on an error (in r->err). */
static int disco__h2_more(disco_h2_reader_t *r) {
  if (disco__h2_need(r, 1))
    return -1;
  if (r->buf[r->pos] == 'Z') {
    r->pos++;
    return 0;
  }
  return 1;
}

/* A new node of this type, registered as the next back-reference target;
 * NULL on an error (in r->err). */
static disco_h2_value_t *disco__h2_ref_node(disco_h2_reader_t *r,
                                            disco_h2_type_t type) {
  disco_h2_value_t *v = disco__h2_node(r, type);
  if (v == NULL || disco__h2_add_ref(r, v))
    return NULL;
  return v;
}

/* A list; `fixed` < 0 for a variable-length one (ending in 'Z'). */
static int disco__h2_list(disco_h2_reader_t *r, size_t at, const char *type,
                          long fixed, disco_h2_value_t **out) {
  disco_h2_value_t *v = disco__h2_ref_node(r, DISCO_H2_LIST);
  disco_h2_value_t **items = NULL;
  size_t n = 0;
  size_t cap = 0;
  int more;
  if (v == NULL)
    return r->err;
  v->u.list.type = type;
  if (fixed >= 0) {
    if (disco__h2_check_len(r, (size_t)fixed, 1, at))
      return r->err;
    cap = (size_t)fixed;
    items = disco__h2_alloc(r, (cap ? cap : 1) * sizeof(*items));
    if (items == NULL)
      return r->err;
    for (n = 0; n < cap; n++) {
      if (disco__h2_value(r, &items[n]))
        return r->err;
    }
  } else {
    while ((more = disco__h2_more(r)) > 0) {
      if (disco__h2_count(r, 1, r->pos) ||
          disco__h2_grow(r, (void **)&items, &cap, n, sizeof(*items)))
        return r->err;
      if (disco__h2_value(r, &items[n]))
        return r->err;
      n++;
    }
    if (more < 0)
      return r->err;
  }
  v->u.list.items = items;
  v->u.list.count = n;
  *out = v;
  return 0;
}

static int disco__h2_map(disco_h2_reader_t *r, const char *type,
                         disco_h2_value_t **out) {
  disco_h2_value_t *v = disco__h2_ref_node(r, DISCO_H2_MAP);
  disco_h2_value_t **keys = NULL;
  disco_h2_value_t **values = NULL;
  size_t n = 0;
  size_t cap = 0;
  int more;
  if (v == NULL)
    return r->err;
  v->u.map.type = type;
  while ((more = disco__h2_more(r)) > 0) {
    size_t kcap = cap;
    if (disco__h2_count(r, 1, r->pos) ||
        disco__h2_grow(r, (void **)&keys, &kcap, n, sizeof(*keys)) ||
        disco__h2_grow(r, (void **)&values, &cap, n, sizeof(*values)))
      return r->err;
    if (disco__h2_value(r, &keys[n]) || disco__h2_value(r, &values[n]))
      return r->err;
    n++;
  }
  if (more < 0)
    return r->err;
  v->u.map.keys = keys;
  v->u.map.values = values;
  v->u.map.count = n;
  *out = v;
  return 0;
}

/* 'C': a class definition (the tag was consumed). */
static int disco__h2_class_def(disco_h2_reader_t *r, size_t at) {
  disco__h2_class_t *c;
  const char *name;
  const char **fields;
  size_t n;
  size_t i;
  if (disco__h2_read_string(r, &name, "class name") ||
      disco__h2_read_size(r, &n, "field count") ||
      disco__h2_check_len(r, n, 1, at))
    return r->err;
  fields = disco__h2_alloc(r, (n ? n : 1) * sizeof(*fields));
  if (fields == NULL)
    return r->err;
  for (i = 0; i < n; i++) {
    if (disco__h2_read_string(r, &fields[i], "field name"))
      return r->err;
  }
  if (disco__h2_grow(r, (void **)&r->classes, &r->cap_classes, r->nclasses,
                     sizeof(*r->classes)))
    return r->err;
  c = &r->classes[r->nclasses++];
  c->name = name;
  c->count = n;
  c->fields = fields;
  return 0;
}

static int disco__h2_object(disco_h2_reader_t *r, size_t at, size_t idx,
                            disco_h2_value_t **out) {
  const disco__h2_class_t *c;
  disco_h2_value_t *v;
  disco_h2_value_t **fields;
  size_t i;
  if (idx >= r->nclasses)
    return disco__h2_fail(r, DISCO_EPROTO, at, "object of undefined class %zu",
                          idx);
  c = &r->classes[idx];
  v = disco__h2_ref_node(r, DISCO_H2_OBJECT);
  if (v == NULL || disco__h2_check_len(r, c->count, 1, at))
    return r->err;
  fields = disco__h2_alloc(r, (c->count ? c->count : 1) * sizeof(*fields));
  if (fields == NULL)
    return r->err;
  v->u.object.class_name = c->name;
  v->u.object.field_names = c->fields;
  v->u.object.fields = fields;
  for (i = 0; i < c->count; i++) {
    if (disco__h2_value(r, &fields[i]))
      return r->err;
    /* The count grows with each field read, so that a cycle through this
     * object never sees a field that is not filled yet. */
    v->u.object.count = i + 1;
  }
  *out = v;
  return 0;
}

/* ----------------------------------------------------------------- value */

static int disco__h2_scalar(disco_h2_reader_t *r, disco_h2_type_t type,
                            disco_h2_value_t **out, disco_h2_value_t **v) {
  *v = disco__h2_node(r, type);
  if (*v == NULL)
    return r->err;
  *out = *v;
  return 0;
}

static double disco__h2_bits_double(uint64_t bits) {
  double d;
  memcpy(&d, &bits, sizeof(d));
  return d;
}

/* A container: depth is checked first, so that nesting never exhausts
 * the C stack. */
static int disco__h2_container(disco_h2_reader_t *r, int tag, size_t at,
                               disco_h2_value_t **out) {
  const char *type = NULL;
  size_t n;
  int rc;
  if (r->depth >= r->limits.max_depth)
    return disco__h2_fail(r, DISCO_E2BIG, at, "nesting over max_depth");
  r->depth++;
  switch (tag) {
    case 'H':
      rc = disco__h2_map(r, NULL, out);
      break;
    case 'M':
      rc = disco__h2_read_type(r, &type) || disco__h2_map(r, type, out);
      break;
    case 'U':
      rc =
          disco__h2_read_type(r, &type) || disco__h2_list(r, at, type, -1, out);
      break;
    case 'W':
      rc = disco__h2_list(r, at, NULL, -1, out);
      break;
    case 'V':
      rc = disco__h2_read_type(r, &type) ||
           disco__h2_read_size(r, &n, "list length") ||
           disco__h2_list(r, at, type, (long)n, out);
      break;
    case 'X':
      rc = disco__h2_read_size(r, &n, "list length") ||
           disco__h2_list(r, at, NULL, (long)n, out);
      break;
    case 'O':
      rc = disco__h2_read_size(r, &n, "class index") ||
           disco__h2_object(r, at, n, out);
      break;
    default:
      if (tag >= 0x60 && tag <= 0x6f) {
        rc = disco__h2_object(r, at, (size_t)(tag - 0x60), out);
      } else if (tag >= 0x70 && tag <= 0x77) {
        rc = disco__h2_read_type(r, &type) ||
             disco__h2_list(r, at, type, tag - 0x70, out);
      } else {
        rc = disco__h2_list(r, at, NULL, tag - 0x78, out);
      }
      break;
  }
  r->depth--;
  return rc ? r->err : 0;
}

static int disco__h2_value(disco_h2_reader_t *r, disco_h2_value_t **out) {
  disco_h2_value_t *v;
  size_t at;
  int tag;
  int32_t i;

  for (;;) {
    at = r->pos;
    if (disco__h2_need(r, 1))
      return r->err;
    tag = r->buf[at];
    if (tag != 'C')
      break;
    r->pos++;
    if (disco__h2_class_def(r, at))
      return r->err;
  }

  /* Strings and binaries keep their tag for the chunk reader. */
  if (tag <= 0x1f || (tag >= 0x30 && tag <= 0x33) || tag == 'S' || tag == 'R') {
    if (disco__h2_scalar(r, DISCO_H2_STRING, out, &v))
      return r->err;
    return disco__h2_read_chunked(r, 0, &v->u.bytes.data, &v->u.bytes.len);
  }
  if ((tag >= 0x20 && tag <= 0x2f) || (tag >= 0x34 && tag <= 0x37) ||
      tag == 'B' || tag == 'A') {
    if (disco__h2_scalar(r, DISCO_H2_BINARY, out, &v))
      return r->err;
    return disco__h2_read_chunked(r, 1, &v->u.bytes.data, &v->u.bytes.len);
  }

  r->pos++;
  if (disco__h2_int_body(r, tag, &i) == 0) {
    if (r->err || disco__h2_scalar(r, DISCO_H2_INT, out, &v))
      return r->err;
    v->u.i = i;
    return 0;
  }
  if (r->err)
    return r->err;

  if (tag >= 0xd8) {
    /* Compact longs: -8..15 in the tag, then one or two more bytes. */
    int64_t l;
    size_t n = tag >= 0xf0 ? 1 : 0;
    if (disco__h2_need(r, n) || disco__h2_scalar(r, DISCO_H2_LONG, out, &v))
      return r->err;
    l = tag >= 0xf0 ? (int64_t)(tag - 0xf8) * 256 + r->buf[r->pos]
                    : (int64_t)tag - 0xe0;
    r->pos += n;
    v->u.l = l;
    return 0;
  }
  if (tag >= 0x38 && tag <= 0x3f) {
    if (disco__h2_need(r, 2) || disco__h2_scalar(r, DISCO_H2_LONG, out, &v))
      return r->err;
    v->u.l = (int64_t)(tag - 0x3c) * 65536 + r->buf[r->pos] * 256 +
             r->buf[r->pos + 1];
    r->pos += 2;
    return 0;
  }

  switch (tag) {
    case 'N':
      return disco__h2_scalar(r, DISCO_H2_NULL, out, &v);
    case 'T':
    case 'F':
      if (disco__h2_scalar(r, DISCO_H2_BOOL, out, &v))
        return r->err;
      v->u.b = tag == 'T';
      return 0;
    case 'L':
    case 'J':
      if (disco__h2_need(r, 8) ||
          disco__h2_scalar(r, tag == 'L' ? DISCO_H2_LONG : DISCO_H2_DATE, out,
                           &v))
        return r->err;
      v->u.l = (int64_t)disco__h2_be(r->buf + r->pos, 8);
      r->pos += 8;
      return 0;
    case 0x59:
    case 'K':
      if (disco__h2_need(r, 4) ||
          disco__h2_scalar(r, tag == 'K' ? DISCO_H2_DATE : DISCO_H2_LONG, out,
                           &v))
        return r->err;
      v->u.l = (int32_t)(uint32_t)disco__h2_be(r->buf + r->pos, 4);
      if (tag == 'K')
        v->u.l *= 60000;
      r->pos += 4;
      return 0;
    case 'D':
      if (disco__h2_need(r, 8) || disco__h2_scalar(r, DISCO_H2_DOUBLE, out, &v))
        return r->err;
      v->u.d = disco__h2_bits_double(disco__h2_be(r->buf + r->pos, 8));
      r->pos += 8;
      return 0;
    case 0x5b:
    case 0x5c:
      if (disco__h2_scalar(r, DISCO_H2_DOUBLE, out, &v))
        return r->err;
      v->u.d = tag == 0x5b ? 0.0 : 1.0;
      return 0;
    case 0x5d:
      if (disco__h2_need(r, 1) || disco__h2_scalar(r, DISCO_H2_DOUBLE, out, &v))
        return r->err;
      v->u.d = (double)(int8_t)r->buf[r->pos];
      r->pos += 1;
      return 0;
    case 0x5e:
      if (disco__h2_need(r, 2) || disco__h2_scalar(r, DISCO_H2_DOUBLE, out, &v))
        return r->err;
      v->u.d = (double)(int16_t)(uint16_t)disco__h2_be(r->buf + r->pos, 2);
      r->pos += 2;
      return 0;
    case 0x5f:
      /* Caucho's reader and writer use this as thousandths in an int. */
      if (disco__h2_need(r, 4) || disco__h2_scalar(r, DISCO_H2_DOUBLE, out, &v))
        return r->err;
      v->u.d = 0.001 * (int32_t)(uint32_t)disco__h2_be(r->buf + r->pos, 4);
      r->pos += 4;
      return 0;
    case 'Q': {
      size_t idx;
      if (disco__h2_read_size(r, &idx, "reference") ||
          disco__h2_count(r, 1, at))
        return r->err;
      if (idx >= r->nrefs)
        return disco__h2_fail(r, DISCO_EPROTO, at, "reference %zu unknown",
                              idx);
      *out = r->refs[idx];
      return 0;
    }
    case 'H':
    case 'M':
    case 'U':
    case 'V':
    case 'W':
    case 'X':
    case 'O':
      return disco__h2_container(r, tag, at, out);
    default:
      if (tag >= 0x60 && tag <= 0x7f)
        return disco__h2_container(r, tag, at, out);
      break;
  }
  return disco__h2_fail(r, DISCO_EPROTO, at, "unknown tag 0x%02x",
                        (unsigned)tag);
}

/* ------------------------------------------------------------------- API */

int disco_h2_reader_new(const char *buf, size_t len,
                        const disco_h2_limits_t *limits,
                        disco_h2_reader_t **out) {
  disco_h2_reader_t *r;
  if (out == NULL || (buf == NULL && len > 0))
    return DISCO_EINVAL;
  r = calloc(1, sizeof(*r));
  if (r == NULL)
    return DISCO_ENOMEM;
  r->buf = (const unsigned char *)buf;
  r->len = len;
  if (limits != NULL)
    r->limits = *limits;
  else
    disco_h2_limits_init(&r->limits);
  *out = r;
  return 0;
}

int disco_h2_read(disco_h2_reader_t *r, disco_h2_value_t **out) {
  if (r->err != 0)
    return r->err;
  if (r->pos >= r->len)
    return DISCO_EOF;
  r->depth = 0;
  if (disco__h2_value(r, out) != 0) {
    *out = NULL;
    return r->err;
  }
  return 0;
}

size_t disco_h2_reader_pos(const disco_h2_reader_t *r) {
  return r->pos;
}

const char *disco_h2_reader_error(const disco_h2_reader_t *r, size_t *pos) {
  if (pos != NULL)
    *pos = r->err ? r->err_pos : r->pos;
  return r->err ? r->message : NULL;
}

void disco_h2_reader_free(disco_h2_reader_t *r) {
  disco__h2_block_t *b;
  if (r == NULL)
    return;
  b = r->blocks;
  while (b != NULL) {
    disco__h2_block_t *next = b->next;
    free(b);
    b = next;
  }
  free(r);
}
