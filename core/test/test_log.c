/*
 * The logger: level filtering, sinks called on the loop thread (also for
 * messages logged on other threads), truncation, the stderr format and the
 * fallback to stderr once the loop is gone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ctest.h"

#define TEST_LOG_MAX_RECORDS 16
#define TEST_LOG_THREADS 4

typedef struct {
  disco_log_level_t level;
  char component[32];
  char msg[DISCO_LOG_MAX_MESSAGE + 1];
  int on_thread;
} test_log_record_t;

/* A sink that keeps what it receives. */
typedef struct {
  disco_loop_t *loop;
  int count;
  test_log_record_t records[TEST_LOG_MAX_RECORDS];
} test_log_sink_t;

static void test_log_sink(void *ud, disco_log_level_t level,
                          const char *component, const char *msg) {
  test_log_sink_t *sink;
  test_log_record_t *r;

  sink = ud;
  if (sink->count < TEST_LOG_MAX_RECORDS) {
    r = &sink->records[sink->count];
    r->level = level;
    snprintf(r->component, sizeof(r->component), "%s", component);
    snprintf(r->msg, sizeof(r->msg), "%s", msg);
    r->on_thread = disco_loop_on_thread(sink->loop);
  }
  sink->count++;
}

void test_log_level_names(ctest_t *t) {
  static const char *const names[] = { "error", "warn", "info", "debug",
                                       "trace" };
  disco_log_level_t level;
  int i;

  for (i = DISCO_LOG_ERROR; i <= DISCO_LOG_TRACE; i++) {
    ASSERT_STR_EQ(t, disco_log_level_name((disco_log_level_t)i), names[i]);
    level = DISCO_LOG_ERROR;
    ASSERT_OK(t, disco_log_level_parse(names[i], &level));
    ASSERT_EQ(t, level, i);
  }
  ASSERT_OK(t, disco_log_level_parse("WARN", &level));
  ASSERT_EQ(t, level, DISCO_LOG_WARN);
  level = DISCO_LOG_TRACE;
  ASSERT_EQ(t, disco_log_level_parse("verbose", &level), DISCO_EINVAL);
  ASSERT_EQ(t, disco_log_level_parse("", &level), DISCO_EINVAL);
  ASSERT_EQ(t, disco_log_level_parse(NULL, &level), DISCO_EINVAL);
  ASSERT_EQ(t, level, DISCO_LOG_TRACE);
  ASSERT_STR_EQ(t, disco_log_level_name((disco_log_level_t)99), "unknown");
}

/* Restores DISCO_LOG_LEVEL as the test found it. */
static void test_log_restore_env(const char *saved) {
  if (saved != NULL)
    setenv("DISCO_LOG_LEVEL", saved, 1);
  else
    unsetenv("DISCO_LOG_LEVEL");
}

void test_log_level_from_env(ctest_t *t) {
  static const struct {
    const char *env;
    disco_log_level_t level;
  } cases[] = {
    { "debug", DISCO_LOG_DEBUG },
    { "ERROR", DISCO_LOG_ERROR },
    { "bogus", DISCO_LOG_INFO },
    { NULL, DISCO_LOG_INFO },
  };
  char saved_buf[64];
  const char *saved;
  disco_loop_t loop;
  disco_log_level_t got;
  size_t i;
  int err;

  saved = getenv("DISCO_LOG_LEVEL");
  if (saved != NULL) {
    snprintf(saved_buf, sizeof(saved_buf), "%s", saved);
    saved = saved_buf;
  }
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    if (cases[i].env != NULL)
      setenv("DISCO_LOG_LEVEL", cases[i].env, 1);
    else
      unsetenv("DISCO_LOG_LEVEL");
    err = disco_loop_init(&loop);
    test_log_restore_env(saved);
    ASSERT_OK(t, err);
    got = disco_log_get_level(&loop);
    ASSERT_OK(t, disco_loop_close(&loop));
    ASSERT_EQ(t, got, cases[i].level);
  }
}

void test_log_level_filter(ctest_t *t) {
  test_log_sink_t sink;
  disco_loop_t loop;

  memset(&sink, 0, sizeof(sink));
  ASSERT_OK(t, disco_loop_init(&loop));
  sink.loop = &loop;
  disco_log_set_sink(&loop, test_log_sink, &sink);

  disco_log_set_level(&loop, DISCO_LOG_WARN);
  ASSERT_EQ(t, disco_log_get_level(&loop), DISCO_LOG_WARN);
  disco_log(&loop, DISCO_LOG_ERROR, "t", "error");
  disco_log(&loop, DISCO_LOG_WARN, "t", "warn");
  disco_log(&loop, DISCO_LOG_INFO, "t", "info");
  disco_log(&loop, DISCO_LOG_DEBUG, "t", "debug");
  disco_log(&loop, DISCO_LOG_TRACE, "t", "trace");
  ASSERT_EQ(t, sink.count, 2);
  ASSERT_EQ(t, sink.records[0].level, DISCO_LOG_ERROR);
  ASSERT_STR_EQ(t, sink.records[0].msg, "error");
  ASSERT_EQ(t, sink.records[1].level, DISCO_LOG_WARN);
  ASSERT_STR_EQ(t, sink.records[1].msg, "warn");

  disco_log_set_level(&loop, DISCO_LOG_TRACE);
  disco_log(&loop, DISCO_LOG_TRACE, "t", "trace");
  ASSERT_EQ(t, sink.count, 3);
  ASSERT_EQ(t, sink.records[2].level, DISCO_LOG_TRACE);

  disco_log_set_level(&loop, DISCO_LOG_ERROR);
  disco_log(&loop, DISCO_LOG_WARN, "t", "warn");
  ASSERT_EQ(t, sink.count, 3);

  ASSERT_OK(t, disco_loop_close(&loop));
}

void test_log_sink_on_loop_thread(ctest_t *t) {
  ctest_capture_t capture;
  test_log_sink_t sink;
  disco_loop_t loop;
  char *text;

  memset(&sink, 0, sizeof(sink));
  ASSERT_OK(t, disco_loop_init(&loop));
  disco_log_set_level(&loop, DISCO_LOG_INFO);
  sink.loop = &loop;
  disco_log_set_sink(&loop, test_log_sink, &sink);

  disco_log(&loop, DISCO_LOG_INFO, "registry", "hello %s %d", "world", 42);
  ASSERT_EQ(t, sink.count, 1);
  ASSERT_EQ(t, sink.records[0].level, DISCO_LOG_INFO);
  ASSERT_STR_EQ(t, sink.records[0].component, "registry");
  ASSERT_STR_EQ(t, sink.records[0].msg, "hello world 42");
  ASSERT(t, sink.records[0].on_thread);

  /* A NULL sink restores the default, which writes to stderr. */
  disco_log_set_sink(&loop, NULL, NULL);
  ASSERT_OK(t, ctest_capture_begin(&capture));
  disco_log(&loop, DISCO_LOG_WARN, "registry", "to stderr %d", 7);
  text = ctest_capture_end(&capture);
  ASSERT(t, text != NULL);
  ASSERT(t, strstr(text, " WARN  [registry] to stderr 7\n") != NULL);
  free(text);
  ASSERT_EQ(t, sink.count, 1);

  ASSERT_OK(t, disco_loop_close(&loop));
}

void test_log_truncation(ctest_t *t) {
  test_log_sink_t sink;
  disco_loop_t loop;
  const char *got;
  char *long_msg;
  size_t i;

  memset(&sink, 0, sizeof(sink));
  long_msg = malloc(DISCO_LOG_MAX_MESSAGE + 1000);
  ASSERT(t, long_msg != NULL);
  ASSERT_OK(t, disco_loop_init(&loop));
  disco_log_set_level(&loop, DISCO_LOG_INFO);
  sink.loop = &loop;
  disco_log_set_sink(&loop, test_log_sink, &sink);

  /* Exactly the limit: kept whole. */
  memset(long_msg, 'a', DISCO_LOG_MAX_MESSAGE);
  long_msg[DISCO_LOG_MAX_MESSAGE] = '\0';
  disco_log(&loop, DISCO_LOG_INFO, "t", "%s", long_msg);
  /* One byte over: cut to the limit, ending in "...". */
  long_msg[DISCO_LOG_MAX_MESSAGE] = 'b';
  long_msg[DISCO_LOG_MAX_MESSAGE + 1] = '\0';
  disco_log(&loop, DISCO_LOG_INFO, "t", "%s", long_msg);
  /* A two-byte UTF-8 character straddling the cut is dropped whole. */
  memset(long_msg, 'a', DISCO_LOG_MAX_MESSAGE + 100);
  long_msg[DISCO_LOG_MAX_MESSAGE - 4] = (char)0xC3;
  long_msg[DISCO_LOG_MAX_MESSAGE - 3] = (char)0xA9;
  long_msg[DISCO_LOG_MAX_MESSAGE + 100] = '\0';
  disco_log(&loop, DISCO_LOG_INFO, "t", "%s", long_msg);

  ASSERT_EQ(t, sink.count, 3);
  got = sink.records[0].msg;
  ASSERT_EQ(t, strlen(got), DISCO_LOG_MAX_MESSAGE);
  ASSERT_EQ(t, got[DISCO_LOG_MAX_MESSAGE - 1], 'a');

  got = sink.records[1].msg;
  ASSERT_EQ(t, strlen(got), DISCO_LOG_MAX_MESSAGE);
  ASSERT_STR_EQ(t, got + DISCO_LOG_MAX_MESSAGE - 3, "...");
  for (i = 0; i < DISCO_LOG_MAX_MESSAGE - 3; i++)
    ASSERT_EQ(t, got[i], 'a');

  got = sink.records[2].msg;
  ASSERT_EQ(t, strlen(got), DISCO_LOG_MAX_MESSAGE - 1);
  ASSERT_STR_EQ(t, got + DISCO_LOG_MAX_MESSAGE - 4, "...");
  ASSERT_EQ(t, got[DISCO_LOG_MAX_MESSAGE - 5], 'a');

  free(long_msg);
  ASSERT_OK(t, disco_loop_close(&loop));
}

/* ------------------------------------------------ logging from threads */

typedef struct {
  ctest_t *t;
  disco_loop_t *loop;
  int per_thread;
  int total;
  int received;
  int done;
  int next[TEST_LOG_THREADS];
} test_log_threads_t;

typedef struct {
  test_log_threads_t *ctx;
  int id;
  uv_thread_t thread;
} test_log_worker_t;

static void test_log_threads_sink(void *ud, disco_log_level_t level,
                                  const char *component, const char *msg) {
  test_log_threads_t *ctx;
  int id;
  int seq;

  ctx = ud;
  ctx->received++;
  if (ctx->received == ctx->total)
    ctx->done = 1;
  ASSERT(ctx->t, disco_loop_on_thread(ctx->loop));
  ASSERT_EQ(ctx->t, level, DISCO_LOG_INFO);
  ASSERT_STR_EQ(ctx->t, component, "worker");
  ASSERT_EQ(ctx->t, sscanf(msg, "thread %d message %d", &id, &seq), 2);
  ASSERT(ctx->t, id >= 0 && id < TEST_LOG_THREADS);
  /* Each thread's messages arrive in the order it logged them. */
  ASSERT_EQ(ctx->t, seq, ctx->next[id]);
  ctx->next[id]++;
}

static void test_log_worker(void *arg) {
  test_log_worker_t *w;
  int i;

  w = arg;
  for (i = 0; i < w->ctx->per_thread; i++)
    disco_log(w->ctx->loop, DISCO_LOG_INFO, "worker", "thread %d message %d",
              w->id, i);
  /* Filtered out on this thread already: never reaches the sink. */
  disco_log(w->ctx->loop, DISCO_LOG_DEBUG, "worker", "dropped");
}

void test_log_from_threads(ctest_t *t) {
  test_log_worker_t workers[TEST_LOG_THREADS];
  test_log_threads_t ctx;
  disco_loop_t loop;
  int i;

  memset(&ctx, 0, sizeof(ctx));
  ASSERT_OK(t, disco_loop_init(&loop));
  disco_log_set_level(&loop, DISCO_LOG_INFO);
  ctx.t = t;
  ctx.loop = &loop;
  ctx.per_thread = 2000;
  ctx.total = ctx.per_thread * TEST_LOG_THREADS;
  disco_log_set_sink(&loop, test_log_threads_sink, &ctx);

  for (i = 0; i < TEST_LOG_THREADS; i++) {
    workers[i].ctx = &ctx;
    workers[i].id = i;
    ASSERT_OK(
        t, uv_thread_create(&workers[i].thread, test_log_worker, &workers[i]));
  }
  ctest_run_until(t, &loop, &ctx.done, 60000);
  for (i = 0; i < TEST_LOG_THREADS; i++)
    uv_thread_join(&workers[i].thread);
  /* Nothing more may arrive: run the loop once more to be sure. */
  disco_loop_run_nowait(&loop);

  ASSERT_EQ(t, ctx.received, ctx.total);
  for (i = 0; i < TEST_LOG_THREADS; i++)
    ASSERT_EQ(t, ctx.next[i], ctx.per_thread);
  ASSERT_OK(t, disco_loop_close(&loop));
}

void test_log_stderr_format(ctest_t *t) {
  static const char *const prefix = "YYYY-MM-DDTHH:MM:SS.mmmZ";
  ctest_capture_t capture;
  struct tm tm;
  time_t stamp;
  struct timespec before;
  struct timespec after;
  char *text;
  size_t i;

  /* The sink's clock, not time(): glibc's time() reads a coarser clock that
   * can still be in the previous second. */
  clock_gettime(CLOCK_REALTIME, &before);
  ASSERT_OK(t, ctest_capture_begin(&capture));
  disco_log_stderr_sink(NULL, DISCO_LOG_WARN, "comp", "the message");
  disco_log_stderr_sink(NULL, DISCO_LOG_ERROR, "comp", "second");
  text = ctest_capture_end(&capture);
  clock_gettime(CLOCK_REALTIME, &after);
  ASSERT(t, text != NULL);

  /* "2026-11-21T10:00:00.123Z WARN  [comp] the message\n" */
  ASSERT(t, strlen(text) > strlen(prefix));
  for (i = 0; prefix[i] != '\0'; i++) {
    if (strchr("YMDHSm", prefix[i]) != NULL)
      ASSERT(t, text[i] >= '0' && text[i] <= '9');
    else
      ASSERT_EQ(t, text[i], prefix[i]);
  }
  ASSERT(t, strncmp(text + strlen(prefix), " WARN  [comp] the message\n", 26) ==
                0);
  ASSERT(t, strstr(text, "Z ERROR [comp] second\n") != NULL);
  ASSERT_EQ(t, text[strlen(text) - 1], '\n');

  /* The stamp is UTC and current. */
  memset(&tm, 0, sizeof(tm));
  ASSERT(t, strptime(text, "%Y-%m-%dT%H:%M:%S", &tm) != NULL);
  stamp = timegm(&tm);
  ASSERT_CMP(t, stamp, >=, before.tv_sec);
  ASSERT_CMP(t, stamp, <=, after.tv_sec);
  free(text);
}

/* ------------------------------------------- logging after loop close */

typedef struct {
  disco_loop_t *loop;
  const char *text;
} test_log_late_t;

static void test_log_late_worker(void *arg) {
  test_log_late_t *late;

  late = arg;
  disco_log(late->loop, DISCO_LOG_WARN, "after-close", "%s", late->text);
}

void test_log_after_close(ctest_t *t) {
  ctest_capture_t capture;
  test_log_late_t late;
  uv_thread_t thread;
  test_log_sink_t sink;
  disco_loop_t loop;
  char *text;

  memset(&sink, 0, sizeof(sink));
  ASSERT_OK(t, disco_loop_init(&loop));
  disco_log_set_level(&loop, DISCO_LOG_INFO);
  sink.loop = &loop;
  disco_log_set_sink(&loop, test_log_sink, &sink);
  late.loop = &loop;

  /* Queued while the loop does not run: when the loop closes, the message
   * is canceled and written to stderr rather than lost. */
  late.text = "queued before close";
  ASSERT_OK(t, uv_thread_create(&thread, test_log_late_worker, &late));
  uv_thread_join(&thread);
  ASSERT_OK(t, ctest_capture_begin(&capture));
  ASSERT_OK(t, disco_loop_close(&loop));
  text = ctest_capture_end(&capture);
  ASSERT(t, text != NULL);
  ASSERT(t, strstr(text, " WARN  [after-close] queued before close\n") != NULL);
  free(text);

  /* After close, a thread's message falls back to stderr directly. */
  late.text = "logged after close";
  ASSERT_OK(t, ctest_capture_begin(&capture));
  ASSERT_OK(t, uv_thread_create(&thread, test_log_late_worker, &late));
  uv_thread_join(&thread);
  text = ctest_capture_end(&capture);
  ASSERT(t, text != NULL);
  ASSERT(t, strstr(text, " WARN  [after-close] logged after close\n") != NULL);
  free(text);
  ASSERT_EQ(t, sink.count, 0);

  /* On the loop thread the sink is still called directly. */
  disco_log(&loop, DISCO_LOG_WARN, "after-close", "on the loop thread");
  ASSERT_EQ(t, sink.count, 1);
  ASSERT_STR_EQ(t, sink.records[0].msg, "on the loop thread");
  ASSERT_OK(t, disco_loop_close(&loop));
}
