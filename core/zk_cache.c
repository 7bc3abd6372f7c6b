/*
 * A cache of the children of one path and their data, on one-shot watches.
 *
 * Work goes in rounds: an optional list of the parent (children2, with the
 * child watch re-armed when none is set for this generation), then a get of
 * every child that needs reading (new ones, and those whose data watch
 * fired), then one diff of what changed. Events that arrive during a round
 * only set flags; the next round starts when this one ends. A round that
 * fails (connection lost, session expired) reports nothing: what it
 * observed stays pending and the reconnect starts a full round (list and a
 * re-check of every child), so nothing is lost and nothing is made up.
 *
 * Identity. A child is removed only when a successful list no longer has
 * it. A child deleted and created again shows up as a different czxid on
 * the next read, so it is reported as updated. Changes accumulate on the
 * entries until a diff is reported: added then updated stays added, added
 * then removed is never reported, removed then listed again is updated.
 *
 * Watches are tracked per session generation (watch_gen): a watch set on an
 * expired handle is gone, so a read of the new generation arms a new one;
 * a read while a watch of the current generation is set arms none, so
 * watches never pile up on a path.
 *
 * Requests and watches reach entries by name (entries move in the sorted
 * array); each request holds a reference (`pending`) on the cache, which is
 * freed once closed with no reference left. A child's data watch, which
 * lives as long as the child is watched, keeps no record of its own: it
 * holds the cache's anchor, and its event's path names the child.
 *
 * Child reads are bounded per session (DISCO__CACHE_MAX_READS, whatever
 * the number of caches): a consumer that starts watching a thousand
 * applications at once would otherwise have every child of every one
 * requested together, and the replies and parse garbage of all of them
 * would raise the C and Lua heaps to a peak neither gives back. A cache
 * with reads left to send when the bound is reached waits in the
 * session's FIFO (holding its round open) and goes on as reads complete.
 */
#include <stdlib.h>
#include <string.h>

#include "zk_internal.h"

enum { DISCO__CHANGE_NONE = 0, DISCO__CHANGE_ADDED = 1, DISCO__CHANGE_UPDATED };

/* A consumer holds one entry per child it watches (100,000 and more): the
 * flags are bits and the length 32 bits (node data is bounded far below),
 * 104 bytes in all where ints made it 128. */
typedef struct {
  char *name;
  char *value; /* NULL: null value or too large */
  disco_zk_stat_t stat;
  uint64_t watch_gen; /* generation of its data watch, 0: none */
  uint32_t len;
  unsigned too_large : 1;
  unsigned loaded : 1;   /* read at least once (visible) */
  unsigned reported : 1; /* part of what the consumer knows */
  unsigned change : 2;   /* DISCO__CHANGE_* not reported yet */
  unsigned dirty : 1;    /* must be read in the next round */
} disco__cache_entry_t;

/* What the children's data watches hold instead of a record each (a
 * consumer has one per instance it watches): the cache until it is gone,
 * then NULL. Freed with the last reference (the cache's and one per
 * watch). */
typedef struct {
  disco_zk_cache_t *cache;
  size_t refs;
} disco__cache_anchor_t;

/* One request, and its watch if any. A watch may outlive the cache (it ends
 * only when it fires or the session closes): a closed cache detaches its
 * records (cache = NULL) and they free themselves when they end. */
typedef struct {
  struct disco__list link; /* in cache->reqs while attached */
  disco_zk_cache_t *cache;
  uint64_t generation;
  int kept;   /* the get succeeded, so ZooKeeper keeps its watch */
  int refs;   /* result, plus the watch if any */
  int watch;  /* a watch was requested */
  int pooled; /* from disco__cache_req_pool (a short name) */
  char name[1];
} disco__cache_req_t;

/* A request with a watch lives as long as the watch, beside request
 * buffers freed at once: pooled (names up to 31 bytes, as an IPv4
 * "host:port"), it leaves no holes in the C heap after a burst of reads
 * (core/pool.c). */
enum { DISCO__CACHE_POOLED_NAME = 31 };
static disco_pool_t disco__cache_req_pool =
    DISCO_POOL_INIT(sizeof(disco__cache_req_t) + DISCO__CACHE_POOLED_NAME);

/* Without keep_data, the data of a round's children is written into
 * blocks freed whole once reported: freed one by one, hundreds of
 * thousands of small copies would leave holes between the entries the
 * cache keeps, which the C heap can never give back. */
struct disco__cache_block {
  struct disco__cache_block *next;
  size_t used;
  size_t cap;
  char data[];
};

enum { DISCO__CACHE_BLOCK_SIZE = 32 * 1024 };

struct disco_zk_cache_s {
  disco__zk_listener_t listener;
  disco__cache_anchor_t *anchor;
  disco_qitem_t finish_item; /* the close's last step, on the next tick */
  disco_zk_t *zk;
  char *path;
  size_t max_data;
  int keep_data; /* keep each child's data after reporting it */
  struct disco__cache_block *blocks; /* !keep_data: the unreported data */
  disco_zk_cache_cb on_change;
  disco_zk_cache_read_cb on_read;
  disco_handle_close_cb close_cb;
  void *data;
  disco__cache_entry_t *entries; /* sorted by name */
  size_t count;
  size_t cap;
  disco__cache_entry_t *removed; /* removed, not reported yet */
  size_t num_removed;
  size_t cap_removed;
  uint64_t list_gen;   /* generation of the child watch, 0: none */
  uint64_t exists_gen; /* generation of the exists watch on a missing parent */
  uint64_t generation; /* the session generation last seen connected */
  int in_round;
  int again;       /* start another round after this one */
  int need_list;   /* the next round lists the parent */
  int recheck;     /* the next list re-reads every child */
  int failed;      /* this round failed: report nothing */
  int loaded;      /* the initial diff was reported */
  int outstanding; /* requests of this round */
  int kick;        /* a reconnect came during this round */
  struct disco__list reqs;
  int closing;
  int finished;
  int pending;                  /* results and callbacks holding the cache */
  struct disco__list wait_link; /* in zk->cache_waiting while waiting */
  int waiting;                  /* for room to send reads */
  int resuming;                 /* sending reads after a wait */
  size_t read_from;             /* where the round's reads go on */
  disco_zk_cache_stats_t stats;
};

/* Child reads in flight per session, over all its caches: enough that a
 * load is paced by the server and not by the loop sending the next read
 * (1,024 doubled the load time of bench/memory.lua on a busy machine), few
 * enough that their replies stay around ten megabytes. */
enum { DISCO__CACHE_MAX_READS = 8192 };

static void disco__cache_round(disco_zk_cache_t *c);
static void disco__cache_fill(disco_zk_child_t *out,
                              const disco__cache_entry_t *e);
static void disco__cache_wait(disco_zk_cache_t *c);
static void disco__cache_resume(disco_zk_t *zk);
static void disco__cache_round_end(disco_zk_cache_t *c);

/* ------------------------------------------------------------ entries */

/* Child names live as long as their entries but are allocated while
 * the reads of other children are in flight: pooled (up to 31 bytes), they
 * do not split the memory those reads free into unreturnable pieces. */
enum { DISCO__CACHE_POOLED_CHILD = 32 };
static disco_pool_t disco__cache_name_pool =
    DISCO_POOL_INIT(DISCO__CACHE_POOLED_CHILD);

static char *disco__cache_name_dup(const char *name) {
  size_t len;
  char *copy;

  len = strlen(name);
  if (len >= DISCO__CACHE_POOLED_CHILD)
    return strdup(name);
  copy = disco_pool_alloc(&disco__cache_name_pool);
  if (copy != NULL)
    memcpy(copy, name, len + 1);
  return copy;
}

static void disco__cache_name_free(char *name) {
  if (name == NULL)
    return;
  if (strlen(name) >= DISCO__CACHE_POOLED_CHILD)
    free(name);
  else
    disco_pool_free(&disco__cache_name_pool, name);
}

/* Room for `len` bytes of child data (NULL on memory exhaustion). */
static char *disco__cache_value_alloc(disco_zk_cache_t *c, size_t len) {
  struct disco__cache_block *b;
  size_t cap;
  char *p;

  if (len == 0)
    len = 1;
  if (c->keep_data)
    return malloc(len);
  len = (len + 7) & ~(size_t)7;
  b = c->blocks;
  if (b == NULL || b->cap - b->used < len) {
    cap = len > DISCO__CACHE_BLOCK_SIZE ? len : DISCO__CACHE_BLOCK_SIZE;
    b = malloc(sizeof(*b) + cap);
    if (b == NULL)
      return NULL;
    b->used = 0;
    b->cap = cap;
    b->next = c->blocks;
    c->blocks = b;
  }
  p = b->data + b->used;
  b->used += len;
  return p;
}

static void disco__cache_value_free(disco_zk_cache_t *c, char *value) {
  if (c->keep_data)
    free(value);
}

static void disco__cache_blocks_free(disco_zk_cache_t *c) {
  struct disco__cache_block *b;

  while ((b = c->blocks) != NULL) {
    c->blocks = b->next;
    free(b);
  }
}

static void disco__cache_entry_free(disco_zk_cache_t *c,
                                    disco__cache_entry_t *e) {
  disco__cache_name_free(e->name);
  disco__cache_value_free(c, e->value);
}

/* Without keep_data: forgets the data of every reported child, and frees
 * the blocks once no child's data is waiting to be reported. */
static void disco__cache_drop_data(disco_zk_cache_t *c) {
  size_t i;
  int waiting;

  if (c->keep_data)
    return;
  waiting = 0;
  for (i = 0; i < c->count; i++) {
    if (c->entries[i].reported) {
      c->entries[i].value = NULL;
      c->entries[i].len = 0;
    } else if (c->entries[i].value != NULL) {
      waiting = 1;
    }
  }
  if (!waiting && c->num_removed == 0)
    disco__cache_blocks_free(c);
}

/* The index of `name`, or where it would go (with *found = 0). */
static size_t disco__cache_find(const disco_zk_cache_t *c, const char *name,
                                int *found) {
  size_t lo;
  size_t hi;
  size_t mid;
  int cmp;

  lo = 0;
  hi = c->count;
  while (lo < hi) {
    mid = lo + (hi - lo) / 2;
    cmp = strcmp(c->entries[mid].name, name);
    if (cmp == 0) {
      *found = 1;
      return mid;
    }
    if (cmp < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = 0;
  return lo;
}

static disco__cache_entry_t *disco__cache_get(disco_zk_cache_t *c,
                                              const char *name) {
  int found;
  size_t i;

  i = disco__cache_find(c, name, &found);
  return found ? &c->entries[i] : NULL;
}

/* Room for `n` entries in one allocation: a first list of thousands of
 * children would otherwise double its way up, leaving each smaller array
 * as a hole and up to half of the last one unused. */
static int disco__cache_reserve(disco_zk_cache_t *c, size_t n) {
  disco__cache_entry_t *grown;

  if (n <= c->cap)
    return 0;
  grown = realloc(c->entries, n * sizeof(*grown));
  if (grown == NULL)
    return DISCO_ENOMEM;
  c->entries = grown;
  c->cap = n;
  return 0;
}

/* Gives back the room of children gone when it is more than half. */
static void disco__cache_shrink(disco_zk_cache_t *c) {
  disco__cache_entry_t *shrunk;
  size_t cap;

  if (c->cap <= 16 || c->count >= c->cap / 2)
    return;
  cap = c->count > 16 ? c->count : 16;
  shrunk = realloc(c->entries, cap * sizeof(*shrunk));
  if (shrunk == NULL)
    return; /* the larger array still works */
  c->entries = shrunk;
  c->cap = cap;
}

static int disco__cache_insert(disco_zk_cache_t *c, size_t at,
                               const disco__cache_entry_t *e) {
  disco__cache_entry_t *grown;
  size_t cap;

  if (c->count == c->cap) {
    cap = c->cap > 0 ? c->cap * 2 : 16;
    grown = realloc(c->entries, cap * sizeof(*grown));
    if (grown == NULL)
      return DISCO_ENOMEM;
    c->entries = grown;
    c->cap = cap;
  }
  memmove(&c->entries[at + 1], &c->entries[at],
          (c->count - at) * sizeof(*c->entries));
  c->entries[at] = *e;
  c->count++;
  return 0;
}

/* Moves entry `i` out: to the removed list when the consumer knows it,
 * else it is simply dropped. */
static void disco__cache_remove_at(disco_zk_cache_t *c, size_t i) {
  disco__cache_entry_t e;
  disco__cache_entry_t *grown;
  size_t cap;

  e = c->entries[i];
  memmove(&c->entries[i], &c->entries[i + 1],
          (c->count - i - 1) * sizeof(*c->entries));
  c->count--;
  if (!e.reported) {
    disco__cache_entry_free(c, &e);
    return;
  }
  if (c->num_removed == c->cap_removed) {
    cap = c->cap_removed > 0 ? c->cap_removed * 2 : 8;
    grown = realloc(c->removed, cap * sizeof(*grown));
    if (grown == NULL) {
      /* Cannot report it: drop it; the snapshot is right anyway. */
      disco__cache_entry_free(c, &e);
      return;
    }
    c->removed = grown;
    c->cap_removed = cap;
  }
  c->removed[c->num_removed++] = e;
}

/* A name in the new list: an entry of the set, taken back from the removed
 * list when it was there (it comes back as updated, never added). */
static int disco__cache_present(disco_zk_cache_t *c, const char *name) {
  disco__cache_entry_t e;
  disco__cache_entry_t *cur;
  size_t at;
  size_t j;
  int found;

  at = disco__cache_find(c, name, &found);
  if (found) {
    cur = &c->entries[at];
    if (c->recheck)
      cur->dirty = 1;
    return 0;
  }
  memset(&e, 0, sizeof(e));
  for (j = 0; j < c->num_removed; j++) {
    if (strcmp(c->removed[j].name, name) == 0) {
      e = c->removed[j];
      memmove(&c->removed[j], &c->removed[j + 1],
              (c->num_removed - j - 1) * sizeof(*c->removed));
      c->num_removed--;
      e.change = DISCO__CHANGE_NONE;
      e.watch_gen = 0;
      break;
    }
  }
  if (e.name == NULL) {
    e.name = disco__cache_name_dup(name);
    if (e.name == NULL)
      return DISCO_ENOMEM;
  }
  e.dirty = 1;
  if (disco__cache_insert(c, at, &e) != 0) {
    disco__cache_entry_free(c, &e);
    return DISCO_ENOMEM;
  }
  return 0;
}

/* ------------------------------------------------------------ requests */

static void disco__cache_anchor_release(disco__cache_anchor_t *anchor) {
  if (--anchor->refs == 0)
    free(anchor);
}

static void disco__cache_finish(disco_zk_cache_t *c) {
  size_t i;

  disco__zk_remove_state_listener(&c->listener);
  c->anchor->cache = NULL;
  disco__cache_anchor_release(c->anchor);
  while (c->reqs.next != &c->reqs) {
    disco__cache_req_t *req =
        disco__container_of(c->reqs.next, disco__cache_req_t, link);
    req->cache = NULL;
    disco__list_remove(&req->link);
  }
  if (c->close_cb != NULL)
    c->close_cb(c, c->data);
  for (i = 0; i < c->count; i++)
    disco__cache_entry_free(c, &c->entries[i]);
  for (i = 0; i < c->num_removed; i++)
    disco__cache_entry_free(c, &c->removed[i]);
  disco__cache_blocks_free(c);
  free(c->entries);
  free(c->removed);
  free(c->path);
  free(c);
}

static void disco__cache_finish_item_cb(disco_qitem_t *item, int status) {
  (void)status; /* canceled when the session's queue closes: finish too */
  disco__cache_finish(disco__container_of(item, disco_zk_cache_t, finish_item));
}

/* close_cb never runs inside the call that closed the cache (a Lua method,
 * a session close): it goes through the session's queue to the next loop
 * iteration. */
static void disco__cache_maybe_finish(disco_zk_cache_t *c) {
  if (!c->closing || c->pending > 0 || c->finished)
    return;
  c->finished = 1;
  c->finish_item.cb = disco__cache_finish_item_cb;
  if (disco_queue_push(c->zk->queue, &c->finish_item) != 0)
    disco__cache_finish(c);
}

static disco__cache_req_t *disco__cache_req_new(disco_zk_cache_t *c,
                                                const char *name, int watch) {
  disco__cache_req_t *req;
  size_t len;

  len = name != NULL ? strlen(name) : 0;
  if (len <= DISCO__CACHE_POOLED_NAME) {
    req = disco_pool_alloc(&disco__cache_req_pool);
    if (req == NULL)
      return NULL;
    req->pooled = 1;
  } else {
    req = calloc(1, sizeof(*req) + len);
    if (req == NULL)
      return NULL;
  }
  req->cache = c;
  disco__list_insert_tail(&c->reqs, &req->link);
  req->generation = disco_zk_generation(c->zk);
  req->watch = watch;
  req->refs = watch ? 2 : 1;
  if (len > 0)
    memcpy(req->name, name, len);
  return req;
}

static void disco__cache_req_free(disco__cache_req_t *req) {
  if (req->pooled)
    disco_pool_free(&disco__cache_req_pool, req);
  else
    free(req);
}

/* Drops one of the request's references (its result's or its watch's). */
static void disco__cache_req_release(disco__cache_req_t *req) {
  if (--req->refs > 0)
    return;
  disco__list_remove(&req->link);
  disco__cache_req_free(req);
}

/* A request that was never sent. */
static void disco__cache_req_drop(disco__cache_req_t *req) {
  disco__list_remove(&req->link);
  disco__cache_req_free(req);
}

/* The end of a result callback: the cache's reference goes. */
static void disco__cache_result_end(disco_zk_cache_t *c,
                                    disco__cache_req_t *req) {
  disco__cache_req_release(req);
  c->pending--;
  disco__cache_maybe_finish(c);
}

/* A result of this round came back. */
static void disco__cache_done(disco_zk_cache_t *c) {
  if (--c->outstanding == 0)
    disco__cache_round_end(c);
}

static int disco__cache_transient(int err) {
  return err == DISCO_ECONNLOSS || err == DISCO_ESESSIONEXPIRED ||
         err == DISCO_ECLOSED;
}

static void disco__cache_fail(disco_zk_cache_t *c, int err, const char *what) {
  c->failed = 1;
  if (!disco__cache_transient(err))
    disco_log(c->zk->loop, DISCO_LOG_WARN, "zookeeper", "cache %s: %s: %s",
              c->path, what, disco_strerror(err));
}

/* The child watch, or the exists watch on a missing parent, fired or
 * ended. */
static void disco__cache_watch_cb(disco_zk_t *zk, const disco_zk_event_t *ev,
                                  void *data) {
  disco__cache_req_t *req;
  disco_zk_cache_t *c;

  (void)zk;
  req = data;
  c = req->cache;
  if (c == NULL) {
    disco__cache_req_release(req);
    return;
  }
  c->pending++;
  if (req->kept && c->list_gen == req->generation)
    c->list_gen = 0;
  if (req->kept && c->exists_gen == req->generation)
    c->exists_gen = 0;
  if (ev->status == 0 && !c->closing) {
    c->need_list = 1;
    disco__cache_round(c);
  }
  disco__cache_req_release(req);
  c->pending--;
  disco__cache_maybe_finish(c);
}

/* The entry the path of a child's event names, or NULL. */
static disco__cache_entry_t *disco__cache_entry_at(disco_zk_cache_t *c,
                                                   const char *path) {
  size_t plen;

  plen = strlen(c->path);
  if (path == NULL || strncmp(path, c->path, plen) != 0)
    return NULL;
  if (plen > 1) {
    if (path[plen] != '/')
      return NULL;
    plen++;
  }
  return path[plen] != '\0' ? disco__cache_get(c, path + plen) : NULL;
}

/* A child's data watch fired or ended. Only a firing matters: a watch
 * ends unfired when its get failed (then none was recorded), or with its
 * session handle, whose generation then no longer matches the entry's
 * watch_gen, so that the next read arms a new one all the same. */
static void disco__cache_child_watch_cb(disco_zk_t *zk,
                                        const disco_zk_event_t *ev,
                                        void *data) {
  disco__cache_anchor_t *anchor;
  disco_zk_cache_t *c;
  disco__cache_entry_t *e;

  (void)zk;
  anchor = data;
  c = anchor->cache;
  disco__cache_anchor_release(anchor); /* the cache holds one too */
  if (c == NULL || ev->status != 0)
    return;
  c->pending++;
  e = disco__cache_entry_at(c, ev->path);
  if (e != NULL && e->watch_gen == ev->generation)
    e->watch_gen = 0;
  if (!c->closing && e != NULL) {
    e->dirty = 1;
    if (ev->type == DISCO_ZK_EVENT_DELETED)
      c->need_list = 1; /* gone, or gone and back: the list decides */
    disco__cache_round(c);
  }
  c->pending--;
  disco__cache_maybe_finish(c);
}

static void disco__cache_get_cb(disco_zk_t *zk, const disco_zk_result_t *r,
                                void *data) {
  disco__cache_req_t *req;
  disco_zk_cache_t *c;
  disco__cache_entry_t *e;
  char *value;
  int too_large;

  req = data;
  c = req->cache;
  e = disco__cache_get(c, req->name);
  if (r->err == 0 && req->watch) {
    req->kept = 1;
    if (e != NULL)
      e->watch_gen = req->generation;
  }
  if (e != NULL && !c->closing) {
    if (r->err == 0) {
      too_large = c->max_data > 0 && (size_t)r->stat.data_length > c->max_data;
      value = NULL;
      if (!too_large && r->data != NULL) {
        value = disco__cache_value_alloc(c, r->data_len);
        if (value == NULL) {
          e->dirty = 1;
          disco__cache_fail(c, DISCO_ENOMEM, "get");
          goto done;
        }
        memcpy(value, r->data, r->data_len);
      }
      if (!e->loaded) {
        e->loaded = 1;
        e->change = DISCO__CHANGE_ADDED;
      } else if (e->stat.czxid != r->stat.czxid ||
                 e->stat.mzxid != r->stat.mzxid || e->too_large != too_large) {
        if (e->change == DISCO__CHANGE_NONE)
          e->change = e->reported ? DISCO__CHANGE_UPDATED : DISCO__CHANGE_ADDED;
      }
      disco__cache_value_free(c, e->value);
      e->value = value;
      /* A reply's data is under ZooKeeper's int32 limit. */
      e->len = value != NULL ? (uint32_t)r->data_len : 0;
      e->too_large = too_large;
      e->stat = r->stat;
      if (c->on_read != NULL && e->change != DISCO__CHANGE_NONE) {
        disco_zk_child_t child;
        disco__cache_fill(&child, e);
        c->on_read(c, &child); /* the result's pending holds c */
      }
    } else if (r->err == DISCO_ENONODE) {
      /* Deleted since the list (maybe back again soon): the next list
       * decides, the entry stays meanwhile. */
      e->dirty = 1;
      c->need_list = 1;
      c->again = 1;
    } else {
      e->dirty = 1;
      disco__cache_fail(c, r->err, "get");
    }
  }
done:
  disco__cache_done(c);
  disco__cache_result_end(c, req); /* may free c */
  disco__cache_resume(zk);
}

/* Reads every dirty entry. */
static void disco__cache_read_dirty(disco_zk_cache_t *c) {
  disco__cache_req_t *req;
  disco__cache_entry_t *e;
  uint64_t gen;
  size_t plen;
  size_t i;
  char *full;
  int watch;
  int err;

  if (c->waiting)
    return;
  gen = disco_zk_generation(c->zk);
  plen = strlen(c->path);
  for (i = c->read_from; i < c->count && !c->failed; i++) {
    e = &c->entries[i];
    if (!e->dirty)
      continue;
    if (c->zk->cache_reads >= DISCO__CACHE_MAX_READS) {
      c->read_from = i;
      disco__cache_wait(c);
      return;
    }
    full = malloc(plen + strlen(e->name) + 2);
    watch = e->watch_gen != gen;
    /* The result's reference only: the watch holds the anchor. */
    req = disco__cache_req_new(c, e->name, 0);
    if (full == NULL || req == NULL) {
      free(full);
      if (req != NULL)
        disco__cache_req_drop(req);
      disco__cache_fail(c, DISCO_ENOMEM, "get");
      break;
    }
    memcpy(full, c->path, plen);
    full[plen] = '/';
    strcpy(full + (plen == 1 ? 1 : plen + 1), e->name);
    if (plen == 1)
      full[0] = '/';
    req->watch = watch;
    err = disco__zk_get_watched(c->zk, full,
                                watch ? disco__cache_child_watch_cb : NULL,
                                c->anchor, disco__cache_get_cb, req);
    free(full);
    if (err != 0) {
      disco__cache_req_drop(req);
      disco__cache_fail(c, err, "get");
      break;
    }
    if (watch)
      c->anchor->refs++;
    e->dirty = 0;
    c->pending++;
    c->outstanding++;
    c->stats.reads++;
    c->zk->cache_reads++;
  }
  c->read_from = c->count;
}

/* Waits for room to send reads: holds the round open (outstanding) and
 * the cache (pending) meanwhile. */
static void disco__cache_wait(disco_zk_cache_t *c) {
  disco_zk_t *zk = c->zk;

  if (zk->cache_waiting.next == NULL)
    disco__list_init(&zk->cache_waiting);
  c->waiting = 1;
  c->stats.waits++;
  /* One resumed and short of room again goes back first: a round half
   * read holds its data until it ends. */
  disco__list_insert_tail(
      c->resuming ? zk->cache_waiting.next : &zk->cache_waiting, &c->wait_link);
  c->outstanding++;
  c->pending++;
}

/* Ends the wait of `c`: its reads go on (unless it is closing), then the
 * round's hold is dropped. */
static void disco__cache_unwait(disco_zk_cache_t *c) {
  disco__list_remove(&c->wait_link);
  c->waiting = 0;
  if (!c->closing) {
    c->resuming = 1;
    disco__cache_read_dirty(c);
    c->resuming = 0;
  }
  disco__cache_done(c);
  c->pending--;
  disco__cache_maybe_finish(c);
}

/* A read of the session ended: the caches that wait go on, first come
 * first served, while there is room. */
static void disco__cache_resume(disco_zk_t *zk) {
  disco_zk_cache_t *c;

  zk->cache_reads--;
  while (zk->cache_reads < DISCO__CACHE_MAX_READS &&
         zk->cache_waiting.next != NULL &&
         zk->cache_waiting.next != &zk->cache_waiting) {
    c = disco__container_of(zk->cache_waiting.next, disco_zk_cache_t,
                            wait_link);
    disco__cache_unwait(c);
  }
}

static void disco__cache_exists_cb(disco_zk_t *zk, const disco_zk_result_t *r,
                                   void *data) {
  disco__cache_req_t *req;
  disco_zk_cache_t *c;

  (void)zk;
  req = data;
  c = req->cache;
  if (req->watch && (r->err == 0 || r->err == DISCO_ENONODE)) {
    req->kept = 1;
    c->exists_gen = req->generation;
  }
  if (r->err == 0) {
    c->need_list = 1; /* created in between */
    c->again = 1;
  } else if (r->err != DISCO_ENONODE) {
    disco__cache_fail(c, r->err, "exists");
  }
  disco__cache_done(c);
  disco__cache_result_end(c, req);
}

/* A re-list is matched against the entries through a hash of their names,
 * built for the call: one comparison per child, where a binary search
 * would compare each of thousands of names ("127.0.0.1:20001", long common
 * prefixes) about log2(N) times, twice per child. The index is freed at
 * once: the cache keeps no memory for it. */
typedef struct {
  size_t *slots; /* entry index + 1, 0: empty */
  size_t mask;
} disco__cache_index_t;

static size_t disco__cache_hash(const char *name) {
  size_t h;

  h = (size_t)14695981039346656037ULL;
  while (*name != '\0')
    h = (h ^ (unsigned char)*name++) * (size_t)1099511628211ULL;
  return h;
}

static int disco__cache_index_build(disco__cache_index_t *ix,
                                    const disco_zk_cache_t *c) {
  size_t cap;
  size_t i;
  size_t at;

  cap = 16;
  while (cap < c->count * 2)
    cap *= 2;
  ix->slots = calloc(cap, sizeof(*ix->slots));
  if (ix->slots == NULL)
    return DISCO_ENOMEM;
  ix->mask = cap - 1;
  for (i = 0; i < c->count; i++) {
    at = disco__cache_hash(c->entries[i].name) & ix->mask;
    while (ix->slots[at] != 0)
      at = (at + 1) & ix->mask;
    ix->slots[at] = i + 1;
  }
  return 0;
}

/* The index of entry `name`, or (size_t)-1. */
static size_t disco__cache_index_find(const disco__cache_index_t *ix,
                                      const disco_zk_cache_t *c,
                                      const char *name) {
  size_t at;

  at = disco__cache_hash(name) & ix->mask;
  while (ix->slots[at] != 0) {
    if (strcmp(c->entries[ix->slots[at] - 1].name, name) == 0)
      return ix->slots[at] - 1;
    at = (at + 1) & ix->mask;
  }
  return (size_t)-1;
}

static int disco__cache_name_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Adds the new names `fresh` (none of them an entry), as present() does
 * each: inserted one by one, the thousands of names of a first list would
 * move the sorted array once each, so a batch is sorted and merged in one
 * pass from the end. Nothing changes when memory runs out. */
static int disco__cache_join(disco_zk_cache_t *c, const char **fresh,
                             size_t num_fresh) {
  disco__cache_entry_t *made;
  size_t n;
  size_t i;
  size_t j;
  size_t k;
  size_t w;

  /* Exactly the room the list needs (see reserve()), for both paths. */
  if (disco__cache_reserve(c, c->count + num_fresh) != 0)
    return DISCO_ENOMEM;
  if (num_fresh < 16) {
    for (i = 0; i < num_fresh; i++) {
      if (disco__cache_present(c, fresh[i]) != 0)
        return DISCO_ENOMEM;
    }
    return 0;
  }
  qsort(fresh, num_fresh, sizeof(*fresh), disco__cache_name_cmp);
  made = calloc(num_fresh, sizeof(*made));
  if (made == NULL)
    return DISCO_ENOMEM;
  n = 0;
  for (i = 0; i < num_fresh; i++) {
    if (i > 0 && strcmp(fresh[i - 1], fresh[i]) == 0)
      continue;
    made[n].name = disco__cache_name_dup(fresh[i]);
    if (made[n].name == NULL) {
      while (n > 0)
        disco__cache_name_free(made[--n].name);
      free(made);
      return DISCO_ENOMEM;
    }
    made[n].dirty = 1;
    n++;
  }
  /* A name on the removed list comes back as updated, never added. */
  for (k = 0; k < n && c->num_removed > 0; k++) {
    for (j = 0; j < c->num_removed; j++) {
      if (strcmp(c->removed[j].name, made[k].name) == 0) {
        disco__cache_name_free(made[k].name);
        made[k] = c->removed[j];
        memmove(&c->removed[j], &c->removed[j + 1],
                (c->num_removed - j - 1) * sizeof(*c->removed));
        c->num_removed--;
        made[k].change = DISCO__CHANGE_NONE;
        made[k].watch_gen = 0;
        made[k].dirty = 1;
        break;
      }
    }
  }
  i = c->count;
  j = n;
  w = c->count + n;
  while (j > 0) {
    if (i > 0 && strcmp(c->entries[i - 1].name, made[j - 1].name) > 0)
      c->entries[--w] = c->entries[--i];
    else
      c->entries[--w] = made[--j];
  }
  c->count += n;
  free(made);
  return 0;
}

/* Applies a re-list: the entries it no longer has leave, its new names
 * join, every other entry is marked for a re-read when a recheck is
 * due. */
static int disco__cache_relist(disco_zk_cache_t *c,
                               const disco_zk_result_t *r) {
  disco__cache_index_t ix;
  const char **fresh;
  size_t num_fresh;
  char *seen;
  size_t i;
  size_t j;
  int err;

  if (disco__cache_index_build(&ix, c) != 0)
    return DISCO_ENOMEM;
  seen = calloc(c->count > 0 ? c->count : 1, 1);
  fresh = malloc((r->num_children > 0 ? r->num_children : 1) * sizeof(*fresh));
  if (seen == NULL || fresh == NULL) {
    free(ix.slots);
    free(seen);
    free(fresh);
    return DISCO_ENOMEM;
  }
  num_fresh = 0;
  for (i = 0; i < r->num_children; i++) {
    j = disco__cache_index_find(&ix, c, r->children[i]);
    if (j == (size_t)-1) {
      fresh[num_fresh++] = r->children[i];
    } else {
      seen[j] = 1;
      if (c->recheck)
        c->entries[j].dirty = 1;
    }
  }
  free(ix.slots);
  for (i = c->count; i > 0; i--) {
    if (!seen[i - 1])
      disco__cache_remove_at(c, i - 1);
  }
  free(seen);
  err = disco__cache_join(c, fresh, num_fresh);
  free(fresh);
  return err;
}

static void disco__cache_list_cb(disco_zk_t *zk, const disco_zk_result_t *r,
                                 void *data) {
  disco__cache_req_t *req;
  disco_zk_cache_t *c;
  int err;

  req = data;
  c = req->cache;
  if (r->err == 0 && req->watch) {
    req->kept = 1;
    c->list_gen = req->generation;
  }
  if (c->closing) {
    c->failed = 1;
  } else if (r->err == 0 || r->err == DISCO_ENONODE) {
    if (disco__cache_relist(c, r) != 0) {
      disco__cache_fail(c, DISCO_ENOMEM, "children");
    } else {
      disco__cache_shrink(c);
      c->recheck = 0;
      if (r->err == DISCO_ENONODE && c->exists_gen != disco_zk_generation(zk)) {
        disco__cache_req_t *ex = disco__cache_req_new(c, NULL, 1);
        if (ex == NULL) {
          disco__cache_fail(c, DISCO_ENOMEM, "exists");
        } else if ((err = disco_zk_exists(zk, c->path, disco__cache_watch_cb,
                                          disco__cache_exists_cb, ex)) != 0) {
          disco__cache_req_drop(ex);
          disco__cache_fail(c, err, "exists");
        } else {
          c->pending++;
          c->outstanding++;
        }
      }
      disco__cache_read_dirty(c);
    }
  } else {
    c->need_list = 1;
    disco__cache_fail(c, r->err, "children");
  }
  disco__cache_done(c);
  disco__cache_result_end(c, req);
}

/* -------------------------------------------------------------- rounds */

static void disco__cache_fill(disco_zk_child_t *out,
                              const disco__cache_entry_t *e) {
  out->name = e->name;
  out->data = e->value;
  out->data_len = e->len;
  out->too_large = e->too_large;
  out->stat = e->stat;
}

/* Reports what accumulated, once a round succeeded. */
static void disco__cache_emit(disco_zk_cache_t *c) {
  disco_zk_cache_diff_t diff;
  disco_zk_child_t *added;
  disco_zk_child_t *updated;
  disco_zk_child_t *removed;
  size_t i;

  memset(&diff, 0, sizeof(diff));
  added = calloc(c->count + 1, sizeof(*added));
  updated = calloc(c->count + 1, sizeof(*updated));
  removed = calloc(c->num_removed + 1, sizeof(*removed));
  if (added == NULL || updated == NULL || removed == NULL) {
    free(added);
    free(updated);
    free(removed);
    return; /* stays pending for the next round */
  }
  for (i = 0; i < c->count; i++) {
    disco__cache_entry_t *e = &c->entries[i];
    if (!e->loaded)
      continue;
    if (e->change == DISCO__CHANGE_ADDED)
      disco__cache_fill(&added[diff.num_added++], e);
    else if (e->change == DISCO__CHANGE_UPDATED)
      disco__cache_fill(&updated[diff.num_updated++], e);
    e->change = DISCO__CHANGE_NONE;
    e->reported = 1;
  }
  for (i = 0; i < c->num_removed; i++)
    disco__cache_fill(&removed[diff.num_removed++], &c->removed[i]);
  if (c->loaded && diff.num_added == 0 && diff.num_updated == 0 &&
      diff.num_removed == 0) {
    free(added);
    free(updated);
    free(removed);
    disco__cache_drop_data(c); /* re-read, unchanged */
    return;
  }
  c->loaded = 1;
  diff.added = added;
  diff.updated = updated;
  diff.removed = removed;
  c->stats.diffs++;
  c->pending++; /* the consumer may close the cache from its callback */
  if (c->on_change != NULL)
    c->on_change(c, &diff);
  c->pending--;
  free(added);
  free(updated);
  for (i = 0; i < c->num_removed; i++)
    disco__cache_entry_free(c, &c->removed[i]);
  c->num_removed = 0;
  free(removed);
  /* The consumer holds what it needs of the data now. */
  disco__cache_drop_data(c);
}

static void disco__cache_round_end(disco_zk_cache_t *c) {
  size_t i;
  int dirty;

  c->in_round = 0;
  if (c->closing) {
    disco__cache_maybe_finish(c);
    return;
  }
  if (c->failed && !c->kick)
    return; /* the next CONNECTED (or event) starts over */
  if (c->failed) {
    disco__cache_round(c);
    return;
  }
  c->pending++;
  dirty = 0;
  for (i = 0; i < c->count; i++)
    dirty |= c->entries[i].dirty;
  if (!c->need_list && !dirty)
    disco__cache_emit(c); /* only a settled view is reported */
  if (!c->closing && (c->again || c->need_list || dirty))
    disco__cache_round(c);
  c->pending--;
  disco__cache_maybe_finish(c);
}

static void disco__cache_round(disco_zk_cache_t *c) {
  disco__cache_req_t *req;
  int watch;
  int err;

  if (c->closing)
    return;
  if (c->in_round) {
    c->again = 1;
    return;
  }
  if (disco_zk_state(c->zk) != DISCO_ZK_CONNECTED)
    return; /* the CONNECTED listener starts it */
  c->in_round = 1;
  c->read_from = 0;
  c->again = 0;
  c->kick = 0;
  c->failed = 0;
  c->outstanding = 1; /* this function's own, dropped at the end */
  if (c->need_list) {
    c->need_list = 0;
    watch = c->list_gen != disco_zk_generation(c->zk);
    req = disco__cache_req_new(c, NULL, watch);
    if (req == NULL) {
      c->need_list = 1;
      disco__cache_fail(c, DISCO_ENOMEM, "children");
    } else if ((err = disco_zk_children(c->zk, c->path,
                                        watch ? disco__cache_watch_cb : NULL,
                                        disco__cache_list_cb, req)) != 0) {
      disco__cache_req_drop(req);
      c->need_list = 1;
      disco__cache_fail(c, err, "children");
    } else {
      c->pending++;
      c->outstanding++;
      c->stats.lists++;
    }
  } else {
    disco__cache_read_dirty(c);
  }
  disco__cache_done(c);
}

/* ------------------------------------------------------------- session */

static void disco__cache_state_cb(disco__zk_listener_t *l,
                                  disco_zk_state_t state, uint64_t generation) {
  disco_zk_cache_t *c;

  c = disco__container_of(l, disco_zk_cache_t, listener);
  if (state == DISCO_ZK_CLOSED) {
    disco_zk_cache_close(c);
    return;
  }
  if (state != DISCO_ZK_CONNECTED || c->closing)
    return;
  /* A reconnect of the same session: the library re-sent our watches, but
   * check everything anyway. A new session: its watches are gone; the
   * same full round rebuilds them (watch_gen differs). */
  c->generation = generation;
  c->need_list = 1;
  c->recheck = 1;
  if (c->in_round)
    c->kick = 1;
  c->pending++;
  disco__cache_round(c);
  c->pending--;
  disco__cache_maybe_finish(c);
}

/* --------------------------------------------------------------- public */

int disco_zk_cache_new(disco_zk_t *zk, const char *path, size_t max_data,
                       disco_zk_cache_cb on_change,
                       disco_handle_close_cb close_cb, void *data,
                       disco_zk_cache_t **out) {
  disco_zk_cache_t *c;
  size_t len;

  if (zk == NULL || out == NULL || path == NULL || path[0] != '/')
    return DISCO_EINVAL;
  len = strlen(path);
  if (len > 1 && path[len - 1] == '/')
    return DISCO_EINVAL;
  if (zk->closing)
    return DISCO_ECLOSED;
  c = calloc(1, sizeof(*c));
  if (c == NULL)
    return DISCO_ENOMEM;
  c->path = strdup(path);
  c->anchor = malloc(sizeof(*c->anchor));
  if (c->path == NULL || c->anchor == NULL) {
    free(c->path);
    free(c->anchor);
    free(c);
    return DISCO_ENOMEM;
  }
  c->anchor->cache = c;
  c->anchor->refs = 1;
  c->zk = zk;
  c->max_data = max_data;
  c->keep_data = 1;
  c->on_change = on_change;
  c->close_cb = close_cb;
  c->data = data;
  c->need_list = 1;
  c->generation = disco_zk_generation(zk);
  disco__list_init(&c->reqs);
  disco__list_init(&c->wait_link);
  disco__list_init(&c->listener.link);
  disco__zk_add_state_listener(zk, &c->listener, disco__cache_state_cb);
  *out = c;
  disco__cache_round(c);
  return 0;
}

void disco_zk_cache_close(disco_zk_cache_t *c) {
  if (c == NULL || c->closing)
    return;
  c->closing = 1;
  if (c->waiting)
    disco__cache_unwait(c); /* sends nothing more, ends the round */
  disco__cache_maybe_finish(c);
}

int disco_zk_cache_loaded(const disco_zk_cache_t *c) {
  return c->loaded;
}

size_t disco_zk_cache_count(const disco_zk_cache_t *c) {
  return c->count;
}

int disco_zk_cache_child(const disco_zk_cache_t *c, size_t index,
                         disco_zk_child_t *out) {
  if (index >= c->count)
    return DISCO_ERANGE;
  if (!c->entries[index].reported)
    return DISCO_ENOENT;
  disco__cache_fill(out, &c->entries[index]);
  return 0;
}

void disco_zk_cache_set_keep_data(disco_zk_cache_t *c, int keep) {
  size_t i;

  /* Data already held stays where it was allocated: no switch then. */
  for (i = 0; i < c->count; i++) {
    if (c->entries[i].value != NULL)
      return;
  }
  if (c->num_removed == 0)
    c->keep_data = keep != 0;
}

void disco_zk_cache_set_on_read(disco_zk_cache_t *c,
                                disco_zk_cache_read_cb on_read) {
  c->on_read = on_read;
}

void disco_zk_cache_stats(const disco_zk_cache_t *c,
                          disco_zk_cache_stats_t *stats) {
  *stats = c->stats;
}

const char *disco_zk_cache_path(const disco_zk_cache_t *c) {
  return c->path;
}

void *disco_zk_cache_data(const disco_zk_cache_t *c) {
  return c->data;
}
