/*
 * The queue probe: real threads push tagged items through a queue of its own
 * and the loop thread checks that each producer's items arrive once each and
 * in order. A diagnostic for the demo and the Lua specs.
 *
 * Each producer ends with a marker item. The queue keeps each producer's
 * order, so once every marker has arrived nothing more can come: the probe
 * then knows its counts are final even if items were lost, and the producer
 * threads have finished pushing, so joining them does not stall the loop.
 *
 * Producers wait (never the loop) while DISCO__PROBE_WINDOW items are in
 * flight: 64 producers of 10,000,000 items each would otherwise fill memory
 * whenever the loop thread drains more slowly than they push.
 */
#include <stdlib.h>

#include "internal.h"

#define DISCO__PROBE_MAX_PRODUCERS 64
#define DISCO__PROBE_MAX_PER_PRODUCER 10000000
#define DISCO__PROBE_WINDOW 65536

typedef struct disco__probe_s disco__probe_t;

/* One producer thread's state. */
typedef struct {
  disco__probe_t *probe;
  uint32_t id;
  uv_thread_t thread;
  /* Pushed last. Lives here rather than on the heap so that a producer can
   * always end its stream, even when malloc fails. */
  disco_qitem_t marker;
} disco__probe_producer_t;

struct disco__probe_s {
  disco_queue_t *queue;
  disco_queue_probe_cb cb;
  void *data;
  unsigned producers;
  unsigned started;  /* threads created, joined later */
  unsigned finished; /* markers that came back */
  uint64_t per_producer;
  uint64_t *next_seq; /* per producer: the sequence expected next */
  int joined;
  int failed; /* start failed: the close callback reports nothing */
  uint64_t start_ns;
  disco_queue_probe_result_t result;
  disco__probe_producer_t *producer;
  /* Flow control between the producers and the loop thread. */
  uv_mutex_t mutex;
  uv_cond_t cond; /* broadcast when the window drains to half, or on stop */
  int in_flight;  /* atomic: items pushed whose callback has not run */
  int stop;       /* atomic: producers stop pushing early */
};

/* One tagged item. */
typedef struct {
  disco_qitem_t item;
  disco__probe_t *probe;
  uint32_t producer;
  uint64_t seq;
} disco__probe_item_t;

/* Any thread. Wakes producers waiting for room or for the stop flag. */
static void disco__probe_wake(disco__probe_t *probe) {
  uv_mutex_lock(&probe->mutex);
  uv_cond_broadcast(&probe->cond);
  uv_mutex_unlock(&probe->mutex);
}

/* Producer thread. Returns once the window has room or the probe stops. */
static void disco__probe_wait_for_room(disco__probe_t *probe) {
  if (disco__atomic_load(&probe->in_flight) < DISCO__PROBE_WINDOW)
    return;
  /*
   * Checked again under the mutex. The count only falls to half the window
   * after this check, and the loop thread broadcasts under the same mutex
   * once it does, so the wake-up cannot be missed.
   */
  uv_mutex_lock(&probe->mutex);
  while (disco__atomic_load(&probe->in_flight) >= DISCO__PROBE_WINDOW &&
         !disco__atomic_load(&probe->stop))
    uv_cond_wait(&probe->cond, &probe->mutex);
  uv_mutex_unlock(&probe->mutex);
}

static void disco__probe_item_cb(disco_qitem_t *qitem, int status) {
  disco__probe_item_t *item;
  disco__probe_t *probe;
  uint64_t *next;

  item = disco__container_of(qitem, disco__probe_item_t, item);
  probe = item->probe;
  if (status == 0) {
    probe->result.received++;
    next = &probe->next_seq[item->producer];
    if (item->seq == *next) {
      (*next)++;
    } else if (item->seq > *next) {
      /* The items skipped over count as missing unless they turn up. */
      probe->result.out_of_order++;
      *next = item->seq + 1;
    } else {
      probe->result.duplicates++;
    }
  }
  free(item);
  if (disco__atomic_sub(&probe->in_flight, 1) == DISCO__PROBE_WINDOW / 2)
    disco__probe_wake(probe);
}

static void disco__probe_join(disco__probe_t *probe) {
  unsigned i;

  if (probe->joined)
    return;
  probe->joined = 1;
  for (i = 0; i < probe->started; i++)
    uv_thread_join(&probe->producer[i].thread);
}

/* Stops the producers that may still run and waits for them. */
static void disco__probe_stop(disco__probe_t *probe) {
  disco__atomic_store(&probe->stop, 1);
  disco__probe_wake(probe);
  disco__probe_join(probe);
}

static void disco__probe_finish(disco__probe_t *probe) {
  disco_queue_probe_result_t *r;
  disco_queue_stats_t stats;
  uint64_t expected;
  uint64_t unique;

  r = &probe->result;
  if (r->elapsed_ms == 0)
    r->elapsed_ms = (double)(uv_hrtime() - probe->start_ns) / 1e6;
  disco_queue_stats(probe->queue, &stats);
  r->wakeups = stats.wakeups;
  expected = r->producers * r->per_producer;
  unique = r->received - r->duplicates;
  r->missing = unique < expected ? expected - unique : 0;
}

static void disco__probe_marker_cb(disco_qitem_t *qitem, int status) {
  disco__probe_producer_t *producer;
  disco__probe_t *probe;

  producer = disco__container_of(qitem, disco__probe_producer_t, marker);
  probe = producer->probe;
  probe->finished++;
  if (status != 0 || probe->finished < probe->started)
    return;
  probe->result.elapsed_ms = (double)(uv_hrtime() - probe->start_ns) / 1e6;
  /* Every producer has pushed its last item: the joins return at once. */
  disco__probe_join(probe);
  disco_queue_close(probe->queue);
}

static void disco__probe_free(disco__probe_t *probe) {
  uv_cond_destroy(&probe->cond);
  uv_mutex_destroy(&probe->mutex);
  free(probe->next_seq);
  free(probe->producer);
  free(probe);
}

static void disco__probe_close_cb(disco_queue_t *queue, void *data) {
  disco__probe_t *probe;

  (void)queue;
  probe = data;
  /* Closed early (by disco_loop_close()): producers still running see
   * DISCO_ECLOSED on their next push, or the stop flag while they wait. */
  disco__probe_stop(probe);
  if (!probe->failed) {
    disco__probe_finish(probe);
    probe->cb(&probe->result, probe->data);
  }
  disco__probe_free(probe);
}

static void disco__probe_producer_run(void *arg) {
  disco__probe_producer_t *producer;
  disco__probe_item_t *item;
  disco__probe_t *probe;
  uint64_t seq;

  producer = arg;
  probe = producer->probe;
  for (seq = 0; seq < probe->per_producer; seq++) {
    disco__probe_wait_for_room(probe);
    if (disco__atomic_load(&probe->stop))
      break;
    item = malloc(sizeof(*item));
    if (item == NULL)
      break;
    item->item.cb = disco__probe_item_cb;
    item->probe = probe;
    item->producer = producer->id;
    item->seq = seq;
    /* Counted before the push, so that the loop never sees it negative. */
    disco__atomic_add(&probe->in_flight, 1);
    if (disco_queue_push(probe->queue, &item->item) != 0) {
      disco__atomic_sub(&probe->in_flight, 1);
      free(item);
      break;
    }
  }
  /* Refused only when the queue is closing, and then nobody waits for it. */
  disco_queue_push(probe->queue, &producer->marker);
  disco_queue_release(probe->queue);
}

/* Frees a probe whose queue was never created. */
static int disco__probe_abort(disco__probe_t *probe, int err) {
  free(probe->next_seq);
  free(probe->producer);
  free(probe);
  return err;
}

int disco_queue_probe_start(disco_loop_t *loop, unsigned producers,
                            uint64_t per_producer, disco_queue_probe_cb cb,
                            void *data) {
  disco__probe_t *probe;
  unsigned i;
  int err;

  if (loop == NULL || cb == NULL || producers < 1 ||
      producers > DISCO__PROBE_MAX_PRODUCERS || per_producer < 1 ||
      per_producer > DISCO__PROBE_MAX_PER_PRODUCER)
    return DISCO_EINVAL;
  probe = calloc(1, sizeof(*probe));
  if (probe == NULL)
    return DISCO_ENOMEM;
  probe->next_seq = calloc(producers, sizeof(*probe->next_seq));
  probe->producer = calloc(producers, sizeof(*probe->producer));
  if (probe->next_seq == NULL || probe->producer == NULL)
    return disco__probe_abort(probe, DISCO_ENOMEM);
  err = uv_mutex_init(&probe->mutex);
  if (err != 0)
    return disco__probe_abort(probe, disco_translate_uv_error(err));
  err = uv_cond_init(&probe->cond);
  if (err != 0) {
    uv_mutex_destroy(&probe->mutex);
    return disco__probe_abort(probe, disco_translate_uv_error(err));
  }
  probe->cb = cb;
  probe->data = data;
  probe->producers = producers;
  probe->per_producer = per_producer;
  probe->result.producers = producers;
  probe->result.per_producer = per_producer;
  err = disco_queue_new(loop, disco__probe_close_cb, probe, &probe->queue);
  if (err != 0) {
    uv_cond_destroy(&probe->cond);
    uv_mutex_destroy(&probe->mutex);
    return disco__probe_abort(probe, err);
  }

  probe->start_ns = uv_hrtime();
  for (i = 0; i < producers; i++) {
    probe->producer[i].probe = probe;
    probe->producer[i].id = i;
    probe->producer[i].marker.cb = disco__probe_marker_cb;
    /* Each producer holds a reference of its own: it may still push (and
     * be refused) after the loop closed the queue. */
    disco_queue_retain(probe->queue);
    err = uv_thread_create(&probe->producer[i].thread,
                           disco__probe_producer_run, &probe->producer[i]);
    if (err != 0) {
      disco_queue_release(probe->queue);
      break;
    }
    probe->started++;
  }
  if (err != 0) {
    /* A call that fails never runs its callback: stop the producers that did
     * start, then let the close callback free everything quietly. */
    probe->failed = 1;
    disco__probe_stop(probe);
    disco_queue_close(probe->queue);
    return disco_translate_uv_error(err);
  }
  return 0;
}
