/*
 * Hessian 2.0: the reader and the writer against vectors produced once by
 * Caucho's Hessian2Output (hessian 4.0.38, the hex strings below), every
 * compact-form boundary, chunked and non-BMP strings, every list and map
 * form, objects, back-references and cycles, and hostile input (truncated
 * at every offset, garbage, huge headers, nesting bombs).
 */
#include <stdio.h>
#include <stdlib.h>

#include "ctest.h"

/* Decodes a hex string into a new buffer (the caller frees it). */
static char *h2t_unhex(const char *hex, size_t *len) {
  size_t n = strlen(hex) / 2;
  char *b = malloc(n ? n : 1);
  size_t i;
  for (i = 0; b != NULL && i < n; i++) {
    unsigned v;
    sscanf(hex + 2 * i, "%2x", &v);
    b[i] = (char)v;
  }
  *len = n;
  return b;
}

/* Whether the writer's bytes equal the hex string. */
static int h2t_same(disco_h2_writer_t *w, const char *hex) {
  size_t len;
  size_t n;
  const char *data = disco_h2_writer_data(w, &len);
  char *want = h2t_unhex(hex, &n);
  int same = want != NULL && n == len && memcmp(data, want, n) == 0;
  if (!same) {
    size_t i;
    fprintf(stderr, "want %s\ngot  ", hex);
    for (i = 0; i < len && i < 64; i++)
      fprintf(stderr, "%02x", (unsigned char)data[i]);
    fprintf(stderr, "\n");
  }
  free(want);
  return same;
}

/* One reader over a hex vector, freed with the buffer by h2t_close. */
typedef struct {
  char *buf;
  size_t len;
  disco_h2_reader_t *r;
} h2t_in_t;

static int h2t_open(h2t_in_t *in, const char *hex,
                    const disco_h2_limits_t *limits) {
  in->buf = h2t_unhex(hex, &in->len);
  in->r = NULL;
  if (in->buf == NULL)
    return DISCO_ENOMEM;
  return disco_h2_reader_new(in->buf, in->len, limits, &in->r);
}

static void h2t_close(h2t_in_t *in) {
  disco_h2_reader_free(in->r);
  free(in->buf);
}

/* Reads one value of a hex vector with default limits: 0 or the error. */
static int h2t_read1(h2t_in_t *in, const char *hex, disco_h2_value_t **v) {
  int err = h2t_open(in, hex, NULL);
  if (err != 0)
    return err;
  return disco_h2_read(in->r, v);
}

/* The error of reading every value of buf[0..len) with these limits (0
 * when all read and DISCO_EOF came). */
static int h2t_read_all(const char *buf, size_t len,
                        const disco_h2_limits_t *limits) {
  disco_h2_reader_t *r;
  disco_h2_value_t *v;
  int err = disco_h2_reader_new(buf, len, limits, &r);
  if (err != 0)
    return err;
  while ((err = disco_h2_read(r, &v)) == 0) {
  }
  disco_h2_reader_free(r);
  return err == DISCO_EOF ? 0 : err;
}

/* The error of reading one value of a hex vector with these limits (0 when
 * it read); the reader and buffer are freed. */
static int h2t_read1_err(const char *hex, const disco_h2_limits_t *limits) {
  h2t_in_t in;
  disco_h2_value_t *v;
  int err = h2t_open(&in, hex, limits);
  if (err == 0)
    err = disco_h2_read(in.r, &v);
  h2t_close(&in);
  return err;
}

/* h2t_read_all with default limits over a copy of exactly len bytes, so
 * that ASan sees any over-read. */
static int h2t_read_all_copy(const char *buf, size_t len) {
  char *part = malloc(len ? len : 1);
  int err;
  if (part == NULL)
    return DISCO_ENOMEM;
  memcpy(part, buf, len);
  err = h2t_read_all(part, len, NULL);
  free(part);
  return err;
}

static int h2t_str_is(const disco_h2_value_t *v, const char *s) {
  return v != NULL && v->type == DISCO_H2_STRING &&
         v->u.bytes.len == strlen(s) &&
         memcmp(v->u.bytes.data, s, strlen(s)) == 0;
}

/* ------------------------------------------------------------ scalars */

typedef struct {
  const char *name;
  const char *hex;
  disco_h2_type_t type;
  long long l;
  double d;
} h2t_scalar_t;

/* From Caucho's writeInt/writeLong/writeDouble/writeUTCDate: each compact
 * form at both of its boundaries and one step beyond. */
static const h2t_scalar_t h2t_scalars[] = {
  { "int 0", "90", DISCO_H2_INT, 0LL, 0 },
  { "int -16", "80", DISCO_H2_INT, -16LL, 0 },
  { "int 47", "bf", DISCO_H2_INT, 47LL, 0 },
  { "int -17", "c7ef", DISCO_H2_INT, -17LL, 0 },
  { "int 48", "c830", DISCO_H2_INT, 48LL, 0 },
  { "int -2048", "c000", DISCO_H2_INT, -2048LL, 0 },
  { "int 2047", "cfff", DISCO_H2_INT, 2047LL, 0 },
  { "int -2049", "d3f7ff", DISCO_H2_INT, -2049LL, 0 },
  { "int 2048", "d40800", DISCO_H2_INT, 2048LL, 0 },
  { "int -262144", "d00000", DISCO_H2_INT, -262144LL, 0 },
  { "int 262143", "d7ffff", DISCO_H2_INT, 262143LL, 0 },
  { "int -262145", "49fffbffff", DISCO_H2_INT, -262145LL, 0 },
  { "int 262144", "4900040000", DISCO_H2_INT, 262144LL, 0 },
  { "int -2147483648", "4980000000", DISCO_H2_INT, -2147483647LL - 1, 0 },
  { "int 2147483647", "497fffffff", DISCO_H2_INT, 2147483647LL, 0 },
  { "long 0", "e0", DISCO_H2_LONG, 0LL, 0 },
  { "long -8", "d8", DISCO_H2_LONG, -8LL, 0 },
  { "long 15", "ef", DISCO_H2_LONG, 15LL, 0 },
  { "long -9", "f7f7", DISCO_H2_LONG, -9LL, 0 },
  { "long 16", "f810", DISCO_H2_LONG, 16LL, 0 },
  { "long -2048", "f000", DISCO_H2_LONG, -2048LL, 0 },
  { "long 2047", "ffff", DISCO_H2_LONG, 2047LL, 0 },
  { "long -2049", "3bf7ff", DISCO_H2_LONG, -2049LL, 0 },
  { "long 2048", "3c0800", DISCO_H2_LONG, 2048LL, 0 },
  { "long -262144", "380000", DISCO_H2_LONG, -262144LL, 0 },
  { "long 262143", "3fffff", DISCO_H2_LONG, 262143LL, 0 },
  { "long -262145", "59fffbffff", DISCO_H2_LONG, -262145LL, 0 },
  { "long 262144", "5900040000", DISCO_H2_LONG, 262144LL, 0 },
  { "long -2147483648", "5980000000", DISCO_H2_LONG, -2147483647LL - 1, 0 },
  { "long 2147483647", "597fffffff", DISCO_H2_LONG, 2147483647LL, 0 },
  { "long -2147483649", "4cffffffff7fffffff", DISCO_H2_LONG, -2147483649LL, 0 },
  { "long 2147483648", "4c0000000080000000", DISCO_H2_LONG, 2147483648LL, 0 },
  { "long -9223372036854775808", "4c8000000000000000", DISCO_H2_LONG,
    -9223372036854775807LL - 1, 0 },
  { "long 9223372036854775807", "4c7fffffffffffffff", DISCO_H2_LONG,
    9223372036854775807LL, 0 },
  { "double 0.0", "5b", DISCO_H2_DOUBLE, 0, 0.0 },
  { "double 1.0", "5c", DISCO_H2_DOUBLE, 0, 1.0 },
  { "double -1.0", "5dff", DISCO_H2_DOUBLE, 0, -1.0 },
  { "double 127.0", "5d7f", DISCO_H2_DOUBLE, 0, 127.0 },
  { "double -128.0", "5d80", DISCO_H2_DOUBLE, 0, -128.0 },
  { "double 128.0", "5e0080", DISCO_H2_DOUBLE, 0, 128.0 },
  { "double -129.0", "5eff7f", DISCO_H2_DOUBLE, 0, -129.0 },
  { "double 32767.0", "5e7fff", DISCO_H2_DOUBLE, 0, 32767.0 },
  { "double -32768.0", "5e8000", DISCO_H2_DOUBLE, 0, -32768.0 },
  { "double 32768.0", "5f01f40000", DISCO_H2_DOUBLE, 0, 32768.0 },
  { "double 12.25", "5f00002fda", DISCO_H2_DOUBLE, 0, 12.25 },
  { "double 0.001", "5f00000001", DISCO_H2_DOUBLE, 0, 0.001 },
  { "double -2.5", "5ffffff63c", DISCO_H2_DOUBLE, 0, -2.5 },
  { "double 3.14159", "44400921f9f01b866e", DISCO_H2_DOUBLE, 0, 3.14159 },
  { "double 1.0E300", "447e37e43c8800759c", DISCO_H2_DOUBLE, 0, 1.0E300 },
  { "double 100000.0", "5f05f5e100", DISCO_H2_DOUBLE, 0, 100000.0 },
  { "double 2147483.647", "5f7fffffff", DISCO_H2_DOUBLE, 0, 2147483.647 },
  { "date 894621091000", "4a000000d04b9284b8", DISCO_H2_DATE, 894621091000LL,
    0 },
  { "date 894621060000", "4b00e3838f", DISCO_H2_DATE, 894621060000LL, 0 },
};

#define H2T_NSCALARS (sizeof(h2t_scalars) / sizeof(h2t_scalars[0]))

void test_h2_scalar_vectors(ctest_t *t) {
  size_t i;
  disco_h2_writer_t *w;
  ASSERT_OK(t, disco_h2_writer_new(&w));
  for (i = 0; i < H2T_NSCALARS; i++) {
    const h2t_scalar_t *s = &h2t_scalars[i];
    h2t_in_t in;
    disco_h2_value_t *v = NULL;
    int err = h2t_read1(&in, s->hex, &v);
    int ok =
        err == 0 && v->type == s->type && disco_h2_reader_pos(in.r) == in.len;
    if (ok && s->type == DISCO_H2_INT)
      ok = v->u.i == s->l;
    else if (ok && s->type == DISCO_H2_DOUBLE)
      ok = v->u.d == s->d;
    else if (ok)
      ok = v->u.l == s->l;
    if (ok)
      ok = disco_h2_read(in.r, &v) == DISCO_EOF;
    h2t_close(&in);
    if (!ok)
      fprintf(stderr, "decoding %s\n", s->name);
    ASSERT(t, ok);

    disco_h2_writer_reset(w);
    if (s->type == DISCO_H2_INT)
      ASSERT_OK(t, disco_h2_write_int(w, (int32_t)s->l));
    else if (s->type == DISCO_H2_LONG)
      ASSERT_OK(t, disco_h2_write_long(w, (int64_t)s->l));
    else if (s->type == DISCO_H2_DATE)
      ASSERT_OK(t, disco_h2_write_date(w, (int64_t)s->l));
    else
      ASSERT_OK(t, disco_h2_write_double(w, s->d));
    if (!h2t_same(w, s->hex))
      fprintf(stderr, "encoding %s\n", s->name);
    ASSERT(t, h2t_same(w, s->hex));
  }
  disco_h2_writer_free(w);
}

void test_h2_null_bool_double_forms(ctest_t *t) {
  static const char *const in[] = {
    "4e", "54", "46", "5d80", "5e8000", "5ffffffc18", "44bff0000000000000"
  };
  static const double want[] = { -128.0, -32768.0, -1.0, -1.0 };
  disco_h2_writer_t *w;
  h2t_in_t r;
  disco_h2_value_t *v;
  size_t i;
  double nz = -0.0;

  ASSERT_OK(t, h2t_read1(&r, in[0], &v));
  ASSERT_EQ(t, v->type, DISCO_H2_NULL);
  h2t_close(&r);
  ASSERT_OK(t, h2t_read1(&r, in[1], &v));
  ASSERT(t, v->type == DISCO_H2_BOOL && v->u.b == 1);
  h2t_close(&r);
  ASSERT_OK(t, h2t_read1(&r, in[2], &v));
  ASSERT(t, v->type == DISCO_H2_BOOL && v->u.b == 0);
  h2t_close(&r);
  for (i = 0; i < 4; i++) {
    ASSERT_OK(t, h2t_read1(&r, in[3 + i], &v));
    ASSERT(t, v->type == DISCO_H2_DOUBLE && v->u.d == want[i]);
    h2t_close(&r);
  }

  /* A negative zero keeps its sign; NaN and infinities take 'D'. */
  ASSERT_OK(t, disco_h2_writer_new(&w));
  ASSERT_OK(t, disco_h2_write_double(w, nz));
  ASSERT(t, h2t_same(w, "448000000000000000"));
  disco_h2_writer_reset(w);
  ASSERT_OK(t, disco_h2_write_double(w, 1.0 / 0.0));
  ASSERT(t, h2t_same(w, "447ff0000000000000"));
  disco_h2_writer_reset(w);
  ASSERT_OK(t, disco_h2_write_null(w));
  ASSERT_OK(t, disco_h2_write_bool(w, 1));
  ASSERT_OK(t, disco_h2_write_bool(w, 0));
  ASSERT(t, h2t_same(w, "4e5446"));
  disco_h2_writer_free(w);
}

/* ------------------------------------------------------------ strings */

void test_h2_strings(ctest_t *t) {
  disco_h2_writer_t *w;
  h2t_in_t in;
  disco_h2_value_t *v;
  char *big;
  size_t i;

  ASSERT_OK(t, disco_h2_writer_new(&w));
  /* Caucho's bytes: é€ is 2 units; U+1F600 is a surrogate pair written as
   * two 3-byte sequences, and counts 2. */
  ASSERT_OK(t, disco_h2_write_string(w, "", 0));
  ASSERT_OK(t, disco_h2_write_string(w, "hello", 5));
  ASSERT_OK(t, disco_h2_write_string(w, "\xc3\xa9\xe2\x82\xac", 5));
  ASSERT_OK(t, disco_h2_write_string(w,
                                     "a\xf0\x9f\x98\x80"
                                     "b",
                                     6));
  ASSERT(t, h2t_same(w, "000568656c6c6f02c3a9e282ac0461eda0bdedb88062"));

  ASSERT_OK(
      t, h2t_open(&in, "000568656c6c6f02c3a9e282ac0461eda0bdedb88062", NULL));
  ASSERT_OK(t, disco_h2_read(in.r, &v));
  ASSERT(t, h2t_str_is(v, ""));
  ASSERT_OK(t, disco_h2_read(in.r, &v));
  ASSERT(t, h2t_str_is(v, "hello"));
  ASSERT_OK(t, disco_h2_read(in.r, &v));
  ASSERT(t, h2t_str_is(v, "\xc3\xa9\xe2\x82\xac"));
  ASSERT_OK(t, disco_h2_read(in.r, &v));
  /* The pair comes back as proper 4-byte UTF-8. */
  ASSERT(t, h2t_str_is(v, "a\xf0\x9f\x98\x80"
                          "b"));
  ASSERT_EQ(t, disco_h2_read(in.r, &v), DISCO_EOF);
  h2t_close(&in);

  /* An unpaired surrogate stays in its 3-byte form, and a 4-byte
   * sequence from a non-Java writer is accepted as two units. */
  ASSERT_OK(t, h2t_read1(&in, "02eda0bd61", &v));
  ASSERT(t, h2t_str_is(v, "\xed\xa0\xbd"
                          "a"));
  h2t_close(&in);
  ASSERT_OK(t, h2t_read1(&in, "02f09f9880", &v));
  ASSERT(t, h2t_str_is(v, "\xf0\x9f\x98\x80"));
  h2t_close(&in);
  ASSERT_OK(t, h2t_read1(&in, "01edb880", &v));
  ASSERT(t, h2t_str_is(v, "\xed\xb8\x80"));
  h2t_close(&in);

  /* The 0x30 form (32 units) and the 'S' form (1024). */
  disco_h2_writer_reset(w);
  big = malloc(1024);
  ASSERT(t, big != NULL);
  memset(big, 'y', 1024);
  ASSERT_OK(t, disco_h2_write_string(w, big, 32));
  ASSERT_OK(t, disco_h2_write_string(w, big, 1023));
  ASSERT_OK(t, disco_h2_write_string(w, big, 1024));
  {
    size_t len;
    const unsigned char *d =
        (const unsigned char *)disco_h2_writer_data(w, &len);
    ASSERT_EQ(t, len, 2 + 32 + 2 + 1023 + 3 + 1024);
    ASSERT(t, d[0] == 0x30 && d[1] == 0x20);
    ASSERT(t, d[34] == 0x33 && d[35] == 0xff);
    ASSERT(t, d[1059] == 'S' && d[1060] == 0x04 && d[1061] == 0x00);
    ASSERT_OK(t, disco_h2_reader_new((const char *)d, len, NULL, &in.r));
    for (i = 0; i < 3; i++) {
      static const size_t lens[] = { 32, 1023, 1024 };
      ASSERT_OK(t, disco_h2_read(in.r, &v));
      ASSERT(t, v->type == DISCO_H2_STRING && v->u.bytes.len == lens[i] &&
                    memcmp(v->u.bytes.data, big, lens[i]) == 0 &&
                    v->u.bytes.data[lens[i]] == '\0');
    }
    disco_h2_reader_free(in.r);
  }
  free(big);

  /* Invalid UTF-8 is refused, and the writer keeps failing. */
  disco_h2_writer_reset(w);
  ASSERT_EQ(t, disco_h2_write_string(w, "\xc3", 1), DISCO_EINVAL);
  ASSERT_EQ(t, disco_h2_write_int(w, 1), DISCO_EINVAL);
  disco_h2_writer_reset(w);
  ASSERT_EQ(t, disco_h2_write_string(w, "\xc0\x80", 2), DISCO_EINVAL);
  disco_h2_writer_reset(w);
  ASSERT_EQ(t, disco_h2_write_string(w, "\xf4\x90\x80\x80", 4), DISCO_EINVAL);
  disco_h2_writer_free(w);

  /* Invalid UTF-8 in the input. */
  ASSERT_EQ(t, h2t_read1_err("01ff", NULL), DISCO_EPROTO);
  ASSERT_EQ(t, h2t_read1_err("01c341", NULL), DISCO_EPROTO);
  ASSERT_EQ(t, h2t_read1_err("01f09f9880", NULL), DISCO_EPROTO);
}

void test_h2_chunked_strings(ctest_t *t) {
  disco_h2_writer_t *w;
  disco_h2_reader_t *r;
  disco_h2_value_t *v;
  const unsigned char *d;
  size_t len;
  char *s = malloc(0x8000 + 16);
  ASSERT(t, s != NULL);

  ASSERT_OK(t, disco_h2_writer_new(&w));
  /* 0x8001 units: a full 'R' chunk, then a one-unit final chunk. */
  memset(s, 'a', 0x8001);
  ASSERT_OK(t, disco_h2_write_string(w, s, 0x8001));
  d = (const unsigned char *)disco_h2_writer_data(w, &len);
  ASSERT_EQ(t, len, 3 + 0x8000 + 1 + 1);
  ASSERT(t, d[0] == 'R' && d[1] == 0x80 && d[2] == 0x00);
  ASSERT(t, d[3 + 0x8000] == 0x01 && d[4 + 0x8000] == 'a');
  ASSERT_OK(t, disco_h2_reader_new((const char *)d, len, NULL, &r));
  ASSERT_OK(t, disco_h2_read(r, &v));
  ASSERT(t, v->type == DISCO_H2_STRING && v->u.bytes.len == 0x8001 &&
                memcmp(v->u.bytes.data, s, 0x8001) == 0);
  disco_h2_reader_free(r);

  /* 0x7fff units then a pair: the pair would straddle the boundary, so the
   * first chunk holds 0x7fff units (as Java's writer does). */
  disco_h2_writer_reset(w);
  memset(s, 'a', 0x7fff);
  memcpy(s + 0x7fff,
         "\xf0\x9f\x98\x80"
         "b",
         5);
  ASSERT_OK(t, disco_h2_write_string(w, s, 0x7fff + 5));
  d = (const unsigned char *)disco_h2_writer_data(w, &len);
  ASSERT_EQ(t, len, 3 + 0x7fff + 1 + 6 + 1);
  ASSERT(t, d[0] == 'R' && d[1] == 0x7f && d[2] == 0xff);
  ASSERT(t, d[3 + 0x7fff] == 0x03);
  ASSERT(t, memcmp(d + 4 + 0x7fff,
                   "\xed\xa0\xbd\xed\xb8\x80"
                   "b",
                   7) == 0);
  ASSERT_OK(t, disco_h2_reader_new((const char *)d, len, NULL, &r));
  ASSERT_OK(t, disco_h2_read(r, &v));
  ASSERT(t, v->type == DISCO_H2_STRING && v->u.bytes.len == 0x7fff + 5 &&
                memcmp(v->u.bytes.data, s, 0x7fff + 5) == 0);
  disco_h2_reader_free(r);
  disco_h2_writer_free(w);
  free(s);

  /* A pair split across chunks by another writer is still joined; chunks
   * may use every string form. */
  {
    h2t_in_t in;
    ASSERT_OK(t, h2t_read1(&in, "520001eda0bd01edb880", &v));
    ASSERT(t, h2t_str_is(v, "\xf0\x9f\x98\x80"));
    h2t_close(&in);
    ASSERT_OK(t, h2t_read1(&in, "5200016153000162", &v));
    ASSERT(t, h2t_str_is(v, "ab"));
    h2t_close(&in);
    /* A chunk must be followed by a string chunk. */
    ASSERT_EQ(t, h2t_read1_err("5200016191", NULL), DISCO_EPROTO);
    ASSERT_EQ(t, h2t_read1_err("5200016190", NULL), DISCO_EPROTO);
  }
}

void test_h2_binary(ctest_t *t) {
  disco_h2_writer_t *w;
  h2t_in_t in;
  disco_h2_value_t *v;
  disco_h2_reader_t *r;
  const unsigned char *d;
  size_t len;
  char *b = calloc(1, 0x8001);
  ASSERT(t, b != NULL);

  ASSERT_OK(t, disco_h2_writer_new(&w));
  ASSERT_OK(t, disco_h2_write_binary(w, "\x01\x02\x03", 3));
  ASSERT_OK(t, disco_h2_write_binary(w, b, 16));
  ASSERT(t, h2t_same(w, "23010203341000000000000000000000000000000000"));
  ASSERT_OK(t, h2t_read1(&in,
                         "2301020334100000000000000000000000000000000042"
                         "000100",
                         &v));
  ASSERT(t, v->type == DISCO_H2_BINARY && v->u.bytes.len == 3 &&
                memcmp(v->u.bytes.data, "\x01\x02\x03", 3) == 0);
  ASSERT_OK(t, disco_h2_read(in.r, &v));
  ASSERT(t, v->type == DISCO_H2_BINARY && v->u.bytes.len == 16);
  ASSERT_OK(t, disco_h2_read(in.r, &v));
  ASSERT(t, v->type == DISCO_H2_BINARY && v->u.bytes.len == 1 &&
                v->u.bytes.data[0] == 0);
  h2t_close(&in);

  /* 0x8001 bytes: an 'A' chunk and a one-byte final chunk. */
  disco_h2_writer_reset(w);
  b[0x8000] = 7;
  ASSERT_OK(t, disco_h2_write_binary(w, b, 0x8001));
  d = (const unsigned char *)disco_h2_writer_data(w, &len);
  ASSERT_EQ(t, len, 3 + 0x8000 + 2);
  ASSERT(t, d[0] == 'A' && d[1] == 0x80 && d[2] == 0 && d[0x8003] == 0x21);
  ASSERT_OK(t, disco_h2_reader_new((const char *)d, len, NULL, &r));
  ASSERT_OK(t, disco_h2_read(r, &v));
  ASSERT(t, v->type == DISCO_H2_BINARY && v->u.bytes.len == 0x8001 &&
                v->u.bytes.data[0x8000] == 7);
  disco_h2_reader_free(r);
  disco_h2_writer_free(w);
  free(b);
}

/* -------------------------------------------------------- containers */

static int h2t_int_is(const disco_h2_value_t *v, int32_t i) {
  return v != NULL && v->type == DISCO_H2_INT && v->u.i == i;
}

void test_h2_lists(ctest_t *t) {
  h2t_in_t in;
  disco_h2_value_t *v;

  /* Caucho: int[] as 0x73 typed short list, String[], ArrayList as 0x7a,
   * a 9-item ArrayList as 'X', a 9-item int[] as 'V', Object[]. */
  ASSERT_OK(t, h2t_read1(&in, "73045b696e74919293", &v));
  ASSERT(t, v->type == DISCO_H2_LIST && v->u.list.count == 3);
  ASSERT_STR_EQ(t, v->u.list.type, "[int");
  ASSERT(t, h2t_int_is(v->u.list.items[2], 3));
  h2t_close(&in);
  ASSERT_OK(t, h2t_read1(&in, "72075b737472696e6701610162", &v));
  ASSERT_STR_EQ(t, v->u.list.type, "[string");
  ASSERT(t, h2t_str_is(v->u.list.items[1], "b"));
  h2t_close(&in);
  ASSERT_OK(t, h2t_read1(&in, "7a910178", &v));
  ASSERT(t, v->type == DISCO_H2_LIST && v->u.list.type == NULL &&
                v->u.list.count == 2 && h2t_int_is(v->u.list.items[0], 1) &&
                h2t_str_is(v->u.list.items[1], "x"));
  h2t_close(&in);
  ASSERT_OK(t, h2t_read1(&in, "5899909192939495969798", &v));
  ASSERT(t, v->u.list.type == NULL && v->u.list.count == 9 &&
                h2t_int_is(v->u.list.items[8], 8));
  h2t_close(&in);
  ASSERT_OK(t, h2t_read1(&in, "56045b696e7499919293949596979899", &v));
  ASSERT(t, v->u.list.count == 9 && h2t_int_is(v->u.list.items[8], 9));
  ASSERT_STR_EQ(t, v->u.list.type, "[int");
  h2t_close(&in);
  /* Variable-length lists: 'U' typed and 'W' untyped, and empty ones. */
  ASSERT_OK(t, h2t_read1(&in, "55045b696e7491925a", &v));
  ASSERT(t, v->u.list.count == 2 && h2t_int_is(v->u.list.items[1], 2));
  ASSERT_STR_EQ(t, v->u.list.type, "[int");
  h2t_close(&in);
  ASSERT_OK(t, h2t_read1(&in, "57915a", &v));
  ASSERT(t, v->u.list.count == 1 && v->u.list.type == NULL);
  h2t_close(&in);
  ASSERT_OK(t, h2t_read1(&in, "575a78", &v));
  ASSERT(t, v->u.list.count == 0);
  ASSERT_OK(t, disco_h2_read(in.r, &v));
  ASSERT(t, v->type == DISCO_H2_LIST && v->u.list.count == 0);
  h2t_close(&in);
  /* A 'V' whose type is a reference to an earlier type. */
  ASSERT_OK(t, h2t_read1(&in, "710161915690929192", &v));
  ASSERT_OK(t, disco_h2_read(in.r, &v));
  ASSERT_STR_EQ(t, v->u.list.type, "a");
  ASSERT(t, v->u.list.count == 2 && h2t_int_is(v->u.list.items[1], 2));
  h2t_close(&in);
  /* A variable list with no end. */
  ASSERT_EQ(t, h2t_read1_err("579192", NULL), DISCO_EPROTO);
}

/* Caucho's bytes for the MetadataInfo graph; written twice in one stream,
 * the second is the back-reference 0x51 0x90. */
#define H2T_VEC_METADATA                                                       \
  "4330266f72672e6170616368652e647562626f2e6d657461646174612e4d6574"           \
  "6164617461496e666f9303617070087265766973696f6e087365727669636573"           \
  "600d64656d6f2d70726f76696465723020613636326664323231336138613439"           \
  "646336666634336134633261653762396548302d6f72672e6170616368652e64"           \
  "7562626f2e64656d6f2e44656d6f536572766963653a312e302e303a64756262"           \
  "6f4330326f72672e6170616368652e647562626f2e6d657461646174612e4d65"           \
  "746164617461496e666f2453657276696365496e666f97046e616d650567726f"           \
  "75700776657273696f6e0870726f746f636f6c04706f72740470617468067061"           \
  "72616d736130216f72672e6170616368652e647562626f2e64656d6f2e44656d"           \
  "6f536572766963654e05312e302e3005647562626fd4519030216f72672e6170"           \
  "616368652e647562626f2e64656d6f2e44656d6f536572766963654804736964"           \
  "650870726f7669646572076d6574686f64730873617948656c6c6f5a30316f72"           \
  "672e6170616368652e647562626f2e64656d6f2e4772656574696e6753657276"           \
  "6963653a312e302e303a647562626f6130256f72672e6170616368652e647562"           \
  "626f2e64656d6f2e4772656574696e67536572766963654e05312e302e300564"           \
  "7562626fd4519030256f72672e6170616368652e647562626f2e64656d6f2e47"           \
  "72656574696e67536572766963654804736964650870726f7669646572076d65"           \
  "74686f64730873617948656c6c6f5a5a"

static const char vec_metadata[] = H2T_VEC_METADATA;

static const char vec_metadata_twice[] = H2T_VEC_METADATA "5190";

static const char vec_map_TreeMap[] =
    "4d116a6176612e7574696c2e547265654d617001619101624e5a";

static const char vec_map_ConcurrentHashMap[] =
    "4d30266a6176612e7574696c2e636f6e63757272656e742e436f6e6375727265"
    "6e74486173684d6170016b01765a";

static const char vec_types_two_TreeMaps[] =
    "4d116a6176612e7574696c2e547265654d61700161915a4d905a";

static const char vec_multi_values[] =
    "05322e302e3230296f72672e6170616368652e647562626f2e6d657461646174"
    "612e4d657461646174615365727669636595485a";

void test_h2_maps(ctest_t *t) {
  h2t_in_t in;
  disco_h2_value_t *v;
  disco_h2_value_t *v2;

  ASSERT_OK(t, h2t_read1(&in, "480161915a", &v));
  ASSERT(t, v->type == DISCO_H2_MAP && v->u.map.type == NULL &&
                v->u.map.count == 1 && h2t_str_is(v->u.map.keys[0], "a") &&
                h2t_int_is(v->u.map.values[0], 1));
  h2t_close(&in);
  ASSERT_OK(t, h2t_read1(&in, vec_map_TreeMap, &v));
  ASSERT_STR_EQ(t, v->u.map.type, "java.util.TreeMap");
  ASSERT(t, v->u.map.count == 2 && v->u.map.values[1]->type == DISCO_H2_NULL);
  h2t_close(&in);
  ASSERT_OK(t, h2t_read1(&in, vec_map_ConcurrentHashMap, &v));
  ASSERT_STR_EQ(t, v->u.map.type, "java.util.concurrent.ConcurrentHashMap");
  ASSERT(t, h2t_str_is(v->u.map.values[0], "v"));
  h2t_close(&in);
  /* The second TreeMap names its type by reference (0x90). */
  ASSERT_OK(t, h2t_read1(&in, vec_types_two_TreeMaps, &v));
  ASSERT_OK(t, disco_h2_read(in.r, &v2));
  ASSERT_STR_EQ(t, v2->u.map.type, "java.util.TreeMap");
  ASSERT(t, v2->u.map.count == 0);
  h2t_close(&in);
  /* Non-string keys, and an unknown type reference. */
  ASSERT_OK(t, h2t_read1(&in, "48914e4e545a", &v));
  ASSERT(t, v->u.map.count == 2 && h2t_int_is(v->u.map.keys[0], 1) &&
                v->u.map.keys[1]->type == DISCO_H2_NULL);
  h2t_close(&in);
  ASSERT_EQ(t, h2t_read1_err("4d905a", NULL), DISCO_EPROTO);
  ASSERT_EQ(t, h2t_read1_err("480161", NULL), DISCO_EPROTO);
}

/* The MetadataInfo graph Caucho wrote for the Dubbo class names. */
static void h2t_check_metadata(ctest_t *t, const disco_h2_value_t *v) {
  const disco_h2_value_t *services;
  const disco_h2_value_t *si;
  ASSERT(t, v->type == DISCO_H2_OBJECT);
  ASSERT_STR_EQ(t, v->u.object.class_name,
                "org.apache.dubbo.metadata.MetadataInfo");
  ASSERT_EQ(t, v->u.object.count, 3);
  ASSERT_STR_EQ(t, v->u.object.field_names[0], "app");
  ASSERT_STR_EQ(t, v->u.object.field_names[2], "services");
  ASSERT(t, h2t_str_is(v->u.object.fields[0], "demo-provider"));
  ASSERT(t,
         h2t_str_is(v->u.object.fields[1], "a662fd2213a8a49dc6ff43a4c2ae7b9e"));
  services = v->u.object.fields[2];
  ASSERT(t, services->type == DISCO_H2_MAP && services->u.map.count == 2);
  ASSERT(t, h2t_str_is(services->u.map.keys[0],
                       "org.apache.dubbo.demo.DemoService:1.0.0:dubbo"));
  si = services->u.map.values[1];
  ASSERT(t, si->type == DISCO_H2_OBJECT);
  ASSERT_STR_EQ(t, si->u.object.class_name,
                "org.apache.dubbo.metadata.MetadataInfo$ServiceInfo");
  ASSERT_EQ(t, si->u.object.count, 7);
  ASSERT_STR_EQ(t, si->u.object.field_names[4], "port");
  ASSERT(t, h2t_int_is(si->u.object.fields[4], 20880));
  ASSERT(t, si->u.object.fields[1]->type == DISCO_H2_NULL);
  ASSERT(t, h2t_str_is(si->u.object.fields[0],
                       "org.apache.dubbo.demo.GreetingService"));
  ASSERT(t, si->u.object.fields[6]->type == DISCO_H2_MAP &&
                si->u.object.fields[6]->u.map.count == 2);
  /* Both services share one class definition. */
  ASSERT(t, services->u.map.values[0]->u.object.field_names ==
                si->u.object.field_names);
}

/* Writes the calls Java's serializer makes for the same graph. */
static int h2t_write_metadata(disco_h2_writer_t *w) {
  static const char *const mi[] = { "app", "revision", "services" };
  static const char *const si[] = { "name", "group", "version", "protocol",
                                    "port", "path",  "params" };
  static const char *const names[] = {
    "org.apache.dubbo.demo.DemoService", "org.apache.dubbo.demo.GreetingService"
  };
  char key[128];
  size_t i;
  int err = disco_h2_write_object_begin(
      w, "org.apache.dubbo.metadata.MetadataInfo", 3, mi);
  err = err ? err : disco_h2_write_string(w, "demo-provider", 13);
  err = err ? err
            : disco_h2_write_string(w, "a662fd2213a8a49dc6ff43a4c2ae7b9e", 32);
  err = err ? err : disco_h2_write_map_begin(w, NULL);
  for (i = 0; i < 2 && err == 0; i++) {
    snprintf(key, sizeof(key), "%s:1.0.0:dubbo", names[i]);
    err = disco_h2_write_string(w, key, strlen(key));
    err = err ? err
              : disco_h2_write_object_begin(
                    w, "org.apache.dubbo.metadata.MetadataInfo$ServiceInfo", 7,
                    si);
    err = err ? err : disco_h2_write_string(w, names[i], strlen(names[i]));
    err = err ? err : disco_h2_write_null(w);
    err = err ? err : disco_h2_write_string(w, "1.0.0", 5);
    err = err ? err : disco_h2_write_string(w, "dubbo", 5);
    err = err ? err : disco_h2_write_int(w, 20880);
    err = err ? err : disco_h2_write_string(w, names[i], strlen(names[i]));
    err = err ? err : disco_h2_write_map_begin(w, NULL);
    err = err ? err : disco_h2_write_string(w, "side", 4);
    err = err ? err : disco_h2_write_string(w, "provider", 8);
    err = err ? err : disco_h2_write_string(w, "methods", 7);
    err = err ? err : disco_h2_write_string(w, "sayHello", 8);
    err = err ? err : disco_h2_write_end(w);
  }
  return err ? err : disco_h2_write_end(w);
}

void test_h2_objects(ctest_t *t) {
  h2t_in_t in;
  disco_h2_value_t *v;
  disco_h2_value_t *v2;
  disco_h2_writer_t *w;
  static const char *const f1[] = { "a" };
  static const char *const f2[] = { "b" };

  ASSERT_OK(t, h2t_read1(&in, vec_metadata, &v));
  h2t_check_metadata(t, v);
  if (ctest_failed(t))
    return;
  ASSERT_EQ(t, disco_h2_read(in.r, &v2), DISCO_EOF);
  h2t_close(&in);

  /* Written twice in one stream, the second is a back-reference across
   * disco_h2_read calls. */
  ASSERT_OK(t, h2t_read1(&in, vec_metadata_twice, &v));
  ASSERT_OK(t, disco_h2_read(in.r, &v2));
  ASSERT(t, v == v2);
  h2t_close(&in);

  /* The writer makes Caucho's exact bytes, reusing the class definition;
   * write_value of the decoded graph does too. */
  ASSERT_OK(t, disco_h2_writer_new(&w));
  ASSERT_OK(t, h2t_write_metadata(w));
  ASSERT(t, h2t_same(w, vec_metadata));
  disco_h2_writer_reset(w);
  ASSERT_OK(t, h2t_read1(&in, vec_metadata, &v));
  ASSERT_OK(t, disco_h2_write_value(w, v));
  h2t_close(&in);
  ASSERT(t, h2t_same(w, vec_metadata));

  /* Same name, other fields: a second definition. Seventeen classes: the
   * 17th instance needs 'O' + index. */
  disco_h2_writer_reset(w);
  ASSERT_OK(t, disco_h2_write_object_begin(w, "K", 1, f1));
  ASSERT_OK(t, disco_h2_write_int(w, 1));
  ASSERT_OK(t, disco_h2_write_object_begin(w, "K", 1, f2));
  ASSERT_OK(t, disco_h2_write_int(w, 2));
  ASSERT_OK(t, disco_h2_write_object_begin(w, "K", 1, f1));
  ASSERT_OK(t, disco_h2_write_int(w, 3));
  ASSERT(t, h2t_same(w, "43014b91016160914301" /* C K 1 a, 0x60 1 */
                        "4b9101626192"         /* C K 1 b, 0x61 2 */
                        "6093"));
  {
    char name[8];
    size_t i;
    size_t len;
    const char *d;
    disco_h2_reader_t *r;
    for (i = 0; i < 16; i++) {
      snprintf(name, sizeof(name), "C%zu", i);
      ASSERT_OK(t, disco_h2_write_object_begin(w, name, 0, NULL));
    }
    d = disco_h2_writer_data(w, &len);
    ASSERT(t, (unsigned char)d[len - 2] == 'O' &&
                  (unsigned char)d[len - 1] == 0xa1);
    ASSERT_OK(t, disco_h2_reader_new(d, len, NULL, &r));
    for (i = 0; i < 19; i++)
      ASSERT_OK(t, disco_h2_read(r, &v));
    ASSERT_STR_EQ(t, v->u.object.class_name, "C15");
    ASSERT_EQ(t, v->u.object.count, 0);
    ASSERT_EQ(t, disco_h2_read(r, &v), DISCO_EOF);
    disco_h2_reader_free(r);
  }
  disco_h2_writer_free(w);

  /* Undefined class indexes, and a class definition with nothing after. */
  ASSERT_EQ(t, h2t_read1_err("60", NULL), DISCO_EPROTO);
  ASSERT_EQ(t, h2t_read1_err("4f91", NULL), DISCO_EPROTO);
  ASSERT_EQ(t, h2t_read1_err("43014b910161", NULL), DISCO_EPROTO);
  ASSERT_EQ(t, h2t_read1_err("43014b9061", NULL), DISCO_EPROTO);
}

void test_h2_refs_and_cycles(ctest_t *t) {
  h2t_in_t in;
  disco_h2_value_t *v;
  disco_h2_writer_t *w;

  /* Caucho: a list containing itself (0x79 0x51 0x90). */
  ASSERT_OK(t, h2t_read1(&in, "795190", &v));
  ASSERT(t, v->type == DISCO_H2_LIST && v->u.list.count == 1 &&
                v->u.list.items[0] == v);
  ASSERT_OK(t, disco_h2_writer_new(&w));
  ASSERT_EQ(t, disco_h2_write_value(w, v), DISCO_EINVAL);
  h2t_close(&in);

  /* A map listed twice: the second is 'Q' 1 (the list is ref 0). */
  ASSERT_OK(t, h2t_read1(&in, "7a480178915a5191", &v));
  ASSERT(t, v->u.list.count == 2 && v->u.list.items[0] == v->u.list.items[1]);
  ASSERT(t, v->u.list.items[0]->type == DISCO_H2_MAP);
  /* Shared (not cyclic) nodes are written again. */
  disco_h2_writer_reset(w);
  ASSERT_OK(t, disco_h2_write_value(w, v));
  ASSERT(t, h2t_same(w, "57480178915a480178915a5a"));
  h2t_close(&in);

  /* An object whose field refers to itself, through a map. */
  ASSERT_OK(t, h2t_read1(&in, "43014e9101736048017851905a", &v));
  ASSERT(t, v->type == DISCO_H2_OBJECT && v->u.object.count == 1);
  ASSERT(t, v->u.object.fields[0]->type == DISCO_H2_MAP &&
                v->u.object.fields[0]->u.map.values[0] == v);
  h2t_close(&in);

  /* References out of range, or negative. */
  ASSERT_EQ(t, h2t_read1_err("5190", NULL), DISCO_EPROTO);
  ASSERT_EQ(t, h2t_read1_err("575191", NULL), DISCO_EPROTO);
  ASSERT_EQ(t, h2t_read1_err("57518f", NULL), DISCO_EPROTO);
  disco_h2_writer_free(w);
}

void test_h2_multi_values(ctest_t *t) {
  h2t_in_t in;
  disco_h2_value_t *v;
  ASSERT_OK(t, h2t_read1(&in, vec_multi_values, &v));
  ASSERT(t, h2t_str_is(v, "2.0.2"));
  ASSERT_OK(t, disco_h2_read(in.r, &v));
  ASSERT(t, h2t_str_is(v, "org.apache.dubbo.metadata.MetadataService"));
  ASSERT_OK(t, disco_h2_read(in.r, &v));
  ASSERT(t, h2t_int_is(v, 5));
  ASSERT_OK(t, disco_h2_read(in.r, &v));
  ASSERT(t, v->type == DISCO_H2_MAP && v->u.map.count == 0);
  ASSERT_EQ(t, disco_h2_reader_pos(in.r), in.len);
  ASSERT_EQ(t, disco_h2_read(in.r, &v), DISCO_EOF);
  ASSERT_EQ(t, disco_h2_read(in.r, &v), DISCO_EOF);
  ASSERT(t, disco_h2_reader_error(in.r, NULL) == NULL);
  h2t_close(&in);
}

/* ------------------------------------------------------ hostile input */

void test_h2_truncated_everywhere(ctest_t *t) {
  const char *hex[3];
  size_t k;
  hex[0] = vec_metadata_twice;
  hex[1] = vec_types_two_TreeMaps;
  hex[2] = "5f00002fda4a000000d04b9284b8520001eda0bd01edb88042000100"
           "56045b696e7499919293949596979899";
  for (k = 0; k < 3; k++) {
    size_t len;
    size_t cut;
    size_t ends[16];
    size_t nends = 0;
    char *buf = h2t_unhex(hex[k], &len);
    disco_h2_reader_t *r;
    disco_h2_value_t *v;
    ASSERT(t, buf != NULL);
    /* Where each value ends: a cut there leaves whole values. */
    ASSERT_OK(t, disco_h2_reader_new(buf, len, NULL, &r));
    while (nends < 16 && disco_h2_read(r, &v) == 0)
      ends[nends++] = disco_h2_reader_pos(r);
    disco_h2_reader_free(r);
    ASSERT(t, nends >= 2 && ends[nends - 1] == len);
    for (cut = 1; cut < len; cut++) {
      int err;
      int boundary = 0;
      size_t e;
      for (e = 0; e < nends; e++)
        boundary |= ends[e] == cut;
      err = h2t_read_all_copy(buf, cut);
      if (err != (boundary ? 0 : DISCO_EPROTO))
        fprintf(stderr, "vector %zu cut at %zu: %s\n", k, cut,
                disco_err_name(err));
      ASSERT_EQ(t, err, boundary ? 0 : DISCO_EPROTO);
    }
    free(buf);
  }
}

void test_h2_garbage(ctest_t *t) {
  static const char *const bad[] = {
    "40", "45", "47", "50",   "5a",   "4f", "51",   "43",
    "d0", "49", "4c", "44",   "4a",   "4b", "5f",   "5e",
    "5d", "59", "53", "5300", "4142", "56", "5690", "7090"
  };
  h2t_in_t in;
  disco_h2_value_t *v;
  size_t i;
  size_t pos;
  uint32_t seed = 12345;
  char buf[64];

  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int err = h2t_read1(&in, bad[i], &v);
    if (err != DISCO_EPROTO)
      fprintf(stderr, "garbage %s: %s\n", bad[i], disco_err_name(err));
    ASSERT_EQ(t, err, DISCO_EPROTO);
    ASSERT(t, disco_h2_reader_error(in.r, &pos) != NULL);
    /* The error is sticky. */
    ASSERT_EQ(t, disco_h2_read(in.r, &v), DISCO_EPROTO);
    h2t_close(&in);
  }
  ASSERT_EQ(t, h2t_read1(&in, "9140", &v), 0);
  ASSERT_EQ(t, disco_h2_read(in.r, &v), DISCO_EPROTO);
  ASSERT_STR_EQ(t, disco_h2_reader_error(in.r, &pos), "unknown tag 0x40");
  ASSERT_EQ(t, pos, 1);
  h2t_close(&in);

  /* Random bytes: any result but a crash or an over-read. */
  for (i = 0; i < 20000; i++) {
    size_t n = i % sizeof(buf);
    size_t j;
    int err;
    for (j = 0; j < n; j++) {
      seed = seed * 1103515245u + 12345u;
      buf[j] = (char)(seed >> 16);
    }
    err = h2t_read_all_copy(buf, n);
    ASSERT(t, err == 0 || err == DISCO_EPROTO || err == DISCO_E2BIG);
  }
}

void test_h2_limits(ctest_t *t) {
  disco_h2_limits_t lim;
  h2t_in_t in;
  disco_h2_value_t *v;
  size_t pos;

  /* Lengths announcing 2 GiB: refused before any allocation. */
  ASSERT_EQ(t, h2t_read1_err("58497fffffff", NULL), DISCO_E2BIG);
  disco_h2_limits_init(&lim);
  lim.max_elements = (size_t)-1;
  lim.max_total = (size_t)-1;
  ASSERT_EQ(t, h2t_read1_err("58497fffffff", &lim), DISCO_EPROTO);
  ASSERT_EQ(t, h2t_read1_err("56015b497fffffff91", &lim), DISCO_EPROTO);
  ASSERT_EQ(t, h2t_read1_err("4301419e", &lim), DISCO_EPROTO);
  ASSERT_EQ(t, h2t_read1_err("43014149800000006161", NULL), DISCO_EPROTO);
  ASSERT_EQ(t, h2t_read1_err("53ffff61", NULL), DISCO_EPROTO);
  ASSERT_EQ(t, h2t_read1_err("42ffff00", NULL), DISCO_EPROTO);

  /* max_string counts decoded bytes. */
  disco_h2_limits_init(&lim);
  lim.max_string = 4;
  ASSERT_OK(t, h2t_open(&in, "04616263640561626364652403000000", &lim));
  ASSERT_OK(t, disco_h2_read(in.r, &v));
  ASSERT_EQ(t, disco_h2_read(in.r, &v), DISCO_E2BIG);
  ASSERT_STR_EQ(t, disco_h2_reader_error(in.r, &pos), "string over max_string");
  ASSERT_EQ(t, pos, 5);
  h2t_close(&in);
  ASSERT_EQ(t, h2t_read1_err("25000000000000", &lim), DISCO_E2BIG);

  /* max_elements: items, entries and references all count. */
  disco_h2_limits_init(&lim);
  lim.max_elements = 3;
  ASSERT_OK(t, h2t_open(&in, "7b909090", &lim));
  ASSERT_OK(t, disco_h2_read(in.r, &v));
  ASSERT_EQ(t, disco_h2_read(in.r, &v), DISCO_EOF);
  h2t_close(&in);
  ASSERT_EQ(t, h2t_read1_err("7c90909090", &lim), DISCO_E2BIG);
  ASSERT_OK(t, h2t_open(&in, "7a909051905190", &lim));
  ASSERT_OK(t, disco_h2_read(in.r, &v));
  ASSERT_OK(t, disco_h2_read(in.r, &v));
  ASSERT_EQ(t, disco_h2_read(in.r, &v), DISCO_E2BIG);
  h2t_close(&in);

  /* max_total bounds the arena. */
  disco_h2_limits_init(&lim);
  lim.max_total = 1024;
  {
    disco_h2_writer_t *w;
    size_t len;
    const char *d;
    int i;
    ASSERT_OK(t, disco_h2_writer_new(&w));
    ASSERT_OK(t, disco_h2_write_list_begin(w, NULL));
    for (i = 0; i < 200; i++)
      ASSERT_OK(t, disco_h2_write_int(w, i));
    ASSERT_OK(t, disco_h2_write_end(w));
    d = disco_h2_writer_data(w, &len);
    ASSERT_EQ(t, h2t_read_all(d, len, &lim), DISCO_E2BIG);
    ASSERT_EQ(t, h2t_read_all(d, len, NULL), 0);
    disco_h2_writer_free(w);
  }
}

void test_h2_depth_bomb(ctest_t *t) {
  size_t n = 1000000;
  char *bomb = malloc(n);
  disco_h2_limits_t lim;
  size_t i;
  ASSERT(t, bomb != NULL);
  memset(bomb, 0x57, n);
  ASSERT_EQ(t, h2t_read_all(bomb, n, NULL), DISCO_E2BIG);
  /* Maps, objects and typed lists nest too. */
  memset(bomb, 'H', n);
  ASSERT_EQ(t, h2t_read_all(bomb, n, NULL), DISCO_E2BIG);
  disco_h2_limits_init(&lim);
  lim.max_depth = 3;
  ASSERT_EQ(t, h2t_read_all("\x57\x57\x57\x5a\x5a\x5a", 6, &lim), 0);
  ASSERT_EQ(t, h2t_read_all("\x57\x57\x57\x57\x5a\x5a\x5a\x5a", 8, &lim),
            DISCO_E2BIG);
  for (i = 0; i + 1 < n; i += 2) {
    bomb[i] = 0x79; /* a one-item list holding the next */
    bomb[i + 1] = 0x79;
  }
  ASSERT_EQ(t, h2t_read_all(bomb, n, NULL), DISCO_E2BIG);
  free(bomb);
}

/* ------------------------------------------------------- round trips */

/* A list of one of each kind: scalars, a string outside the BMP, binary,
 * typed maps (one holding an empty list) and an object; the list is ended. */
static int h2t_write_sample(disco_h2_writer_t *w) {
  static const char *const fields[] = { "x", "y" };
  int err = disco_h2_write_list_begin(w, "[object");
  err = err ? err : disco_h2_write_int(w, INT32_MIN);
  err = err ? err : disco_h2_write_long(w, INT64_MAX);
  err = err ? err : disco_h2_write_double(w, 0.1);
  err = err ? err : disco_h2_write_date(w, -1);
  err = err ? err : disco_h2_write_string(w, "\xe4\xb8\xad\xf0\x9f\x98\x80", 7);
  err = err ? err : disco_h2_write_binary(w, "\0\1", 2);
  err = err ? err : disco_h2_write_map_begin(w, "java.util.TreeMap");
  err = err ? err : disco_h2_write_string(w, "k", 1);
  err = err ? err : disco_h2_write_list_begin(w, NULL);
  err = err ? err : disco_h2_write_end(w);
  err = err ? err : disco_h2_write_end(w);
  err = err ? err : disco_h2_write_map_begin(w, "java.util.TreeMap");
  err = err ? err : disco_h2_write_end(w);
  err = err ? err : disco_h2_write_object_begin(w, "P", 2, fields);
  err = err ? err : disco_h2_write_bool(w, 1);
  err = err ? err : disco_h2_write_null(w);
  return err ? err : disco_h2_write_end(w);
}

void test_h2_roundtrip(ctest_t *t) {
  static const char *const fields[] = { "x", "y" };
  disco_h2_writer_t *w;
  disco_h2_writer_t *w2;
  disco_h2_reader_t *r;
  disco_h2_value_t *v;
  const char *d;
  const char *d2;
  size_t len;
  size_t len2;
  int i;

  ASSERT_OK(t, disco_h2_writer_new(&w));
  ASSERT_OK(t, disco_h2_writer_new(&w2));
  ASSERT_OK(t, h2t_write_sample(w));
  ASSERT_EQ(t, disco_h2_write_end(w), DISCO_EINVAL);
  disco_h2_writer_reset(w);

  /* Again after the reset (which forgot types and classes). */
  ASSERT_OK(t, h2t_write_sample(w));
  for (i = 0; i < 3; i++) {
    ASSERT_OK(t, disco_h2_write_object_begin(w, "P", 2, fields));
    ASSERT_OK(t, disco_h2_write_int(w, 2 * i));
    ASSERT_OK(t, disco_h2_write_int(w, 2 * i + 1));
  }

  d = disco_h2_writer_data(w, &len);
  ASSERT_OK(t, disco_h2_reader_new(d, len, NULL, &r));
  ASSERT_OK(t, disco_h2_read(r, &v));
  ASSERT(t, v->type == DISCO_H2_LIST && v->u.list.count == 9);
  ASSERT_STR_EQ(t, v->u.list.type, "[object");
  ASSERT(t, v->u.list.items[0]->u.i == INT32_MIN);
  ASSERT(t, v->u.list.items[1]->u.l == INT64_MAX);
  ASSERT(t, v->u.list.items[2]->u.d == 0.1);
  ASSERT(t, v->u.list.items[3]->type == DISCO_H2_DATE &&
                v->u.list.items[3]->u.l == -1);
  ASSERT(t, h2t_str_is(v->u.list.items[4], "\xe4\xb8\xad\xf0\x9f\x98\x80"));
  ASSERT(t, v->u.list.items[5]->u.bytes.len == 2);
  ASSERT_STR_EQ(t, v->u.list.items[7]->u.map.type, "java.util.TreeMap");
  ASSERT_STR_EQ(t, v->u.list.items[8]->u.object.class_name, "P");
  ASSERT_OK(t, disco_h2_write_value(w2, v));
  for (i = 0; i < 3; i++) {
    ASSERT_OK(t, disco_h2_read(r, &v));
    ASSERT(t, v->type == DISCO_H2_OBJECT && v->u.object.count == 2 &&
                  h2t_int_is(v->u.object.fields[1], 2 * i + 1));
    ASSERT_OK(t, disco_h2_write_value(w2, v));
  }
  ASSERT_EQ(t, disco_h2_read(r, &v), DISCO_EOF);
  /* The decoded values written again give the same bytes. */
  d2 = disco_h2_writer_data(w2, &len2);
  ASSERT_EQ(t, len2, len);
  ASSERT(t, memcmp(d, d2, len) == 0);
  disco_h2_reader_free(r);
  disco_h2_writer_free(w);
  disco_h2_writer_free(w2);
}
