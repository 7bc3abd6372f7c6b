/*
 * ctest's runner and helpers: runs every test in CTEST_LIST (or the ones
 * named on the command line) and prints the lines the runner script parses.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ctest.h"

typedef struct {
  const char *name;
  void (*fn)(ctest_t *t);
} ctest_case_t;

static const ctest_case_t ctest_cases[] = {
#define CTEST_ENTRY(name) { #name, test_##name },
  CTEST_LIST(CTEST_ENTRY)
#undef CTEST_ENTRY
};

#define CTEST_COUNT (sizeof(ctest_cases) / sizeof(ctest_cases[0]))

void ctest_fail(ctest_t *t, const char *file, int line, const char *fmt, ...) {
  va_list ap;

  uv_mutex_lock(&t->mutex);
  if (!t->failed) {
    t->failed = 1;
    snprintf(t->where, sizeof(t->where), "%s:%d", file, line);
    va_start(ap, fmt);
    vsnprintf(t->message, sizeof(t->message), fmt, ap);
    va_end(ap);
  }
  uv_mutex_unlock(&t->mutex);
}

int ctest_failed(ctest_t *t) {
  int failed;

  uv_mutex_lock(&t->mutex);
  failed = t->failed;
  uv_mutex_unlock(&t->mutex);
  return failed;
}

typedef struct {
  uv_timer_t timer;
  int expired;
  int closed;
} ctest_watchdog_t;

static void ctest_watchdog_cb(uv_timer_t *timer) {
  ctest_watchdog_t *w;

  w = (ctest_watchdog_t *)timer;
  w->expired = 1;
}

static void ctest_watchdog_close_cb(uv_handle_t *handle) {
  ctest_watchdog_t *w;

  w = (ctest_watchdog_t *)handle;
  w->closed = 1;
}

int ctest_run_until_at(ctest_t *t, const char *file, int line,
                       disco_loop_t *loop, const int *done,
                       uint64_t timeout_ms) {
  ctest_watchdog_t w;
  int i;

  /* A raw libuv timer, so that the watchdog is no core handle and does not
   * disturb what the tests count. It also keeps the loop alive while the
   * test waits on the loop's own queue, which does not. */
  memset(&w, 0, sizeof(w));
  uv_timer_init(&loop->uv, &w.timer);
  uv_timer_start(&w.timer, ctest_watchdog_cb, timeout_ms, 0);
  while (!*done && !w.expired)
    disco_loop_run_once(loop);
  uv_close((uv_handle_t *)&w.timer, ctest_watchdog_close_cb);
  /* A uv_stop() from a test leaves the stop flag set, which makes the next
   * uv_run() return at once; a few runs always see the close through. */
  for (i = 0; i < 10 && !w.closed; i++)
    uv_run(&loop->uv, UV_RUN_NOWAIT);
  if (!w.closed)
    ctest_fail(t, file, line, "watchdog timer did not close");
  if (!*done) {
    ctest_fail(t, file, line, "timed out after %llu ms",
               (unsigned long long)timeout_ms);
    return -1;
  }
  return 0;
}

uint64_t ctest_scaled(uint64_t n, uint64_t min) {
  const char *env;
  unsigned long long div;

  env = getenv("DISCO_CTEST_SCALE");
  div = env != NULL ? strtoull(env, NULL, 10) : 1;
  if (div > 1)
    n /= div;
  return n < min ? min : n;
}

int ctest_capture_begin(ctest_capture_t *capture) {
  FILE *file;

  fflush(stderr);
  capture->saved_fd = -1;
  capture->file_fd = -1;
  file = tmpfile();
  if (file == NULL)
    return -1;
  /* A descriptor of our own, so that the FILE can go right away. */
  capture->file_fd = dup(fileno(file));
  fclose(file);
  capture->saved_fd = dup(STDERR_FILENO);
  if (capture->file_fd < 0 || capture->saved_fd < 0 ||
      dup2(capture->file_fd, STDERR_FILENO) < 0) {
    if (capture->file_fd >= 0)
      close(capture->file_fd);
    if (capture->saved_fd >= 0)
      close(capture->saved_fd);
    return -1;
  }
  return 0;
}

char *ctest_capture_end(ctest_capture_t *capture) {
  char *text;
  off_t size;
  ssize_t n;
  size_t got;

  fflush(stderr);
  dup2(capture->saved_fd, STDERR_FILENO);
  close(capture->saved_fd);
  text = NULL;
  size = lseek(capture->file_fd, 0, SEEK_END);
  if (size >= 0 && lseek(capture->file_fd, 0, SEEK_SET) == 0) {
    text = malloc((size_t)size + 1);
    got = 0;
    while (text != NULL && got < (size_t)size) {
      n = read(capture->file_fd, text + got, (size_t)size - got);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      got += (size_t)n;
    }
    if (text != NULL)
      text[got] = '\0';
  }
  close(capture->file_fd);
  return text;
}

static int ctest_run(const ctest_case_t *c) {
  ctest_t t;

  memset(&t, 0, sizeof(t));
  uv_mutex_init(&t.mutex);
  c->fn(&t);
  if (t.failed)
    printf("FAIL %s: %s: %s\n", c->name, t.where, t.message);
  else
    printf("ok   %s\n", c->name);
  fflush(stdout);
  uv_mutex_destroy(&t.mutex);
  return t.failed;
}

int main(int argc, char **argv) {
  unsigned passed;
  unsigned failed;
  size_t i;
  int a;

  if (argc == 2 && strcmp(argv[1], "--list") == 0) {
    for (i = 0; i < CTEST_COUNT; i++)
      printf("%s\n", ctest_cases[i].name);
    return 0;
  }

  passed = 0;
  failed = 0;
  if (argc < 2) {
    for (i = 0; i < CTEST_COUNT; i++) {
      if (ctest_run(&ctest_cases[i]))
        failed++;
      else
        passed++;
    }
  }
  for (a = 1; a < argc; a++) {
    for (i = 0; i < CTEST_COUNT; i++) {
      if (strcmp(argv[a], ctest_cases[i].name) == 0)
        break;
    }
    if (i == CTEST_COUNT) {
      printf("FAIL %s: %s:%d: no such test (see --list)\n", argv[a], __FILE__,
             __LINE__);
      failed++;
    } else if (ctest_run(&ctest_cases[i])) {
      failed++;
    } else {
      passed++;
    }
  }
  printf("ctest: passed=%u failed=%u\n", passed, failed);
  return failed > 0 ? 1 : 0;
}
