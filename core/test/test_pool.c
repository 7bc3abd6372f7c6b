/*
 * The record pool: zeroed records, reuse of freed ones, and distinct live
 * records across chunks.
 */
#include <stdlib.h>

#include "ctest.h"
#include "internal.h"

typedef struct {
  char bytes[40];
} test_pool_record_t;

static disco_pool_t test_pool = DISCO_POOL_INIT(sizeof(test_pool_record_t));

void test_pool_records(ctest_t *t) {
  enum { N = 5000 }; /* more than one 64 KiB chunk */
  test_pool_record_t **live;
  test_pool_record_t *again;
  size_t i;
  size_t j;

  live = calloc(N, sizeof(*live));
  ASSERT(t, live != NULL);
  for (i = 0; i < N; i++) {
    live[i] = disco_pool_alloc(&test_pool);
    ASSERT(t, live[i] != NULL);
    for (j = 0; j < sizeof(live[i]->bytes); j++)
      ASSERT_EQ(t, live[i]->bytes[j], 0);
    memset(live[i]->bytes, (int)(i & 0x7f) + 1, sizeof(live[i]->bytes));
  }
  /* No record overlaps another: each still holds its own pattern. */
  for (i = 0; i < N; i++)
    ASSERT_EQ(t, live[i]->bytes[sizeof(live[i]->bytes) - 1],
              (char)((i & 0x7f) + 1));
  /* A freed record comes back zeroed. */
  disco_pool_free(&test_pool, live[7]);
  again = disco_pool_alloc(&test_pool);
  ASSERT(t, again != NULL);
  for (j = 0; j < sizeof(again->bytes); j++)
    ASSERT_EQ(t, again->bytes[j], 0);
  live[7] = again;
  for (i = 0; i < N; i++)
    disco_pool_free(&test_pool, live[i]);
  disco_pool_free(&test_pool, NULL);
  free(live);
}
