/*
 * The levelled logger. A sink is always called on the loop thread: a message
 * logged on the loop thread goes to it directly, one logged elsewhere is
 * copied into a queue item and travels through the loop's event queue. When
 * that is impossible (no memory, or the loop has closed its queue) the
 * message is written to stderr instead, so that nothing is lost silently.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "internal.h"

/* A message on its way from another thread to the loop thread. */
typedef struct {
  disco_qitem_t item;
  disco_loop_t *loop;
  disco_log_level_t level;
  const char *component; /* points into text */
  char text[];           /* message, NUL, component, NUL */
} disco__log_item_t;

static const char *const disco__log_names[] = { "error", "warn", "info",
                                                "debug", "trace" };

/* Upper case and padded to one width, so that messages line up on stderr. */
static const char *const disco__log_labels[] = { "ERROR", "WARN ", "INFO ",
                                                 "DEBUG", "TRACE" };

static int disco__log_level_valid(int level) {
  return level >= DISCO_LOG_ERROR && level <= DISCO_LOG_TRACE;
}

const char *disco_log_level_name(disco_log_level_t level) {
  if (!disco__log_level_valid((int)level))
    return "unknown";
  return disco__log_names[level];
}

int disco_log_level_parse(const char *name, disco_log_level_t *level) {
  int i;

  if (name == NULL || level == NULL)
    return DISCO_EINVAL;
  /* Case-insensitive, so that DISCO_LOG_LEVEL=WARN works as users expect. */
  for (i = DISCO_LOG_ERROR; i <= DISCO_LOG_TRACE; i++) {
    if (strcasecmp(name, disco__log_names[i]) == 0) {
      *level = (disco_log_level_t)i;
      return 0;
    }
  }
  return DISCO_EINVAL;
}

void disco__log_init(disco_loop_t *loop) {
  disco_log_level_t level;
  const char *env;

  level = DISCO_LOG_INFO;
  env = getenv("DISCO_LOG_LEVEL");
  if (env != NULL && disco_log_level_parse(env, &level) != 0)
    level = DISCO_LOG_INFO;
  disco__atomic_store(&loop->log_level, (int)level);
  loop->log_sink = NULL;
  loop->log_ud = NULL;
}

void disco_log_set_sink(disco_loop_t *loop, disco_log_sink_cb sink, void *ud) {
  loop->log_sink = sink;
  loop->log_ud = sink != NULL ? ud : NULL;
}

void disco_log_set_level(disco_loop_t *loop, disco_log_level_t level) {
  /* An out-of-range level would index the name tables; clamp it instead of
   * failing, since this function has no way to report an error. */
  if ((int)level < DISCO_LOG_ERROR)
    level = DISCO_LOG_ERROR;
  if ((int)level > DISCO_LOG_TRACE)
    level = DISCO_LOG_TRACE;
  disco__atomic_store(&loop->log_level, (int)level);
}

disco_log_level_t disco_log_get_level(disco_loop_t *loop) {
  return (disco_log_level_t)disco__atomic_load(&loop->log_level);
}

void disco_log_stderr_sink(void *ud, disco_log_level_t level,
                           const char *component, const char *msg) {
  struct timespec ts;
  struct tm tm;
  char stamp[32];
  const char *label;

  (void)ud;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  if (strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
    stamp[0] = '\0';
  label =
      disco__log_level_valid((int)level) ? disco__log_labels[level] : "?????";
  /* One call, so that lines from several threads never interleave (stdio
   * locks the stream for the duration of a call). */
  fprintf(stderr, "%s.%03ldZ %s [%s] %s\n", stamp, (long)(ts.tv_nsec / 1000000),
          label, component != NULL ? component : "disco",
          msg != NULL ? msg : "");
}

/* Loop thread. */
static void disco__log_deliver(disco_loop_t *loop, disco_log_level_t level,
                               const char *component, const char *msg) {
  if (loop->log_sink != NULL)
    loop->log_sink(loop->log_ud, level, component, msg);
  else
    disco_log_stderr_sink(NULL, level, component, msg);
}

static void disco__log_item_cb(disco_qitem_t *qitem, int status) {
  disco__log_item_t *item;

  item = disco__container_of(qitem, disco__log_item_t, item);
  /* A canceled item means the loop is closing: its sink may belong to state
   * that is being torn down, so the message goes to stderr instead. */
  if (status == 0)
    disco__log_deliver(item->loop, item->level, item->component, item->text);
  else
    disco_log_stderr_sink(NULL, item->level, item->component, item->text);
  free(item);
}

/* Any thread (the loop's own too: the message then waits for the next
 * drain). Falls back to stderr when the message cannot be queued, so that it
 * is never dropped silently. */
void disco__log_post(disco_loop_t *loop, disco_log_level_t level,
                     const char *component, const char *msg) {
  disco__log_item_t *item;
  disco_queue_t *queue;
  size_t msg_len;
  size_t comp_len;
  char *comp;

  msg_len = strlen(msg);
  comp_len = strlen(component);
  item = malloc(sizeof(*item) + msg_len + 1 + comp_len + 1);
  if (item == NULL) {
    disco_log_stderr_sink(NULL, level, component, msg);
    return;
  }
  memcpy(item->text, msg, msg_len + 1);
  comp = item->text + msg_len + 1;
  memcpy(comp, component, comp_len + 1);
  item->component = comp;
  item->loop = loop;
  item->level = level;
  item->item.cb = disco__log_item_cb;

  queue = disco__loop_queue_acquire(loop);
  if (queue != NULL && disco_queue_push(queue, &item->item) == 0) {
    disco_queue_release(queue);
    return;
  }
  if (queue != NULL)
    disco_queue_release(queue);
  disco_log_stderr_sink(NULL, level, component, msg);
  free(item);
}

/* Cuts `buf` (holding more than DISCO_LOG_MAX_MESSAGE bytes of message) so
 * that it ends in "..." and is exactly DISCO_LOG_MAX_MESSAGE bytes long, or a
 * little shorter so as not to split a UTF-8 sequence. */
static void disco__log_truncate(char *buf) {
  size_t cut;

  cut = DISCO_LOG_MAX_MESSAGE - 3;
  while (cut > 0 && ((unsigned char)buf[cut] & 0xC0) == 0x80)
    cut--;
  memcpy(buf + cut, "...", 4);
}

void disco_log(disco_loop_t *loop, disco_log_level_t level,
               const char *component, const char *fmt, ...) {
  char buf[DISCO_LOG_MAX_MESSAGE + 1];
  va_list ap;
  int n;

  if (loop != NULL && (int)level > disco__atomic_load(&loop->log_level))
    return;
  if (loop == NULL && (int)level > DISCO_LOG_INFO)
    return;
  if (component == NULL)
    component = "disco";

  va_start(ap, fmt);
  n = vsnprintf(buf, sizeof(buf), fmt != NULL ? fmt : "", ap);
  va_end(ap);
  if (n < 0)
    snprintf(buf, sizeof(buf), "(unformattable log message: %s)",
             fmt != NULL ? fmt : "");
  else if ((size_t)n > DISCO_LOG_MAX_MESSAGE)
    disco__log_truncate(buf);

  if (loop == NULL)
    disco_log_stderr_sink(NULL, level, component, buf);
  else if (disco_loop_on_thread(loop))
    disco__log_deliver(loop, level, component, buf);
  else
    disco__log_post(loop, level, component, buf);
}
