/*
 * The revision cache: (app, revision) -> MetadataInfo bytes, LRU-bounded,
 * with one fetch in flight per key, self-driven retries of failed fetches
 * and an optional file that survives restarts. The policy is described
 * with the API in disco.h.
 *
 * Layout: a chained hash table of entries; READY entries are also on the
 * LRU list (oldest first), FAILED ones on the failed list, which one retry
 * timer serves (armed for the earliest due retry). A second timer debounces
 * writes of the file. Both are plain libuv timers inside the cache, closed
 * with it.
 *
 * Re-entrancy: every callback may call back into the cache. Waiters are
 * taken off their entry before any is called and get the caller's pointers
 * (never an entry's, which a callback may free); a closing cache refuses
 * every change, so close can walk the table while it cancels waiters; and
 * the memory stays until the timers' close callbacks ran.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "internal.h"

#define DISCO__RC_DEFAULT_MAX_ENTRIES 1000
#define DISCO__RC_DEFAULT_MAX_BYTES (64 * 1024 * 1024)
#define DISCO__RC_INITIAL_BUCKETS 64

/* The file: magic, version, count, payload length, SHA-256 of the payload.
 * Each record has a 16-byte head: app_len, rev_len (u32), value_len
 * (u64). */
#define DISCO__RC_MAGIC "DISCORC\0"
#define DISCO__RC_VERSION 1
#define DISCO__RC_HEADER_LEN 56
#define DISCO__RC_RECORD_HEAD 16
#define DISCO__RC_SHA256_LEN 32
#define DISCO__RC_NTIMERS 3 /* retry, persist, defer */

enum {
  DISCO__RC_NEW = 0, /* just created by put/resolve, in no count yet */
  DISCO__RC_FETCHING = 1,
  DISCO__RC_READY = 2,
  DISCO__RC_FAILED = 3
};

typedef struct disco__rc_waiter_s {
  struct disco__list link;
  disco_revcache_want_cb cb;
  void *arg;
} disco__rc_waiter_t;

/* A want whose fetch was rejected inside the fetch callback: completed
 * with that error on the next loop iteration, since want() already
 * returned "pending". */
typedef struct {
  struct disco__list link;
  disco_revcache_want_cb cb;
  void *arg;
  int status;
  size_t app_len;
  const char *rev;     /* points into text */
  const char *message; /* points into text, or NULL */
  char text[];         /* app, NUL, revision, NUL[, message, NUL] */
} disco__rc_deferred_t;

typedef struct disco__rc_entry_s disco__rc_entry_t;

struct disco__rc_entry_s {
  disco__rc_entry_t *hnext; /* the hash chain */
  /* On the LRU list when READY, on the failed list when FAILED. */
  struct disco__list link;
  struct disco__list waiters;
  uint32_t hash;
  int state;
  unsigned attempts;  /* failed fetches in a row */
  int retry_unwanted; /* the fetch in flight is a retry nobody waited for */
  int last_err;
  uint64_t due; /* loop time of the next retry, when FAILED */
  char *bytes;  /* READY: the value (malloc'ed, never NULL) */
  size_t len;
  char *message; /* FAILED: the reject message, or NULL */
  size_t app_len;
  const char *rev; /* points into key */
  size_t rev_len;
  char key[]; /* app, NUL, revision, NUL */
};

struct disco_revcache_s {
  disco__handle_t base;
  disco_loop_t *loop;
  disco_revcache_options_t opts;
  char *persist_path; /* owned copies */
  char *tmp_path;
  disco_revcache_fetch_cb fetch;
  disco_revcache_evict_cb evict;
  disco_handle_close_cb close_cb;
  void *data;
  disco__rc_entry_t **buckets;
  size_t nbuckets; /* a power of two */
  size_t count;    /* entries in the table, any state */
  struct disco__list lru;
  struct disco__list failed;
  struct disco__list deferred;
  uv_timer_t retry_timer;
  uv_timer_t persist_timer;
  uv_timer_t defer_timer;
  int timers_open;
  uint64_t rng;
  int closing;
  int dirty;   /* the READY set changed since the file was written */
  int loading; /* inserting the file's entries: no callback, not dirty */
  uint64_t hits, misses, fetches, failures, evictions;
  uint64_t n_ready, n_fetching, n_failed, bytes;
};

/* ----------------------------------------------------------- helpers */

const char *
disco_revcache_evict_reason_name(disco_revcache_evict_reason_t reason) {
  switch (reason) {
    case DISCO_REVCACHE_EVICT_ENTRIES:
      return "entries";
    case DISCO_REVCACHE_EVICT_BYTES:
      return "bytes";
    default:
      return "unknown";
  }
}

void disco_revcache_options_init(disco_revcache_options_t *opts) {
  memset(opts, 0, sizeof(*opts));
  opts->max_entries = DISCO__RC_DEFAULT_MAX_ENTRIES;
  opts->max_bytes = DISCO__RC_DEFAULT_MAX_BYTES;
  opts->fast_retries = 3;
  opts->fast_retry_ms = 1000;
  opts->slow_retry_ms = 10000;
  opts->jitter = 0.2;
  opts->persist_path = NULL;
  opts->persist_delay_ms = 1000;
}

/* Checks a key; fills the lengths. */
static int disco__rc_check_key(const char *app, const char *rev,
                               size_t *app_len, size_t *rev_len) {
  if (app == NULL || rev == NULL)
    return DISCO_EINVAL;
  *app_len = strnlen(app, DISCO_REVCACHE_MAX_APP + 1);
  *rev_len = strnlen(rev, DISCO_REVCACHE_MAX_REVISION + 1);
  if (*app_len == 0 || *app_len > DISCO_REVCACHE_MAX_APP || *rev_len == 0 ||
      *rev_len > DISCO_REVCACHE_MAX_REVISION)
    return DISCO_EINVAL;
  return 0;
}

/* FNV-1a over app, a NUL, then the revision. */
static uint32_t disco__rc_hash(const char *app, size_t app_len, const char *rev,
                               size_t rev_len) {
  uint32_t h = 2166136261u;
  size_t i;

  for (i = 0; i < app_len; i++)
    h = (h ^ (unsigned char)app[i]) * 16777619u;
  h = h * 16777619u; /* the separator (a NUL: the xor is a no-op) */
  for (i = 0; i < rev_len; i++)
    h = (h ^ (unsigned char)rev[i]) * 16777619u;
  return h;
}

static const char *disco__rc_app(const disco__rc_entry_t *e) {
  return e->key;
}

static disco__rc_entry_t *disco__rc_find(const disco_revcache_t *cache,
                                         const char *app, size_t app_len,
                                         const char *rev, size_t rev_len,
                                         uint32_t hash) {
  disco__rc_entry_t *e;

  for (e = cache->buckets[hash & (cache->nbuckets - 1)]; e != NULL;
       e = e->hnext) {
    if (e->hash == hash && e->app_len == app_len && e->rev_len == rev_len &&
        memcmp(e->key, app, app_len) == 0 && memcmp(e->rev, rev, rev_len) == 0)
      return e;
  }
  return NULL;
}

/* Doubles the table; on no memory the chains just grow longer. */
static void disco__rc_grow(disco_revcache_t *cache) {
  disco__rc_entry_t **buckets;
  disco__rc_entry_t *e;
  disco__rc_entry_t *next;
  size_t n;
  size_t i;

  n = cache->nbuckets * 2;
  buckets = calloc(n, sizeof(*buckets));
  if (buckets == NULL)
    return;
  for (i = 0; i < cache->nbuckets; i++) {
    for (e = cache->buckets[i]; e != NULL; e = next) {
      next = e->hnext;
      e->hnext = buckets[e->hash & (n - 1)];
      buckets[e->hash & (n - 1)] = e;
    }
  }
  free(cache->buckets);
  cache->buckets = buckets;
  cache->nbuckets = n;
}

/* A new entry in the NEW state, in the table; NULL on no memory. */
static disco__rc_entry_t *disco__rc_insert(disco_revcache_t *cache,
                                           const char *app, size_t app_len,
                                           const char *rev, size_t rev_len,
                                           uint32_t hash) {
  disco__rc_entry_t *e;
  size_t slot;

  e = calloc(1, sizeof(*e) + app_len + rev_len + 2);
  if (e == NULL)
    return NULL;
  memcpy(e->key, app, app_len);
  e->key[app_len] = '\0';
  memcpy(e->key + app_len + 1, rev, rev_len);
  e->key[app_len + 1 + rev_len] = '\0';
  e->app_len = app_len;
  e->rev = e->key + app_len + 1;
  e->rev_len = rev_len;
  e->hash = hash;
  e->state = DISCO__RC_NEW;
  disco__list_init(&e->link);
  disco__list_init(&e->waiters);
  if (cache->count >= cache->nbuckets)
    disco__rc_grow(cache);
  slot = hash & (cache->nbuckets - 1);
  e->hnext = cache->buckets[slot];
  cache->buckets[slot] = e;
  cache->count++;
  return e;
}

/* Leaves the current state's count and list (READY's bytes stay). */
static void disco__rc_leave_state(disco_revcache_t *cache,
                                  disco__rc_entry_t *e) {
  disco__list_remove(&e->link);
  if (e->state == DISCO__RC_READY)
    cache->n_ready--;
  else if (e->state == DISCO__RC_FETCHING)
    cache->n_fetching--;
  else if (e->state == DISCO__RC_FAILED)
    cache->n_failed--;
  e->state = DISCO__RC_NEW;
}

/* Takes `e` out of the table and of its state's count and list; the caller
 * frees it. It must have no waiters. */
static void disco__rc_unlink(disco_revcache_t *cache, disco__rc_entry_t *e) {
  disco__rc_entry_t **p;

  for (p = &cache->buckets[e->hash & (cache->nbuckets - 1)]; *p != NULL;
       p = &(*p)->hnext) {
    if (*p == e) {
      *p = e->hnext;
      break;
    }
  }
  cache->count--;
  if (e->state == DISCO__RC_READY)
    cache->bytes -= e->len;
  disco__rc_leave_state(cache, e);
}

static void disco__rc_free_entry(disco__rc_entry_t *e) {
  free(e->bytes);
  free(e->message);
  free(e);
}

/* Moves every node of the list `from` to the empty list `to`, in order;
 * `from` is left empty. */
static void disco__rc_list_move(struct disco__list *from,
                                struct disco__list *to) {
  disco__list_init(to);
  if (from->next == from)
    return;
  to->next = from->next;
  to->prev = from->prev;
  to->next->prev = to;
  to->prev->next = to;
  disco__list_init(from);
}

/* Moves `e`'s waiters to `head`. */
static void disco__rc_take_waiters(disco__rc_entry_t *e,
                                   struct disco__list *head) {
  disco__rc_list_move(&e->waiters, head);
}

/* Completes and frees every waiter on `head`, once each. */
static void disco__rc_complete(disco_revcache_t *cache,
                               struct disco__list *head, const char *app,
                               const char *rev, int status, const char *message,
                               const char *bytes, size_t len) {
  disco__rc_waiter_t *w;

  while (head->next != head) {
    w = disco__container_of(head->next, disco__rc_waiter_t, link);
    disco__list_remove(&w->link);
    w->cb(cache, app, rev, status, message, bytes, len, w->arg);
    free(w);
  }
}

/* xorshift64*, per cache: jitter needs no quality, only no globals. */
static double disco__rc_random(disco_revcache_t *cache) {
  uint64_t x = cache->rng;

  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  cache->rng = x;
  return (double)((x * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

/* The delay before the retry that follows the `attempts`-th failure. */
static uint64_t disco__rc_retry_delay(disco_revcache_t *cache,
                                      unsigned attempts) {
  double delay;

  delay = (double)(attempts <= cache->opts.fast_retries
                       ? cache->opts.fast_retry_ms
                       : cache->opts.slow_retry_ms);
  if (cache->opts.jitter > 0)
    delay *= 1.0 + cache->opts.jitter * (2.0 * disco__rc_random(cache) - 1.0);
  return delay < 1.0 ? 1 : (uint64_t)delay;
}

/* ------------------------------------------------------------ timers */

static void disco__rc_retry_cb(uv_timer_t *timer);
static void disco__rc_persist_cb(uv_timer_t *timer);

/* Completes and frees every deferred want on `head`; `status` 0 keeps the
 * error each one recorded. */
static void disco__rc_complete_deferred(disco_revcache_t *cache,
                                        struct disco__list *head, int status) {
  disco__rc_deferred_t *d;

  while (head->next != head) {
    d = disco__container_of(head->next, disco__rc_deferred_t, link);
    disco__list_remove(&d->link);
    d->cb(cache, d->text, d->rev, status != 0 ? status : d->status,
          status != 0 ? NULL : d->message, NULL, 0, d->arg);
    free(d);
  }
}

static void disco__rc_defer_cb(uv_timer_t *timer) {
  disco_revcache_t *cache;
  struct disco__list head;

  cache = disco__container_of(timer, disco_revcache_t, defer_timer);
  /* Taken off first: a callback's own wants defer to the next round. */
  disco__rc_list_move(&cache->deferred, &head);
  disco__rc_complete_deferred(cache, &head, 0);
}

/* Queues the completion of a want with the error of `e`'s synchronous
 * failure. DISCO_ENOMEM when it cannot (the caller returns the error). */
static int disco__rc_defer(disco_revcache_t *cache, disco__rc_entry_t *e,
                           disco_revcache_want_cb cb, void *arg) {
  disco__rc_deferred_t *d;
  size_t key_len;
  size_t msg_len;

  key_len = e->app_len + e->rev_len + 2;
  msg_len = e->message != NULL ? strlen(e->message) + 1 : 0;
  d = malloc(sizeof(*d) + key_len + msg_len);
  if (d == NULL)
    return DISCO_ENOMEM;
  d->cb = cb;
  d->arg = arg;
  d->status = e->last_err;
  d->app_len = e->app_len;
  memcpy(d->text, e->key, key_len);
  d->rev = d->text + e->app_len + 1;
  d->message = NULL;
  if (msg_len > 0) {
    memcpy(d->text + key_len, e->message, msg_len);
    d->message = d->text + key_len;
  }
  disco__list_insert_tail(&cache->deferred, &d->link);
  uv_timer_start(&cache->defer_timer, disco__rc_defer_cb, 0, 0);
  return 0;
}

/* Arms the retry timer for the earliest due retry, or stops it. */
static void disco__rc_arm_retry(disco_revcache_t *cache) {
  struct disco__list *node;
  disco__rc_entry_t *e;
  uint64_t now;
  uint64_t min;
  int any;

  if (cache->closing)
    return;
  any = 0;
  min = 0;
  for (node = cache->failed.next; node != &cache->failed; node = node->next) {
    e = disco__container_of(node, disco__rc_entry_t, link);
    if (!any || e->due < min)
      min = e->due;
    any = 1;
  }
  if (!any) {
    uv_timer_stop(&cache->retry_timer);
    return;
  }
  now = uv_now(&cache->loop->uv);
  uv_timer_start(&cache->retry_timer, disco__rc_retry_cb,
                 min > now ? min - now : 0, 0);
}

static void disco__rc_mark_dirty(disco_revcache_t *cache) {
  if (cache->loading)
    return;
  cache->dirty = 1;
  /* Not re-armed by later changes: a busy cache is still written once per
   * delay rather than never. */
  if (cache->persist_path != NULL && !cache->closing &&
      !uv_is_active((uv_handle_t *)&cache->persist_timer))
    uv_timer_start(&cache->persist_timer, disco__rc_persist_cb,
                   cache->opts.persist_delay_ms, 0);
}

/* Calls the fetch callback for `e`, which is FETCHING. The key is copied
 * first: the owner may resolve, and something else evict, `e` before the
 * callback returns. */
static void disco__rc_issue_fetch(disco_revcache_t *cache,
                                  disco__rc_entry_t *e) {
  char key[DISCO_REVCACHE_MAX_APP + DISCO_REVCACHE_MAX_REVISION + 2];

  memcpy(key, e->key, e->app_len + e->rev_len + 2);
  cache->fetches++;
  cache->fetch(cache, key, key + e->app_len + 1);
}

/* --------------------------------------------------------- state moves */

/* Evicts least recently used READY entries, never `keep`, until the bounds
 * hold. */
static void disco__rc_enforce_bounds(disco_revcache_t *cache,
                                     disco__rc_entry_t *keep) {
  disco_revcache_evict_reason_t reason;
  disco__rc_entry_t *victim;

  while (!cache->closing) {
    if (cache->n_ready > cache->opts.max_entries)
      reason = DISCO_REVCACHE_EVICT_ENTRIES;
    else if (cache->bytes > cache->opts.max_bytes)
      reason = DISCO_REVCACHE_EVICT_BYTES;
    else
      break;
    if (cache->lru.next == &cache->lru)
      break;
    victim = disco__container_of(cache->lru.next, disco__rc_entry_t, link);
    if (victim == keep)
      break;
    disco__rc_unlink(cache, victim);
    cache->evictions++;
    disco__rc_mark_dirty(cache);
    if (cache->evict != NULL && !cache->loading)
      cache->evict(cache, disco__rc_app(victim), victim->rev, reason);
    disco__rc_free_entry(victim);
  }
}

/* Makes (app, rev) READY with a copy of the value and completes its
 * waiters with the caller's pointers. `len` is within max_bytes. */
static int disco__rc_set_ready(disco_revcache_t *cache, const char *app,
                               size_t app_len, const char *rev, size_t rev_len,
                               const char *bytes, size_t len) {
  struct disco__list waiters;
  disco__rc_entry_t *e;
  uint32_t hash;
  char *copy;

  /* max_bytes may be SIZE_MAX: len + 1 must not wrap to a 0-byte copy. */
  if (len == SIZE_MAX)
    return DISCO_ERANGE;
  copy = malloc(len + 1);
  if (copy == NULL)
    return DISCO_ENOMEM;
  if (len > 0)
    memcpy(copy, bytes, len);
  copy[len] = '\0';
  hash = disco__rc_hash(app, app_len, rev, rev_len);
  e = disco__rc_find(cache, app, app_len, rev, rev_len, hash);
  if (e == NULL)
    e = disco__rc_insert(cache, app, app_len, rev, rev_len, hash);
  if (e == NULL) {
    free(copy);
    return DISCO_ENOMEM;
  }
  if (e->state == DISCO__RC_READY)
    cache->bytes -= e->len;
  disco__rc_leave_state(cache, e);
  free(e->bytes);
  free(e->message);
  e->message = NULL;
  e->bytes = copy;
  e->len = len;
  e->attempts = 0;
  e->retry_unwanted = 0;
  e->state = DISCO__RC_READY;
  disco__list_insert_tail(&cache->lru, &e->link);
  cache->n_ready++;
  cache->bytes += len;
  disco__rc_take_waiters(e, &waiters);
  disco__rc_mark_dirty(cache);
  disco__rc_enforce_bounds(cache, e);
  disco__rc_arm_retry(cache);
  disco__rc_complete(cache, &waiters, app, rev, 0, NULL, bytes, len);
  return 0;
}

/* The fetch of FETCHING `e` failed. */
static void disco__rc_fail(disco_revcache_t *cache, disco__rc_entry_t *e,
                           const char *app, const char *rev, int err,
                           const char *message) {
  struct disco__list waiters;
  size_t n;

  cache->failures++;
  disco__rc_take_waiters(e, &waiters);
  if (e->retry_unwanted && waiters.next == &waiters) {
    /* A retry nobody asked for failed and still nobody waits: stop. */
    disco__rc_unlink(cache, e);
    disco__rc_free_entry(e);
    return;
  }
  disco__rc_leave_state(cache, e);
  free(e->message);
  e->message = NULL;
  if (message != NULL) {
    n = strnlen(message, DISCO_REVCACHE_MAX_MESSAGE);
    e->message = malloc(n + 1);
    if (e->message != NULL) {
      memcpy(e->message, message, n);
      e->message[n] = '\0';
    }
  }
  e->last_err = err;
  e->attempts++;
  e->retry_unwanted = 0;
  e->due = uv_now(&cache->loop->uv) + disco__rc_retry_delay(cache, e->attempts);
  e->state = DISCO__RC_FAILED;
  disco__list_insert_tail(&cache->failed, &e->link);
  cache->n_failed++;
  disco__rc_arm_retry(cache);
  disco__rc_complete(cache, &waiters, app, rev, err, message, NULL, 0);
}

/* Starts every due retry: each FAILED entry whose time has come becomes
 * FETCHING and is fetched again, waiters or not. */
static void disco__rc_retry_cb(uv_timer_t *timer) {
  disco_revcache_t *cache;
  struct disco__list *node;
  disco__rc_entry_t *e;
  uint64_t now;

  cache = disco__container_of(timer, disco_revcache_t, retry_timer);
  now = uv_now(&cache->loop->uv);
  for (;;) {
    /* From the head each time: a fetch may change the list. An entry that
     * fails again is due strictly later than `now`, so this ends. */
    e = NULL;
    for (node = cache->failed.next; node != &cache->failed; node = node->next) {
      e = disco__container_of(node, disco__rc_entry_t, link);
      if (e->due <= now)
        break;
      e = NULL;
    }
    if (e == NULL)
      break;
    disco__rc_leave_state(cache, e);
    e->state = DISCO__RC_FETCHING;
    cache->n_fetching++;
    e->retry_unwanted = e->waiters.next == &e->waiters;
    disco__rc_issue_fetch(cache, e);
    if (cache->closing)
      return;
  }
  disco__rc_arm_retry(cache);
}

/* ------------------------------------------------------------- the file */

static void disco__rc_put_u32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

static void disco__rc_put_u64(unsigned char *p, uint64_t v) {
  disco__rc_put_u32(p, (uint32_t)v);
  disco__rc_put_u32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t disco__rc_get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static uint64_t disco__rc_get_u64(const unsigned char *p) {
  return (uint64_t)disco__rc_get_u32(p) | (uint64_t)disco__rc_get_u32(p + 4)
                                              << 32;
}

static int disco__rc_sha256(const unsigned char *data, size_t len,
                            unsigned char out[DISCO__RC_SHA256_LEN]) {
  unsigned out_len;

  if (EVP_Digest(data, len, out, &out_len, EVP_sha256(), NULL) != 1 ||
      out_len != DISCO__RC_SHA256_LEN)
    return DISCO_EIO;
  return 0;
}

static int disco__rc_errno(int e) {
  return disco_translate_uv_error(uv_translate_sys_error(e));
}

/* Writes all of `buf` to `fd`. 0 or a DISCO_E* code. */
static int disco__rc_write_all(int fd, const unsigned char *buf, size_t len) {
  ssize_t n;

  while (len > 0) {
    n = write(fd, buf, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return disco__rc_errno(errno);
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Makes the rename durable; best effort (some file systems refuse). */
static void disco__rc_sync_dir(const char *path) {
  const char *slash;
  char *dir;
  int fd;

  slash = strrchr(path, '/');
  if (slash == NULL)
    dir = strdup(".");
  else if (slash == path)
    dir = strdup("/");
  else
    dir = strndup(path, (size_t)(slash - path));
  if (dir == NULL)
    return;
  fd = open(dir, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  free(dir);
}

static int disco__rc_write_file(disco_revcache_t *cache) {
  struct disco__list *node;
  disco__rc_entry_t *e;
  unsigned char *buf;
  unsigned char *p;
  size_t payload;
  int err;
  int fd;

  payload = 0;
  for (node = cache->lru.next; node != &cache->lru; node = node->next) {
    e = disco__container_of(node, disco__rc_entry_t, link);
    payload += DISCO__RC_RECORD_HEAD + e->app_len + e->rev_len + e->len;
  }
  buf = malloc(DISCO__RC_HEADER_LEN + payload);
  if (buf == NULL)
    return DISCO_ENOMEM;
  memcpy(buf, DISCO__RC_MAGIC, 8);
  disco__rc_put_u32(buf + 8, DISCO__RC_VERSION);
  disco__rc_put_u32(buf + 12, (uint32_t)cache->n_ready);
  disco__rc_put_u64(buf + 16, (uint64_t)payload);
  /* Oldest first, so that loading in order rebuilds the LRU order. */
  p = buf + DISCO__RC_HEADER_LEN;
  for (node = cache->lru.next; node != &cache->lru; node = node->next) {
    e = disco__container_of(node, disco__rc_entry_t, link);
    disco__rc_put_u32(p, (uint32_t)e->app_len);
    disco__rc_put_u32(p + 4, (uint32_t)e->rev_len);
    disco__rc_put_u64(p + 8, (uint64_t)e->len);
    p += DISCO__RC_RECORD_HEAD;
    memcpy(p, e->key, e->app_len);
    p += e->app_len;
    memcpy(p, e->rev, e->rev_len);
    p += e->rev_len;
    if (e->len > 0)
      memcpy(p, e->bytes, e->len);
    p += e->len;
  }
  err = disco__rc_sha256(buf + DISCO__RC_HEADER_LEN, payload, buf + 24);
  if (err != 0) {
    free(buf);
    return err;
  }

  fd = open(cache->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    err = disco__rc_errno(errno);
    free(buf);
    return err;
  }
  err = disco__rc_write_all(fd, buf, DISCO__RC_HEADER_LEN + payload);
  free(buf);
  if (err == 0 && fsync(fd) != 0)
    err = disco__rc_errno(errno);
  if (close(fd) != 0 && err == 0)
    err = disco__rc_errno(errno);
  if (err == 0 && rename(cache->tmp_path, cache->persist_path) != 0)
    err = disco__rc_errno(errno);
  if (err != 0) {
    unlink(cache->tmp_path);
    return err;
  }
  disco__rc_sync_dir(cache->persist_path);
  return 0;
}

static int disco__rc_save(disco_revcache_t *cache) {
  int err;

  uv_timer_stop(&cache->persist_timer);
  err = disco__rc_write_file(cache);
  if (err != 0) {
    disco_log(cache->loop, DISCO_LOG_WARN, "revcache", "could not write %s: %s",
              cache->persist_path, disco_strerror(err));
    return err;
  }
  cache->dirty = 0;
  return 0;
}

static void disco__rc_persist_cb(uv_timer_t *timer) {
  disco_revcache_t *cache;

  cache = disco__container_of(timer, disco_revcache_t, persist_timer);
  if (cache->dirty)
    disco__rc_save(cache);
}

/* Reads the whole file, at most `max` bytes. 0 with *buf (malloc'ed),
 * DISCO_ENOENT when there is none, or a reason in *why. */
static int disco__rc_read_file(const char *path, size_t max,
                               unsigned char **buf, size_t *len,
                               const char **why) {
  struct stat st;
  unsigned char *data;
  size_t got;
  ssize_t n;
  int fd;

  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *why = strerror(errno);
    return errno == ENOENT ? DISCO_ENOENT : DISCO_EIO;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    *why = "not a regular file";
    return DISCO_EIO;
  }
  if ((uint64_t)st.st_size > (uint64_t)max) {
    close(fd);
    *why = "larger than the cache's bounds allow";
    return DISCO_ERANGE;
  }
  data = malloc((size_t)st.st_size + 1);
  if (data == NULL) {
    close(fd);
    *why = "out of memory";
    return DISCO_ENOMEM;
  }
  got = 0;
  while (got < (size_t)st.st_size) {
    n = read(fd, data + got, (size_t)st.st_size - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  close(fd);
  *buf = data;
  *len = got;
  return 0;
}

/* Reads the head of the record at `p`: its lengths. */
static void disco__rc_record_head(const unsigned char *p, uint32_t *app_len,
                                  uint32_t *rev_len, uint64_t *value_len) {
  *app_len = disco__rc_get_u32(p);
  *rev_len = disco__rc_get_u32(p + 4);
  *value_len = disco__rc_get_u64(p + 8);
}

/* Checks every record of a payload; NULL when all are well, else why. */
static const char *disco__rc_check_payload(const disco_revcache_t *cache,
                                           const unsigned char *p, size_t len,
                                           uint32_t count) {
  uint64_t value_len;
  uint32_t app_len, rev_len;
  size_t key_len;
  size_t off;
  uint32_t i;

  off = 0;
  for (i = 0; i < count; i++) {
    if (len - off < DISCO__RC_RECORD_HEAD)
      return "truncated record";
    disco__rc_record_head(p + off, &app_len, &rev_len, &value_len);
    off += DISCO__RC_RECORD_HEAD;
    if (app_len == 0 || app_len > DISCO_REVCACHE_MAX_APP || rev_len == 0 ||
        rev_len > DISCO_REVCACHE_MAX_REVISION)
      return "bad key length";
    if (value_len > cache->opts.max_bytes)
      return "value larger than max_bytes";
    /* Each length against what is left, never their sum: a value length
     * near 2^64 would wrap it. */
    key_len = (size_t)app_len + rev_len;
    if (key_len > len - off || value_len > len - off - key_len)
      return "truncated record";
    if (memchr(p + off, '\0', key_len) != NULL)
      return "NUL in a key";
    off += key_len + (size_t)value_len;
  }
  return off == len ? NULL : "trailing bytes";
}

/* Loads the file's entries, all or none; warns about a bad file. */
static void disco__rc_load(disco_revcache_t *cache) {
  unsigned char digest[DISCO__RC_SHA256_LEN];
  const unsigned char *p;
  const char *why;
  unsigned char *buf;
  uint64_t payload;
  uint64_t value_len;
  uint32_t count;
  uint32_t app_len;
  uint32_t rev_len;
  uint32_t i;
  uint64_t max64;
  size_t max;
  size_t len;
  int err;

  why = NULL;
  /* The largest file the bounds allow, below SIZE_MAX so that reading it
   * (size + 1) cannot wrap; in 64 bits, which a 32-bit size_t would not
   * hold for a large max_entries. */
  max64 = (uint64_t)cache->opts.max_entries *
              (DISCO__RC_RECORD_HEAD + DISCO_REVCACHE_MAX_APP +
               DISCO_REVCACHE_MAX_REVISION) +
          DISCO__RC_HEADER_LEN;
  max = max64 >= SIZE_MAX ? SIZE_MAX - 1 : (size_t)max64;
  max = cache->opts.max_bytes >= SIZE_MAX - max ? SIZE_MAX - 1
                                                : max + cache->opts.max_bytes;
  err = disco__rc_read_file(cache->persist_path, max, &buf, &len, &why);
  if (err == DISCO_ENOENT)
    return;
  if (err != 0) {
    disco_log(cache->loop, DISCO_LOG_WARN, "revcache", "ignoring %s: %s",
              cache->persist_path, why);
    return;
  }
  payload = len >= DISCO__RC_HEADER_LEN ? disco__rc_get_u64(buf + 16) : 0;
  count = len >= DISCO__RC_HEADER_LEN ? disco__rc_get_u32(buf + 12) : 0;
  if (len < DISCO__RC_HEADER_LEN)
    why = "truncated header";
  else if (memcmp(buf, DISCO__RC_MAGIC, 8) != 0)
    why = "not a revision cache file";
  else if (disco__rc_get_u32(buf + 8) != DISCO__RC_VERSION)
    why = "unknown version";
  else if (payload != len - DISCO__RC_HEADER_LEN)
    why = "truncated or over-long payload";
  else if (disco__rc_sha256(buf + DISCO__RC_HEADER_LEN, (size_t)payload,
                            digest) != 0 ||
           memcmp(digest, buf + 24, DISCO__RC_SHA256_LEN) != 0)
    why = "checksum mismatch";
  else
    why = disco__rc_check_payload(cache, buf + DISCO__RC_HEADER_LEN,
                                  (size_t)payload, count);
  if (why != NULL) {
    disco_log(cache->loop, DISCO_LOG_WARN, "revcache", "ignoring %s: %s",
              cache->persist_path, why);
    free(buf);
    return;
  }
  cache->loading = 1;
  p = buf + DISCO__RC_HEADER_LEN;
  for (i = 0; i < count; i++) {
    disco__rc_record_head(p, &app_len, &rev_len, &value_len);
    p += DISCO__RC_RECORD_HEAD;
    if (disco__rc_set_ready(
            cache, (const char *)p, app_len, (const char *)p + app_len, rev_len,
            (const char *)p + app_len + rev_len, (size_t)value_len) != 0)
      break;
    p += app_len + rev_len + value_len;
  }
  cache->loading = 0;
  free(buf);
}

/* ------------------------------------------------------------ life cycle */

static void disco__rc_free(disco_revcache_t *cache) {
  disco__rc_entry_t *e;
  disco__rc_entry_t *next;
  size_t i;

  for (i = 0; cache->buckets != NULL && i < cache->nbuckets; i++) {
    for (e = cache->buckets[i]; e != NULL; e = next) {
      next = e->hnext;
      disco__rc_free_entry(e);
    }
  }
  free(cache->buckets);
  free(cache->persist_path);
  free(cache->tmp_path);
  free(cache);
}

/* The `i`-th of the cache's timers, for what is done to all alike. */
static uv_handle_t *disco__rc_timer(disco_revcache_t *cache, int i) {
  uv_timer_t *timers[DISCO__RC_NTIMERS];

  timers[0] = &cache->retry_timer;
  timers[1] = &cache->persist_timer;
  timers[2] = &cache->defer_timer;
  return (uv_handle_t *)timers[i];
}

static void disco__rc_timer_close_cb(uv_handle_t *handle) {
  disco_revcache_t *cache;

  cache = handle->data;
  if (--cache->timers_open > 0)
    return;
  disco__handle_unregister(&cache->base);
  if (cache->close_cb != NULL)
    cache->close_cb(cache, cache->data);
  disco__rc_free(cache);
}

static void disco__rc_close_from_loop(disco__handle_t *base) {
  disco_revcache_close(disco__container_of(base, disco_revcache_t, base));
}

static int disco__rc_check_options(const disco_revcache_options_t *o) {
  if (o->max_entries < 1 || o->max_bytes < 1 || o->fast_retry_ms < 1 ||
      o->slow_retry_ms < 1 || !(o->jitter >= 0 && o->jitter <= 1))
    return DISCO_EINVAL;
  /* Record lengths are stored in 64 bits but counts in 32. */
  if (o->max_entries > UINT32_MAX)
    return DISCO_EINVAL;
  if (o->persist_path != NULL &&
      (o->persist_path[0] == '\0' || strlen(o->persist_path) > 4000))
    return DISCO_EINVAL;
  return 0;
}

int disco_revcache_new(disco_loop_t *loop, const disco_revcache_options_t *opts,
                       disco_revcache_fetch_cb fetch,
                       disco_revcache_evict_cb evict,
                       disco_handle_close_cb close_cb, void *data,
                       disco_revcache_t **out) {
  disco_revcache_t *cache;
  size_t n;
  int err;
  int i;

  if (loop == NULL || fetch == NULL || out == NULL)
    return DISCO_EINVAL;
  if (loop->closing != DISCO__LOOP_OPEN)
    return DISCO_ECLOSED;
  cache = calloc(1, sizeof(*cache));
  if (cache == NULL)
    return DISCO_ENOMEM;
  if (opts != NULL)
    cache->opts = *opts;
  else
    disco_revcache_options_init(&cache->opts);
  err = disco__rc_check_options(&cache->opts);
  if (err != 0) {
    free(cache);
    return err;
  }
  cache->nbuckets = DISCO__RC_INITIAL_BUCKETS;
  cache->buckets = calloc(cache->nbuckets, sizeof(*cache->buckets));
  if (cache->opts.persist_path != NULL) {
    n = strlen(cache->opts.persist_path);
    cache->persist_path = strdup(cache->opts.persist_path);
    cache->tmp_path = malloc(n + 5);
    if (cache->tmp_path != NULL) {
      memcpy(cache->tmp_path, cache->opts.persist_path, n);
      memcpy(cache->tmp_path + n, ".tmp", 5);
    }
    if (cache->persist_path == NULL || cache->tmp_path == NULL) {
      disco__rc_free(cache);
      return DISCO_ENOMEM;
    }
  }
  /* The caller's string may go; the copy stays. */
  cache->opts.persist_path = cache->persist_path;
  if (cache->buckets == NULL) {
    disco__rc_free(cache);
    return DISCO_ENOMEM;
  }
  cache->loop = loop;
  cache->fetch = fetch;
  cache->evict = evict;
  cache->close_cb = close_cb;
  cache->data = data;
  disco__list_init(&cache->lru);
  disco__list_init(&cache->failed);
  disco__list_init(&cache->deferred);
  cache->rng = (uv_hrtime() ^ (uint64_t)(uintptr_t)cache) | 1;
  /* uv_timer_init() cannot fail on an open loop. */
  for (i = 0; i < DISCO__RC_NTIMERS; i++) {
    uv_timer_init(&loop->uv, (uv_timer_t *)disco__rc_timer(cache, i));
    disco__rc_timer(cache, i)->data = cache;
  }
  cache->timers_open = DISCO__RC_NTIMERS;
  disco__handle_register(loop, &cache->base, disco__rc_close_from_loop);
  if (cache->persist_path != NULL)
    disco__rc_load(cache);
  *out = cache;
  return 0;
}

void disco_revcache_close(disco_revcache_t *cache) {
  struct disco__list waiters;
  disco__rc_entry_t *e;
  size_t i;
  int k;

  if (cache == NULL || cache->closing)
    return;
  cache->closing = 1;
  for (k = 0; k < DISCO__RC_NTIMERS; k++)
    uv_timer_stop((uv_timer_t *)disco__rc_timer(cache, k));
  disco__rc_complete_deferred(cache, &cache->deferred, DISCO_ECANCELED);
  /* A closing cache refuses every change, so the table holds still while
   * the waiters' callbacks run. */
  for (i = 0; i < cache->nbuckets; i++) {
    for (e = cache->buckets[i]; e != NULL; e = e->hnext) {
      disco__rc_take_waiters(e, &waiters);
      disco__rc_complete(cache, &waiters, disco__rc_app(e), e->rev,
                         DISCO_ECANCELED, NULL, NULL, 0);
    }
  }
  if (cache->persist_path != NULL && cache->dirty)
    disco__rc_save(cache);
  for (k = 0; k < DISCO__RC_NTIMERS; k++)
    uv_close(disco__rc_timer(cache, k), disco__rc_timer_close_cb);
}

void *disco_revcache_data(const disco_revcache_t *cache) {
  return cache->data;
}

void disco_revcache_set_ref(disco_revcache_t *cache, int ref) {
  int i;

  if (cache == NULL || cache->closing)
    return;
  for (i = 0; i < DISCO__RC_NTIMERS; i++) {
    if (ref)
      uv_ref(disco__rc_timer(cache, i));
    else
      uv_unref(disco__rc_timer(cache, i));
  }
}

void disco_revcache_stats(const disco_revcache_t *cache,
                          disco_revcache_stats_t *stats) {
  stats->hits = cache->hits;
  stats->misses = cache->misses;
  stats->fetches = cache->fetches;
  stats->failures = cache->failures;
  stats->evictions = cache->evictions;
  stats->entries = cache->n_ready;
  stats->bytes = cache->bytes;
  stats->inflight = cache->n_fetching;
  stats->failed = cache->n_failed;
}

/* ------------------------------------------------------------ the API */

/* What every keyed call checks once its own arguments are there: 0 with
 * the key's lengths, or the error to return. */
static int disco__rc_enter(const disco_revcache_t *cache, const char *app,
                           const char *rev, size_t *app_len, size_t *rev_len) {
  if (cache->closing)
    return DISCO_ECLOSED;
  return disco__rc_check_key(app, rev, app_len, rev_len);
}

static disco__rc_entry_t *disco__rc_find_key(const disco_revcache_t *cache,
                                             const char *app, size_t app_len,
                                             const char *rev, size_t rev_len) {
  return disco__rc_find(cache, app, app_len, rev, rev_len,
                        disco__rc_hash(app, app_len, rev, rev_len));
}

/* A READY `e` was used: it becomes the most recent. */
static void disco__rc_touch(disco_revcache_t *cache, disco__rc_entry_t *e) {
  disco__list_remove(&e->link);
  disco__list_insert_tail(&cache->lru, &e->link);
}

/* Answers a want with READY `e`'s value. */
static int disco__rc_want_ready(disco_revcache_t *cache, disco__rc_entry_t *e,
                                disco_revcache_value_t *out) {
  disco__rc_touch(cache, e);
  out->ready = 1;
  out->bytes = e->bytes;
  out->len = e->len;
  return 0;
}

int disco_revcache_lookup(disco_revcache_t *cache, const char *app,
                          const char *revision, const char **bytes,
                          size_t *len) {
  disco__rc_entry_t *e;
  size_t app_len, rev_len;
  int err;

  if (cache == NULL || bytes == NULL || len == NULL)
    return DISCO_EINVAL;
  err = disco__rc_enter(cache, app, revision, &app_len, &rev_len);
  if (err != 0)
    return err;
  e = disco__rc_find_key(cache, app, app_len, revision, rev_len);
  if (e == NULL || e->state != DISCO__RC_READY) {
    cache->misses++;
    return DISCO_ENOENT;
  }
  cache->hits++;
  disco__rc_touch(cache, e);
  *bytes = e->bytes;
  *len = e->len;
  return 0;
}

int disco_revcache_want(disco_revcache_t *cache, const char *app,
                        const char *revision, disco_revcache_want_cb cb,
                        void *arg, disco_revcache_value_t *out) {
  disco__rc_waiter_t *w;
  disco__rc_entry_t *e;
  size_t app_len, rev_len;
  uint32_t hash;
  int fetched;
  int err;

  if (cache == NULL || cb == NULL || out == NULL)
    return DISCO_EINVAL;
  memset(out, 0, sizeof(*out));
  err = disco__rc_enter(cache, app, revision, &app_len, &rev_len);
  if (err != 0)
    return err;
  hash = disco__rc_hash(app, app_len, revision, rev_len);
  e = disco__rc_find(cache, app, app_len, revision, rev_len, hash);
  if (e != NULL && e->state == DISCO__RC_READY) {
    cache->hits++;
    return disco__rc_want_ready(cache, e, out);
  }
  cache->misses++;
  /* Allocated first, so that no failure can follow an issued fetch. */
  w = malloc(sizeof(*w));
  if (w == NULL)
    return DISCO_ENOMEM;
  w->cb = cb;
  w->arg = arg;
  fetched = 0;
  if (e == NULL) {
    e = disco__rc_insert(cache, app, app_len, revision, rev_len, hash);
    if (e == NULL) {
      free(w);
      return DISCO_ENOMEM;
    }
    e->state = DISCO__RC_FETCHING;
    cache->n_fetching++;
    disco__rc_issue_fetch(cache, e);
    fetched = 1;
    if (cache->closing) {
      free(w);
      return DISCO_ECLOSED;
    }
    /* The owner may have answered already. */
    e = disco__rc_find(cache, app, app_len, revision, rev_len, hash);
  }
  if (e == NULL) {
    /* Resolved and evicted within the fetch callback. */
    free(w);
    return DISCO_EAGAIN;
  }
  if (e->state == DISCO__RC_READY) {
    free(w);
    return disco__rc_want_ready(cache, e, out);
  }
  if (fetched && e->state == DISCO__RC_FAILED) {
    /* Rejected within the fetch callback: the error is the answer, given
     * on the next iteration like any other. */
    free(w);
    err = disco__rc_defer(cache, e, cb, arg);
    if (err != 0)
      return e->last_err;
    return 0;
  }
  /* FETCHING, or FAILED from before: the next outcome completes it. */
  disco__list_insert_tail(&e->waiters, &w->link);
  return 0;
}

/* put, and resolve (`resolving`): the latter also fails the fetch that an
 * oversize answer was for. */
static int disco__rc_store(disco_revcache_t *cache, const char *app,
                           const char *revision, const char *bytes, size_t len,
                           int resolving) {
  disco__rc_entry_t *e;
  size_t app_len, rev_len;
  int err;

  if (cache == NULL || (bytes == NULL && len > 0))
    return DISCO_EINVAL;
  err = disco__rc_enter(cache, app, revision, &app_len, &rev_len);
  if (err != 0)
    return err;
  if (len > cache->opts.max_bytes) {
    e = resolving ? disco__rc_find_key(cache, app, app_len, revision, rev_len)
                  : NULL;
    if (e != NULL && e->state == DISCO__RC_FETCHING)
      disco__rc_fail(cache, e, app, revision, DISCO_ERANGE,
                     "metadata larger than max_bytes");
    return DISCO_ERANGE;
  }
  return disco__rc_set_ready(cache, app, app_len, revision, rev_len, bytes,
                             len);
}

int disco_revcache_put(disco_revcache_t *cache, const char *app,
                       const char *revision, const char *bytes, size_t len) {
  return disco__rc_store(cache, app, revision, bytes, len, 0);
}

int disco_revcache_resolve(disco_revcache_t *cache, const char *app,
                           const char *revision, const char *bytes,
                           size_t len) {
  return disco__rc_store(cache, app, revision, bytes, len, 1);
}

int disco_revcache_reject(disco_revcache_t *cache, const char *app,
                          const char *revision, int err, const char *message) {
  disco__rc_entry_t *e;
  size_t app_len, rev_len;
  int rc;

  if (cache == NULL)
    return DISCO_EINVAL;
  rc = disco__rc_enter(cache, app, revision, &app_len, &rev_len);
  if (rc != 0)
    return rc;
  e = disco__rc_find_key(cache, app, app_len, revision, rev_len);
  if (e == NULL || e->state != DISCO__RC_FETCHING)
    return DISCO_ENOENT;
  disco__rc_fail(cache, e, app, revision, err < 0 ? err : DISCO_EIO, message);
  return 0;
}

int disco_revcache_save(disco_revcache_t *cache) {
  if (cache == NULL || cache->persist_path == NULL)
    return DISCO_EINVAL;
  if (cache->closing)
    return DISCO_ECLOSED;
  return disco__rc_save(cache);
}
