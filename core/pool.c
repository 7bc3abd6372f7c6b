/*
 * Fixed-size records that live long, kept apart from short-lived memory.
 *
 * A ZooKeeper read that sets a watch leaves two small records behind (the
 * watch, and its owner's context) among half a kilobyte of request buffers
 * that are freed a moment later. Reading 100,000 children at once thus
 * leaves 100,000 holes the C heap can neither give back nor fill with
 * anything but more small blocks. Taking the long-lived records from
 * chunks of their own leaves the short-lived memory in one piece, which
 * malloc_trim returns. Records go back to a free list, chunks are kept
 * (reachable from the pool) for the next burst.
 *
 * Under AddressSanitizer every record is a plain malloc, so use after free
 * stays detectable.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define DISCO__POOL_PLAIN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DISCO__POOL_PLAIN 1
#endif
#endif

enum { DISCO__POOL_CHUNK = 64 * 1024 };

typedef struct disco__pool_chunk_s {
  struct disco__pool_chunk_s *next;
  size_t used;
} disco__pool_chunk_t;

/* Chunk headers round up so that records stay aligned for any type. */
#define DISCO__POOL_HEADER ((sizeof(disco__pool_chunk_t) + 15) & ~(size_t)15)

void *disco_pool_alloc(disco_pool_t *p) {
#ifdef DISCO__POOL_PLAIN
  return calloc(1, p->size);
#else
  size_t rsize;
  void *r;

  rsize = (p->size + 15) & ~(size_t)15;
  pthread_mutex_lock(&p->mutex);
  r = p->free_list;
  if (r != NULL) {
    memcpy(&p->free_list, r, sizeof(void *));
  } else {
    disco__pool_chunk_t *c = (disco__pool_chunk_t *)p->chunks;
    if (c == NULL || DISCO__POOL_CHUNK - c->used < rsize) {
      c = malloc(DISCO__POOL_CHUNK);
      if (c != NULL) {
        c->next = p->chunks;
        c->used = DISCO__POOL_HEADER;
        p->chunks = c;
      }
    }
    if (c != NULL) {
      r = (char *)c + c->used;
      c->used += rsize;
    }
  }
  pthread_mutex_unlock(&p->mutex);
  if (r != NULL)
    memset(r, 0, p->size);
  return r;
#endif
}

void disco_pool_free(disco_pool_t *p, void *r) {
  if (r == NULL)
    return;
#ifdef DISCO__POOL_PLAIN
  (void)p;
  free(r);
#else
  pthread_mutex_lock(&p->mutex);
  memcpy(r, &p->free_list, sizeof(void *));
  p->free_list = r;
  pthread_mutex_unlock(&p->mutex);
#endif
}
