/*
 * File-system event watches: a file written in a watched directory is
 * reported by name with a RENAME or CHANGE mask; restart moves the watch;
 * a missing path fails without a callback; nothing is reported after stop
 * or close; ref/unref; loop close closes an open watch.
 *
 * Each test works in its own directory under /tmp, which the test removes
 * whether it passed or not.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctest.h"

/* How long a test waits for an event that must come. */
#define TEST_FS_EVENT_WAIT_MS 2000

typedef struct {
  ctest_t *t;
  disco_loop_t *loop;
  disco_fs_event_t *fs;
  const char *name; /* the entry the test expects to hear about */
  int calls;        /* every callback */
  int received;     /* callbacks about `name` */
  int events;       /* the union of the masks about `name` */
  int bad_mask;     /* callbacks with an empty or unknown mask */
  int status;       /* the last non-zero status */
  int on_thread;    /* every callback ran on the loop thread */
  int close_in_cb;  /* close the watch from its first callback */
  int closed;
} test_fs_event_ctx_t;

static void test_fs_event_ctx_init(test_fs_event_ctx_t *ctx, ctest_t *t,
                                   disco_loop_t *loop, const char *name) {
  memset(ctx, 0, sizeof(*ctx));
  ctx->t = t;
  ctx->loop = loop;
  ctx->name = name;
  ctx->on_thread = 1;
}

static void test_fs_event_close_cb(void *handle, void *data) {
  test_fs_event_ctx_t *ctx;

  ctx = data;
  ASSERT(ctx->t, handle == ctx->fs);
  ctx->closed++;
}

static void test_fs_event_cb(disco_fs_event_t *fs, const char *filename,
                             int events, int status) {
  test_fs_event_ctx_t *ctx;

  ctx = disco_fs_event_data(fs);
  ASSERT(ctx->t, fs == ctx->fs);
  ctx->calls++;
  if (!disco_loop_on_thread(ctx->loop))
    ctx->on_thread = 0;
  if (status != 0)
    ctx->status = status;
  if (events == 0 || (events & ~(DISCO_FS_RENAME | DISCO_FS_CHANGE)) != 0)
    ctx->bad_mask++;
  if (filename != NULL && strcmp(filename, ctx->name) == 0) {
    ctx->received++;
    ctx->events |= events;
  }
  if (ctx->close_in_cb)
    disco_fs_event_close(fs);
}

/* ------------------------------------------------ temporary directories */

static int test_fs_event_mkdtemp(char *dir, size_t size) {
  if (snprintf(dir, size, "/tmp/disco-fs-event.XXXXXX") >= (int)size)
    return -1;
  return mkdtemp(dir) != NULL ? 0 : -1;
}

/* Removes `dir` and everything in it (files and directories are all a
 * test creates). */
static int test_fs_event_rmtree(const char *dir) {
  struct dirent *entry;
  struct stat st;
  char path[512];
  DIR *d;

  d = opendir(dir);
  if (d == NULL)
    return -1;
  while ((entry = readdir(d)) != NULL) {
    if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
      continue;
    snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
    if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
      test_fs_event_rmtree(path);
    else
      unlink(path);
  }
  closedir(d);
  return rmdir(dir);
}

/* Creates (or truncates) dir/name and writes a line to it. */
static int test_fs_event_write(const char *dir, const char *name) {
  static const char text[] = "changed\n";
  char path[512];
  ssize_t n;
  int fd;

  snprintf(path, sizeof(path), "%s/%s", dir, name);
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0)
    return -1;
  n = write(fd, text, sizeof(text) - 1);
  close(fd);
  return n == (ssize_t)(sizeof(text) - 1) ? 0 : -1;
}

/* Runs `body` with a fresh directory, then removes it, even when `body`
 * failed an assertion (which returns from `body` only). */
static void test_fs_event_in_tmpdir(ctest_t *t,
                                    void (*body)(ctest_t *t, const char *dir)) {
  char dir[64];

  ASSERT_EQ(t, test_fs_event_mkdtemp(dir, sizeof(dir)), 0);
  body(t, dir);
  ASSERT_EQ(t, test_fs_event_rmtree(dir), 0);
}

/* ------------------------------------------------------------ the tests */

static void test_fs_event_change_body(ctest_t *t, const char *dir) {
  test_fs_event_ctx_t ctx;
  disco_loop_t loop;

  ASSERT_OK(t, disco_loop_init(&loop));
  test_fs_event_ctx_init(&ctx, t, &loop, "hello.txt");
  ASSERT_OK(t,
            disco_fs_event_new(&loop, test_fs_event_close_cb, &ctx, &ctx.fs));
  ASSERT(t, disco_fs_event_data(ctx.fs) == &ctx);
  ASSERT_EQ(t, disco_fs_event_start(ctx.fs, NULL, dir), DISCO_EINVAL);
  ASSERT_EQ(t, disco_fs_event_start(ctx.fs, test_fs_event_cb, NULL),
            DISCO_EINVAL);
  ASSERT_EQ(t, disco_loop_alive(&loop), 0);
  ASSERT_OK(t, disco_fs_event_start(ctx.fs, test_fs_event_cb, dir));
  /* A started watch keeps the loop alive. */
  ASSERT(t, disco_loop_alive(&loop));
  ASSERT_EQ(t, test_fs_event_write(dir, "hello.txt"), 0);
  ctest_run_until(t, &loop, &ctx.received, TEST_FS_EVENT_WAIT_MS);
  ASSERT_CMP(t, ctx.received, >=, 1);
  ASSERT(t, (ctx.events & (DISCO_FS_RENAME | DISCO_FS_CHANGE)) != 0);
  ASSERT_EQ(t, ctx.bad_mask, 0);
  ASSERT_EQ(t, ctx.status, 0);
  ASSERT(t, ctx.on_thread);
  disco_fs_event_close(ctx.fs);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx.closed, 1);
}

void test_fs_event_change(ctest_t *t) {
  test_fs_event_in_tmpdir(t, test_fs_event_change_body);
}

static void test_fs_event_restart_body(ctest_t *t, const char *dir) {
  test_fs_event_ctx_t ctx;
  disco_loop_t loop;
  char sub[512];

  snprintf(sub, sizeof(sub), "%s/sub", dir);
  ASSERT_EQ(t, mkdir(sub, 0755), 0);
  ASSERT_OK(t, disco_loop_init(&loop));
  test_fs_event_ctx_init(&ctx, t, &loop, "moved.txt");
  ASSERT_OK(t,
            disco_fs_event_new(&loop, test_fs_event_close_cb, &ctx, &ctx.fs));
  ASSERT_OK(t, disco_fs_event_start(ctx.fs, test_fs_event_cb, dir));
  /* Restarting moves the watch: the old path is no longer watched. */
  ASSERT_OK(t, disco_fs_event_start(ctx.fs, test_fs_event_cb, sub));
  ASSERT_EQ(t, test_fs_event_write(dir, "old.txt"), 0);
  ASSERT_EQ(t, test_fs_event_write(sub, "moved.txt"), 0);
  ctest_run_until(t, &loop, &ctx.received, TEST_FS_EVENT_WAIT_MS);
  /* inotify delivers in order: an event about old.txt would have come
   * first. */
  ASSERT_EQ(t, ctx.calls, ctx.received);
  /* A restart that fails leaves the watch stopped. */
  ASSERT_EQ(t, disco_fs_event_start(ctx.fs, test_fs_event_cb, "/nonexistent"),
            DISCO_ENOENT);
  ASSERT_EQ(t, disco_loop_alive(&loop), 0);
  disco_fs_event_close(ctx.fs);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_OK(t, disco_loop_close(&loop));
}

void test_fs_event_restart(ctest_t *t) {
  test_fs_event_in_tmpdir(t, test_fs_event_restart_body);
}

static void test_fs_event_missing_path_body(ctest_t *t, const char *dir) {
  test_fs_event_ctx_t ctx;
  disco_loop_t loop;
  char missing[512];

  snprintf(missing, sizeof(missing), "%s/missing", dir);
  ASSERT_OK(t, disco_loop_init(&loop));
  test_fs_event_ctx_init(&ctx, t, &loop, "missing");
  ASSERT_OK(t,
            disco_fs_event_new(&loop, test_fs_event_close_cb, &ctx, &ctx.fs));
  ASSERT_EQ(t, disco_fs_event_start(ctx.fs, test_fs_event_cb, missing),
            DISCO_ENOENT);
  /* The failed start left nothing active and never runs the callback,
   * even when the path appears afterwards. */
  ASSERT_EQ(t, disco_loop_alive(&loop), 0);
  ASSERT_EQ(t, test_fs_event_write(dir, "missing"), 0);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, disco_loop_run_nowait(&loop), 0);
  ASSERT_EQ(t, ctx.calls, 0);
  disco_fs_event_close(ctx.fs);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_EQ(t, ctx.calls, 0);
  ASSERT_OK(t, disco_loop_close(&loop));
}

void test_fs_event_missing_path(ctest_t *t) {
  test_fs_event_in_tmpdir(t, test_fs_event_missing_path_body);
}

static void test_fs_event_stop_body(ctest_t *t, const char *dir) {
  test_fs_event_ctx_t stopped;
  test_fs_event_ctx_t control;
  disco_loop_t loop;
  int i;

  ASSERT_OK(t, disco_loop_init(&loop));
  test_fs_event_ctx_init(&stopped, t, &loop, "after-stop.txt");
  test_fs_event_ctx_init(&control, t, &loop, "after-stop.txt");
  ASSERT_OK(t, disco_fs_event_new(&loop, test_fs_event_close_cb, &stopped,
                                  &stopped.fs));
  ASSERT_OK(t, disco_fs_event_new(&loop, test_fs_event_close_cb, &control,
                                  &control.fs));
  ASSERT_OK(t, disco_fs_event_start(stopped.fs, test_fs_event_cb, dir));
  ASSERT_OK(t, disco_fs_event_start(control.fs, test_fs_event_cb, dir));
  ASSERT_OK(t, disco_fs_event_stop(stopped.fs));
  ASSERT_OK(t, disco_fs_event_stop(stopped.fs)); /* stopping twice is fine */
  ASSERT_EQ(t, test_fs_event_write(dir, "after-stop.txt"), 0);
  /* The control watch on the same directory shows that the write was
   * reported: the stopped one heard nothing of it. */
  ctest_run_until(t, &loop, &control.received, TEST_FS_EVENT_WAIT_MS);
  for (i = 0; i < 10; i++)
    disco_loop_run_nowait(&loop);
  ASSERT_CMP(t, control.received, >=, 1);
  ASSERT_EQ(t, stopped.calls, 0);
  disco_fs_event_close(stopped.fs);
  disco_fs_event_close(control.fs);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, stopped.closed, 1);
  ASSERT_EQ(t, control.closed, 1);
  ASSERT_OK(t, disco_loop_close(&loop));
}

void test_fs_event_stop(ctest_t *t) {
  test_fs_event_in_tmpdir(t, test_fs_event_stop_body);
}

static void test_fs_event_close_body(ctest_t *t, const char *dir) {
  test_fs_event_ctx_t ctx;
  disco_loop_t loop;

  ASSERT_OK(t, disco_loop_init(&loop));

  /* Closed by its owner: idempotent, and the handle refuses further use. */
  test_fs_event_ctx_init(&ctx, t, &loop, "closed.txt");
  ASSERT_OK(t,
            disco_fs_event_new(&loop, test_fs_event_close_cb, &ctx, &ctx.fs));
  ASSERT_OK(t, disco_fs_event_start(ctx.fs, test_fs_event_cb, dir));
  disco_fs_event_close(ctx.fs);
  disco_fs_event_close(ctx.fs);
  ASSERT_EQ(t, disco_fs_event_start(ctx.fs, test_fs_event_cb, dir),
            DISCO_ECLOSED);
  ASSERT_EQ(t, disco_fs_event_stop(ctx.fs), DISCO_ECLOSED);
  disco_fs_event_set_ref(ctx.fs, 1); /* a no-op on a closing watch */
  ASSERT_EQ(t, test_fs_event_write(dir, "closed.txt"), 0);
  ASSERT_EQ(t, ctx.closed, 0);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_EQ(t, ctx.calls, 0);

  /* Closed from its own callback: the events still queued for it (a new
   * file brings several) are not delivered. */
  test_fs_event_ctx_init(&ctx, t, &loop, "in-callback.txt");
  ctx.close_in_cb = 1;
  ASSERT_OK(t,
            disco_fs_event_new(&loop, test_fs_event_close_cb, &ctx, &ctx.fs));
  ASSERT_OK(t, disco_fs_event_start(ctx.fs, test_fs_event_cb, dir));
  ASSERT_EQ(t, test_fs_event_write(dir, "in-callback.txt"), 0);
  ctest_run_until(t, &loop, &ctx.closed, TEST_FS_EVENT_WAIT_MS);
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_EQ(t, ctx.calls, 1);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_EQ(t, ctx.calls, 1);
}

void test_fs_event_close(ctest_t *t) {
  test_fs_event_in_tmpdir(t, test_fs_event_close_body);
}

static void test_fs_event_ref_body(ctest_t *t, const char *dir) {
  test_fs_event_ctx_t ctx;
  disco_loop_t loop;

  ASSERT_OK(t, disco_loop_init(&loop));
  test_fs_event_ctx_init(&ctx, t, &loop, "ref.txt");
  ASSERT_OK(t,
            disco_fs_event_new(&loop, test_fs_event_close_cb, &ctx, &ctx.fs));
  ASSERT_OK(t, disco_fs_event_start(ctx.fs, test_fs_event_cb, dir));
  ASSERT(t, disco_loop_alive(&loop));
  /* Unref'ed, a started watch alone does not keep the run going... */
  disco_fs_event_set_ref(ctx.fs, 0);
  ASSERT_EQ(t, disco_loop_alive(&loop), 0);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  /* ...but still reports while something else does. */
  ASSERT_EQ(t, test_fs_event_write(dir, "ref.txt"), 0);
  ctest_run_until(t, &loop, &ctx.received, TEST_FS_EVENT_WAIT_MS);
  ASSERT_CMP(t, ctx.received, >=, 1);
  disco_fs_event_set_ref(ctx.fs, 1);
  ASSERT(t, disco_loop_alive(&loop));
  disco_fs_event_set_ref(NULL, 0); /* a no-op */
  disco_fs_event_close(ctx.fs);
  ASSERT_EQ(t, disco_loop_run(&loop), 0);
  ASSERT_EQ(t, ctx.closed, 1);
  ASSERT_OK(t, disco_loop_close(&loop));
}

void test_fs_event_ref(ctest_t *t) {
  test_fs_event_in_tmpdir(t, test_fs_event_ref_body);
}

static void test_fs_event_loop_close_body(ctest_t *t, const char *dir) {
  test_fs_event_ctx_t started;
  test_fs_event_ctx_t idle;
  disco_loop_t loop;

  ASSERT_OK(t, disco_loop_init(&loop));
  test_fs_event_ctx_init(&started, t, &loop, "x");
  test_fs_event_ctx_init(&idle, t, &loop, "x");
  ASSERT_OK(t, disco_fs_event_new(&loop, test_fs_event_close_cb, &started,
                                  &started.fs));
  ASSERT_OK(t, disco_fs_event_start(started.fs, test_fs_event_cb, dir));
  ASSERT_OK(t,
            disco_fs_event_new(&loop, test_fs_event_close_cb, &idle, &idle.fs));
  /* The loop closes both watches, each close callback running once. */
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, started.closed, 1);
  ASSERT_EQ(t, idle.closed, 1);
  ASSERT_EQ(t, started.calls, 0);
  ASSERT_OK(t, disco_loop_close(&loop));
  ASSERT_EQ(t, started.closed, 1);
  ASSERT_EQ(t, idle.closed, 1);
  ASSERT_EQ(t, disco_fs_event_new(&loop, NULL, NULL, &idle.fs), DISCO_ECLOSED);
}

void test_fs_event_loop_close(ctest_t *t) {
  test_fs_event_in_tmpdir(t, test_fs_event_loop_close_body);
}
