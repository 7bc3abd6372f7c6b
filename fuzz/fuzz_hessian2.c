/*
 * libFuzzer entry for the Hessian 2.0 reader and writer: reads every value
 * of the input under small limits; each value that is a tree (no node
 * reached twice, so no cycle and no exponential re-expansion) is written
 * back with disco_h2_write_value and the result must read back, in a fresh
 * reader, as one value per original value.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disco.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* Counts the container visits of v; stops past `max`. A DAG or a cycle
 * visits some container more than once, which the caller detects by
 * comparing with the reader's own bound. */
static size_t fuzz_visits(const disco_h2_value_t *v, size_t depth, size_t max,
                          size_t *n) {
  size_t i;
  if (*n > max || depth > 80)
    return *n = max + 1;
  (*n)++;
  switch (v->type) {
    case DISCO_H2_LIST:
      for (i = 0; i < v->u.list.count; i++)
        fuzz_visits(v->u.list.items[i], depth + 1, max, n);
      break;
    case DISCO_H2_MAP:
      for (i = 0; i < v->u.map.count; i++) {
        fuzz_visits(v->u.map.keys[i], depth + 1, max, n);
        fuzz_visits(v->u.map.values[i], depth + 1, max, n);
      }
      break;
    case DISCO_H2_OBJECT:
      for (i = 0; i < v->u.object.count; i++)
        fuzz_visits(v->u.object.fields[i], depth + 1, max, n);
      break;
    default:
      break;
  }
  return *n;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  disco_h2_limits_t limits;
  disco_h2_reader_t *r;
  disco_h2_writer_t *w;
  disco_h2_value_t *v;
  size_t values = 0;
  int err;
  int roundtrip = 1;

  disco_h2_limits_init(&limits);
  limits.max_depth = 32;
  limits.max_elements = 4096;
  limits.max_string = 65536;
  limits.max_total = 1 << 20;
  if (disco_h2_reader_new((const char *)data, size, &limits, &r) != 0)
    return 0;
  if (disco_h2_writer_new(&w) != 0) {
    disco_h2_reader_free(r);
    return 0;
  }
  while ((err = disco_h2_read(r, &v)) == 0) {
    size_t n = 0;
    values++;
    /* A tree read from `size` bytes has at most `size` nodes. */
    if (fuzz_visits(v, 0, size, &n) > size)
      roundtrip = 0;
    if (roundtrip && disco_h2_write_value(w, v) != 0)
      roundtrip = 0;
  }
  if (err != DISCO_EOF && err != DISCO_EPROTO && err != DISCO_E2BIG &&
      err != DISCO_ENOMEM)
    abort();
  if (err != DISCO_EOF)
    (void)disco_h2_reader_error(r, NULL);
  if (err == DISCO_EOF && roundtrip) {
    size_t len;
    const char *out = disco_h2_writer_data(w, &len);
    disco_h2_reader_t *r2;
    size_t again = 0;
    if (disco_h2_reader_new(out, len, NULL, &r2) == 0) {
      while ((err = disco_h2_read(r2, &v)) == 0)
        again++;
      /* What the writer made from valid values must read back whole. */
      if (err != DISCO_EOF || again != values)
        abort();
      disco_h2_reader_free(r2);
    }
  }
  disco_h2_writer_free(w);
  disco_h2_reader_free(r);
  return 0;
}
