/*
 * The Hessian 2.0 writer (WIRE.md §7b; the API is in disco.h).
 *
 * It produces what Caucho's Hessian2Output produces for the same calls, so
 * that Java reads it back and byte comparisons with Java vectors hold: the
 * same compact int, long, double and date forms, strings as UTF-8 of each
 * UTF-16 unit (a non-BMP character becomes two 3-byte surrogates) in chunks
 * of 0x8000 units that never end on a high surrogate, type strings written
 * once and then referenced by index, and a class definition written the
 * first time a class (name and field list) is used.
 *
 * Errors are sticky: once a call failed, the stream is incomplete and
 * every later call returns the same error until disco_h2_writer_reset.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DISCO__H2_CHUNK 0x8000
/* write_value's own nesting bound: shared nodes can make a decoded graph
 * far deeper than the reader's max_depth. */
#define DISCO__H2_WRITE_DEPTH 4096

typedef struct {
  char *name;
  size_t nfields;
  char **fields;
} disco__h2_wclass_t;

struct disco_h2_writer_s {
  char *buf;
  size_t len;
  size_t cap;
  int err;
  size_t open; /* maps and lists begun and not ended */
  size_t refs; /* maps, lists and objects begun: the next one's ref index */
  disco__h2_wclass_t *classes;
  size_t nclasses, cap_classes;
  char **types;
  size_t ntypes, cap_types;
};

int disco_h2_writer_new(disco_h2_writer_t **out) {
  disco_h2_writer_t *w;
  if (out == NULL)
    return DISCO_EINVAL;
  w = calloc(1, sizeof(*w));
  if (w == NULL)
    return DISCO_ENOMEM;
  *out = w;
  return 0;
}

static void disco__h2_forget(disco_h2_writer_t *w) {
  size_t i;
  size_t j;
  for (i = 0; i < w->nclasses; i++) {
    for (j = 0; j < w->classes[i].nfields; j++)
      free(w->classes[i].fields[j]);
    free(w->classes[i].fields);
    free(w->classes[i].name);
  }
  for (i = 0; i < w->ntypes; i++)
    free(w->types[i]);
  w->nclasses = 0;
  w->ntypes = 0;
}

void disco_h2_writer_free(disco_h2_writer_t *w) {
  if (w == NULL)
    return;
  disco__h2_forget(w);
  free(w->classes);
  free(w->types);
  free(w->buf);
  free(w);
}

const char *disco_h2_writer_data(const disco_h2_writer_t *w, size_t *len) {
  if (len != NULL)
    *len = w->len;
  return w->buf != NULL ? w->buf : "";
}

void disco_h2_writer_reset(disco_h2_writer_t *w) {
  disco__h2_forget(w);
  w->len = 0;
  w->err = 0;
  w->open = 0;
  w->refs = 0;
}

/* ---------------------------------------------------------------- buffer */

static int disco__h2_fail_w(disco_h2_writer_t *w, int err) {
  if (w->err == 0)
    w->err = err;
  return w->err;
}

/* Room for n more bytes; returns 0 or the (sticky) error. */
static int disco__h2_reserve(disco_h2_writer_t *w, size_t n) {
  size_t ncap;
  char *nb;
  if (w->err != 0)
    return w->err;
  if (w->cap - w->len >= n)
    return 0;
  if (n > ((size_t)-1) / 4 - w->len)
    return disco__h2_fail_w(w, DISCO_ENOMEM);
  ncap = w->cap ? w->cap : 256;
  while (ncap - w->len < n)
    ncap *= 2;
  nb = realloc(w->buf, ncap);
  if (nb == NULL)
    return disco__h2_fail_w(w, DISCO_ENOMEM);
  w->buf = nb;
  w->cap = ncap;
  return 0;
}

static int disco__h2_put(disco_h2_writer_t *w, const void *p, size_t n) {
  if (disco__h2_reserve(w, n))
    return w->err;
  memcpy(w->buf + w->len, p, n);
  w->len += n;
  return 0;
}

static int disco__h2_byte(disco_h2_writer_t *w, int b) {
  unsigned char c = (unsigned char)b;
  return disco__h2_put(w, &c, 1);
}

/* tag (or -1 for none) then the low n bytes of v, big-endian. */
static int disco__h2_be_put(disco_h2_writer_t *w, int tag, uint64_t v,
                            size_t n) {
  unsigned char b[9];
  size_t k = 0;
  size_t i;
  if (tag >= 0)
    b[k++] = (unsigned char)tag;
  for (i = n; i > 0; i--)
    b[k++] = (unsigned char)(v >> (8 * (i - 1)));
  return disco__h2_put(w, b, k);
}

/* --------------------------------------------------------------- scalars */

int disco_h2_write_null(disco_h2_writer_t *w) {
  return disco__h2_byte(w, 'N');
}

int disco_h2_write_bool(disco_h2_writer_t *w, int value) {
  return disco__h2_byte(w, value ? 'T' : 'F');
}

int disco_h2_write_int(disco_h2_writer_t *w, int32_t v) {
  if (v >= -0x10 && v <= 0x2f)
    return disco__h2_byte(w, 0x90 + v);
  if (v >= -0x800 && v <= 0x7ff)
    return disco__h2_be_put(w, 0xc8 + (v >> 8), (uint64_t)v, 1);
  if (v >= -0x40000 && v <= 0x3ffff)
    return disco__h2_be_put(w, 0xd4 + (v >> 16), (uint64_t)v, 2);
  return disco__h2_be_put(w, 'I', (uint64_t)(uint32_t)v, 4);
}

int disco_h2_write_long(disco_h2_writer_t *w, int64_t v) {
  if (v >= -8 && v <= 15)
    return disco__h2_byte(w, (int)(0xe0 + v));
  if (v >= -0x800 && v <= 0x7ff)
    return disco__h2_be_put(w, (int)(0xf8 + (v >> 8)), (uint64_t)v, 1);
  if (v >= -0x40000 && v <= 0x3ffff)
    return disco__h2_be_put(w, (int)(0x3c + (v >> 16)), (uint64_t)v, 2);
  if (v >= INT32_MIN && v <= INT32_MAX)
    return disco__h2_be_put(w, 0x59, (uint64_t)(uint32_t)(int32_t)v, 4);
  return disco__h2_be_put(w, 'L', (uint64_t)v, 8);
}

/* Java's forms: 0x5b/0x5c for 0 and 1, a byte or a short for other small
 * integers, thousandths in an int (0x5f) when exact, else 'D'. Unlike Java
 * a negative zero keeps its sign (it goes out as 'D'). */
int disco_h2_write_double(disco_h2_writer_t *w, double v) {
  uint64_t bits;
  if (v >= -2147483648.0 && v <= 2147483647.0 && v == (double)(int32_t)v &&
      !(v == 0.0 && signbit(v))) {
    int32_t i = (int32_t)v;
    if (i == 0)
      return disco__h2_byte(w, 0x5b);
    if (i == 1)
      return disco__h2_byte(w, 0x5c);
    if (i >= -0x80 && i < 0x80)
      return disco__h2_be_put(w, 0x5d, (uint64_t)i, 1);
    if (i >= -0x8000 && i < 0x8000)
      return disco__h2_be_put(w, 0x5e, (uint64_t)i, 2);
  }
  if (v * 1000 >= -2147483648.0 && v * 1000 <= 2147483647.0 &&
      !(v == 0.0 && signbit(v))) {
    int32_t mills = (int32_t)(v * 1000);
    if (0.001 * mills == v)
      return disco__h2_be_put(w, 0x5f, (uint64_t)(uint32_t)mills, 4);
  }
  memcpy(&bits, &v, sizeof(bits));
  return disco__h2_be_put(w, 'D', bits, 8);
}

int disco_h2_write_date(disco_h2_writer_t *w, int64_t ms) {
  if (ms % 60000 == 0) {
    int64_t minutes = ms / 60000;
    if (minutes >= INT32_MIN && minutes <= INT32_MAX)
      return disco__h2_be_put(w, 'K', (uint64_t)(uint32_t)(int32_t)minutes, 4);
  }
  return disco__h2_be_put(w, 'J', (uint64_t)ms, 8);
}

/* --------------------------------------------------------------- strings */

/* The next character of valid UTF-8 at s[0..len): its byte length and its
 * code point; 0 when invalid. 3-byte surrogates (the reader's form of an
 * unpaired one) are accepted. */
static size_t disco__h2_utf8_next(const unsigned char *s, size_t len,
                                  uint32_t *cp) {
  uint32_t c = s[0];
  size_t n;
  size_t i;
  uint32_t min;
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  if ((c & 0xe0) == 0xc0) {
    n = 2;
    c &= 0x1f;
    min = 0x80;
  } else if ((c & 0xf0) == 0xe0) {
    n = 3;
    c &= 0x0f;
    min = 0x800;
  } else if ((c & 0xf8) == 0xf0) {
    n = 4;
    c &= 0x07;
    min = 0x10000;
  } else {
    return 0;
  }
  if (len < n)
    return 0;
  for (i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    c = (c << 6) | (s[i] & 0x3f);
  }
  if (c < min || c > 0x10ffff)
    return 0;
  *cp = c;
  return n;
}

static void disco__h2_put3(unsigned char *b, uint32_t u) {
  b[0] = (unsigned char)(0xe0 | (u >> 12));
  b[1] = (unsigned char)(0x80 | ((u >> 6) & 0x3f));
  b[2] = (unsigned char)(0x80 | (u & 0x3f));
}

/* Writes the characters of s[0..len) (valid, already checked) as Java
 * does: a non-BMP one as two 3-byte surrogates. */
static int disco__h2_put_units(disco_h2_writer_t *w, const unsigned char *s,
                               size_t len) {
  size_t i = 0;
  /* At most 6 bytes per 4 input bytes. */
  if (disco__h2_reserve(w, len + len / 2 + 4))
    return w->err;
  while (i < len) {
    uint32_t c;
    size_t n = disco__h2_utf8_next(s + i, len - i, &c);
    unsigned char *b = (unsigned char *)w->buf + w->len;
    if (n == 4) {
      c -= 0x10000;
      disco__h2_put3(b, 0xd800 + (c >> 10));
      disco__h2_put3(b + 3, 0xdc00 + (c & 0x3ff));
      w->len += 6;
    } else {
      memcpy(b, s + i, n);
      w->len += n;
    }
    i += n;
  }
  return 0;
}

int disco_h2_write_string(disco_h2_writer_t *w, const char *utf8, size_t len) {
  const unsigned char *s = (const unsigned char *)utf8;
  size_t units = 0;
  size_t i = 0;
  if (w->err != 0)
    return w->err;
  if (utf8 == NULL && len > 0)
    return disco__h2_fail_w(w, DISCO_EINVAL);
  while (i < len) {
    uint32_t c;
    size_t n = disco__h2_utf8_next(s + i, len - i, &c);
    if (n == 0)
      return disco__h2_fail_w(w, DISCO_EINVAL);
    units += n == 4 ? 2 : 1;
    i += n;
  }
  i = 0;
  while (units > DISCO__H2_CHUNK) {
    /* Take whole characters up to 0x8000 units: a pair that would straddle
     * the boundary leaves the chunk one unit short, as in Java. */
    size_t start = i;
    size_t sub = 0;
    while (sub < DISCO__H2_CHUNK) {
      uint32_t c;
      size_t n = disco__h2_utf8_next(s + i, len - i, &c);
      size_t u = n == 4 ? 2 : 1;
      if (sub + u > DISCO__H2_CHUNK)
        break;
      sub += u;
      i += n;
    }
    if (disco__h2_be_put(w, 'R', sub, 2) ||
        disco__h2_put_units(w, s + start, i - start))
      return w->err;
    units -= sub;
  }
  if (units <= 0x1f) {
    if (disco__h2_byte(w, (int)units))
      return w->err;
  } else if (units <= 0x3ff) {
    if (disco__h2_be_put(w, (int)(0x30 + (units >> 8)), units, 1))
      return w->err;
  } else if (disco__h2_be_put(w, 'S', units, 2)) {
    return w->err;
  }
  return disco__h2_put_units(w, s + i, len - i);
}

int disco_h2_write_binary(disco_h2_writer_t *w, const char *data, size_t len) {
  if (w->err != 0)
    return w->err;
  if (data == NULL && len > 0)
    return disco__h2_fail_w(w, DISCO_EINVAL);
  while (len > DISCO__H2_CHUNK) {
    if (disco__h2_be_put(w, 'A', DISCO__H2_CHUNK, 2) ||
        disco__h2_put(w, data, DISCO__H2_CHUNK))
      return w->err;
    data += DISCO__H2_CHUNK;
    len -= DISCO__H2_CHUNK;
  }
  if (len <= 0x0f) {
    if (disco__h2_byte(w, (int)(0x20 + len)))
      return w->err;
  } else if (len <= 0x3ff) {
    if (disco__h2_be_put(w, (int)(0x34 + (len >> 8)), len, 1))
      return w->err;
  } else if (disco__h2_be_put(w, 'B', len, 2)) {
    return w->err;
  }
  return disco__h2_put(w, data, len);
}

/* ------------------------------------------------------------ containers */

static char *disco__h2_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

/* A type: its index when written before, else the string (remembered). */
static int disco__h2_write_type(disco_h2_writer_t *w, const char *type) {
  size_t i;
  char *copy;
  for (i = 0; i < w->ntypes; i++) {
    if (strcmp(w->types[i], type) == 0)
      return disco_h2_write_int(w, (int32_t)i);
  }
  if (w->ntypes == w->cap_types) {
    size_t ncap = w->cap_types ? w->cap_types * 2 : 8;
    char **nt = realloc(w->types, ncap * sizeof(*nt));
    if (nt == NULL)
      return disco__h2_fail_w(w, DISCO_ENOMEM);
    w->types = nt;
    w->cap_types = ncap;
  }
  copy = disco__h2_strdup(type);
  if (copy == NULL)
    return disco__h2_fail_w(w, DISCO_ENOMEM);
  w->types[w->ntypes++] = copy;
  return disco_h2_write_string(w, type, strlen(type));
}

int disco_h2_write_map_begin(disco_h2_writer_t *w, const char *type) {
  if (w->err != 0)
    return w->err;
  w->open++;
  w->refs++;
  if (type == NULL)
    return disco__h2_byte(w, 'H');
  if (disco__h2_byte(w, 'M'))
    return w->err;
  return disco__h2_write_type(w, type);
}

int disco_h2_write_list_begin(disco_h2_writer_t *w, const char *type) {
  if (w->err != 0)
    return w->err;
  w->open++;
  w->refs++;
  if (type == NULL)
    return disco__h2_byte(w, 0x57);
  if (disco__h2_byte(w, 0x55))
    return w->err;
  return disco__h2_write_type(w, type);
}

int disco_h2_write_end(disco_h2_writer_t *w) {
  if (w->err != 0)
    return w->err;
  if (w->open == 0)
    return disco__h2_fail_w(w, DISCO_EINVAL);
  w->open--;
  return disco__h2_byte(w, 'Z');
}

static int disco__h2_class_eq(const disco__h2_wclass_t *c, const char *name,
                              size_t nfields, const char *const *fields) {
  size_t i;
  if (c->nfields != nfields || strcmp(c->name, name) != 0)
    return 0;
  for (i = 0; i < nfields; i++) {
    if (strcmp(c->fields[i], fields[i]) != 0)
      return 0;
  }
  return 1;
}

/* Remembers a new class; its definition is written by the caller. */
static int disco__h2_class_add(disco_h2_writer_t *w, const char *name,
                               size_t nfields, const char *const *fields) {
  disco__h2_wclass_t *c;
  size_t i;
  if (w->nclasses == w->cap_classes) {
    size_t ncap = w->cap_classes ? w->cap_classes * 2 : 8;
    disco__h2_wclass_t *nc = realloc(w->classes, ncap * sizeof(*nc));
    if (nc == NULL)
      return disco__h2_fail_w(w, DISCO_ENOMEM);
    w->classes = nc;
    w->cap_classes = ncap;
  }
  c = &w->classes[w->nclasses];
  c->name = disco__h2_strdup(name);
  c->fields = calloc(nfields ? nfields : 1, sizeof(*c->fields));
  c->nfields = 0;
  if (c->name == NULL || c->fields == NULL) {
    free(c->name);
    free(c->fields);
    return disco__h2_fail_w(w, DISCO_ENOMEM);
  }
  w->nclasses++;
  for (i = 0; i < nfields; i++) {
    c->fields[i] = disco__h2_strdup(fields[i]);
    if (c->fields[i] == NULL)
      return disco__h2_fail_w(w, DISCO_ENOMEM);
    c->nfields++;
  }
  return 0;
}

int disco_h2_write_object_begin(disco_h2_writer_t *w, const char *class_name,
                                size_t nfields,
                                const char *const *field_names) {
  size_t i;
  size_t idx;
  if (w->err != 0)
    return w->err;
  if (class_name == NULL || (nfields > 0 && field_names == NULL) ||
      nfields > INT32_MAX)
    return disco__h2_fail_w(w, DISCO_EINVAL);
  for (i = 0; i < nfields; i++) {
    if (field_names[i] == NULL)
      return disco__h2_fail_w(w, DISCO_EINVAL);
  }
  for (idx = 0; idx < w->nclasses; idx++) {
    if (disco__h2_class_eq(&w->classes[idx], class_name, nfields, field_names))
      break;
  }
  if (idx == w->nclasses) {
    if (disco__h2_class_add(w, class_name, nfields, field_names) ||
        disco__h2_byte(w, 'C') ||
        disco_h2_write_string(w, class_name, strlen(class_name)) ||
        disco_h2_write_int(w, (int32_t)nfields))
      return w->err;
    for (i = 0; i < nfields; i++) {
      if (disco_h2_write_string(w, field_names[i], strlen(field_names[i])))
        return w->err;
    }
  }
  w->refs++;
  if (idx <= 0x0f)
    return disco__h2_byte(w, (int)(0x60 + idx));
  if (disco__h2_byte(w, 'O'))
    return w->err;
  return disco_h2_write_int(w, (int32_t)idx);
}

size_t disco_h2_writer_ref_count(const disco_h2_writer_t *w) {
  return w->refs;
}

int disco_h2_write_ref(disco_h2_writer_t *w, size_t index) {
  if (w->err != 0)
    return w->err;
  if (index >= w->refs || index > INT32_MAX)
    return disco__h2_fail_w(w, DISCO_EINVAL);
  if (disco__h2_byte(w, 'Q'))
    return w->err;
  return disco_h2_write_int(w, (int32_t)index);
}

/* ----------------------------------------------------------------- value */

typedef struct disco__h2_path_s disco__h2_path_t;

/* The containers being written, innermost first: a value met again on
 * this path is a cycle. */
struct disco__h2_path_s {
  const disco_h2_value_t *v;
  const disco__h2_path_t *up;
  size_t depth;
};

static int disco__h2_value_w(disco_h2_writer_t *w, const disco_h2_value_t *v,
                             const disco__h2_path_t *up);

static int disco__h2_values_w(disco_h2_writer_t *w, disco_h2_value_t *const *vs,
                              size_t n, const disco__h2_path_t *path) {
  size_t i;
  for (i = 0; i < n; i++) {
    if (disco__h2_value_w(w, vs[i], path))
      return w->err;
  }
  return 0;
}

static int disco__h2_value_w(disco_h2_writer_t *w, const disco_h2_value_t *v,
                             const disco__h2_path_t *up) {
  disco__h2_path_t path;
  const disco__h2_path_t *p;
  size_t i;

  if (w->err != 0)
    return w->err;
  if (v == NULL)
    return disco__h2_fail_w(w, DISCO_EINVAL);
  switch (v->type) {
    case DISCO_H2_NULL:
      return disco_h2_write_null(w);
    case DISCO_H2_BOOL:
      return disco_h2_write_bool(w, v->u.b);
    case DISCO_H2_INT:
      return disco_h2_write_int(w, v->u.i);
    case DISCO_H2_LONG:
      return disco_h2_write_long(w, v->u.l);
    case DISCO_H2_DOUBLE:
      return disco_h2_write_double(w, v->u.d);
    case DISCO_H2_DATE:
      return disco_h2_write_date(w, v->u.l);
    case DISCO_H2_STRING:
      return disco_h2_write_string(w, v->u.bytes.data, v->u.bytes.len);
    case DISCO_H2_BINARY:
      return disco_h2_write_binary(w, v->u.bytes.data, v->u.bytes.len);
    case DISCO_H2_LIST:
    case DISCO_H2_MAP:
    case DISCO_H2_OBJECT:
      break;
    default:
      return disco__h2_fail_w(w, DISCO_EINVAL);
  }

  for (p = up; p != NULL; p = p->up) {
    if (p->v == v)
      return disco__h2_fail_w(w, DISCO_EINVAL);
  }
  path.v = v;
  path.up = up;
  path.depth = up ? up->depth + 1 : 1;
  if (path.depth > DISCO__H2_WRITE_DEPTH)
    return disco__h2_fail_w(w, DISCO_EINVAL);

  if (v->type == DISCO_H2_LIST) {
    if (disco_h2_write_list_begin(w, v->u.list.type) ||
        disco__h2_values_w(w, v->u.list.items, v->u.list.count, &path))
      return w->err;
    return disco_h2_write_end(w);
  }
  if (v->type == DISCO_H2_MAP) {
    if (disco_h2_write_map_begin(w, v->u.map.type))
      return w->err;
    for (i = 0; i < v->u.map.count; i++) {
      if (disco__h2_value_w(w, v->u.map.keys[i], &path) ||
          disco__h2_value_w(w, v->u.map.values[i], &path))
        return w->err;
    }
    return disco_h2_write_end(w);
  }
  if (disco_h2_write_object_begin(w, v->u.object.class_name, v->u.object.count,
                                  v->u.object.field_names))
    return w->err;
  return disco__h2_values_w(w, v->u.object.fields, v->u.object.count, &path);
}

int disco_h2_write_value(disco_h2_writer_t *w, const disco_h2_value_t *v) {
  return disco__h2_value_w(w, v, NULL);
}
