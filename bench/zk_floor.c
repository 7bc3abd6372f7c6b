/*
 * The floor of cold discovery: what reading N instance nodes costs with the
 * raw ZooKeeper mt client and nothing else. One getChildren of the
 * application's path, then N pipelined async getData calls; no parsing.
 *
 *   zk_floor HOSTS PATH RUNS
 *
 * Prints one line per run: "floor_ms <milliseconds> <children read>",
 * timed from the getChildren, then "session_ms <milliseconds>": from
 * zookeeper_init to the connected session. bench/zk_cold_discovery.lua
 * takes the runs on the one session; bench/cold_discovery.lua, whose
 * peers are timed from just before they open their session, adds the
 * session's time to its single run.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zookeeper/zookeeper.h>

typedef struct {
  pthread_mutex_t mutex;
  pthread_cond_t cond;
  int connected;
  int children;
  int done;
  int failed;
} floor_state_t;

static double floor_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void floor_watcher(zhandle_t *zh, int type, int state, const char *path,
                          void *ctx) {
  floor_state_t *s = (floor_state_t *)ctx;
  (void)zh;
  (void)path;
  if (type == ZOO_SESSION_EVENT && state == ZOO_CONNECTED_STATE) {
    pthread_mutex_lock(&s->mutex);
    s->connected = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mutex);
  }
}

static void floor_data_done(int rc, const char *value, int len,
                            const struct Stat *stat, const void *data) {
  floor_state_t *s = (floor_state_t *)data;
  (void)value;
  (void)len;
  (void)stat;
  pthread_mutex_lock(&s->mutex);
  if (rc != ZOK)
    s->failed++;
  s->done++;
  if (s->done == s->children)
    pthread_cond_broadcast(&s->cond);
  pthread_mutex_unlock(&s->mutex);
}

int main(int argc, char **argv) {
  floor_state_t s;
  zhandle_t *zh;
  int runs, run;
  double session_start, session_ms;

  if (argc != 4) {
    fprintf(stderr, "usage: zk_floor HOSTS PATH RUNS\n");
    return 2;
  }
  runs = atoi(argv[3]);
  zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
  memset(&s, 0, sizeof(s));
  pthread_mutex_init(&s.mutex, NULL);
  pthread_cond_init(&s.cond, NULL);
  session_start = floor_now_ms();
  zh = zookeeper_init(argv[1], floor_watcher, 30000, NULL, &s, 0);
  if (zh == NULL) {
    perror("zookeeper_init");
    return 1;
  }
  /* As disco's sessions do (core/zk_session.c): without it the client
   * resolves its host list for every few replies, and the floor would
   * measure getaddrinfo. */
  zoo_set_servers_resolution_delay(zh, 30000);
  pthread_mutex_lock(&s.mutex);
  while (!s.connected)
    pthread_cond_wait(&s.cond, &s.mutex);
  pthread_mutex_unlock(&s.mutex);
  session_ms = floor_now_ms() - session_start;

  for (run = 0; run < runs; run++) {
    struct String_vector names;
    double start = floor_now_ms();
    int i, rc;
    char path[1024];
    rc = zoo_get_children(zh, argv[2], 0, &names);
    if (rc != ZOK) {
      fprintf(stderr, "getChildren %s: %s\n", argv[2], zerror(rc));
      return 1;
    }
    pthread_mutex_lock(&s.mutex);
    s.children = names.count;
    s.done = 0;
    s.failed = 0;
    pthread_mutex_unlock(&s.mutex);
    for (i = 0; i < names.count; i++) {
      snprintf(path, sizeof(path), "%s/%s", argv[2], names.data[i]);
      rc = zoo_aget(zh, path, 0, floor_data_done, &s);
      if (rc != ZOK) {
        fprintf(stderr, "aget: %s\n", zerror(rc));
        return 1;
      }
    }
    pthread_mutex_lock(&s.mutex);
    while (s.done < s.children)
      pthread_cond_wait(&s.cond, &s.mutex);
    pthread_mutex_unlock(&s.mutex);
    printf("floor_ms %.3f %d\n", floor_now_ms() - start, names.count);
    fflush(stdout);
    deallocate_String_vector(&names);
  }
  printf("session_ms %.3f\n", session_ms);
  zookeeper_close(zh);
  return s.failed == 0 ? 0 : 1;
}
