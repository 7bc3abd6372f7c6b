/*
 * A loopback TCP proxy that injects network faults, for the chaos suite
 * (spec/chaos). The kernel here has no netem, so latency, partitions and
 * resets between disco's clients and ZooKeeper go through this program.
 *
 *   fault_proxy TARGET_PORT [TARGET_PORT...]
 *
 * For each target port on 127.0.0.1 it listens on a free 127.0.0.1 port (a
 * "route") and forwards every connection there. It also listens on a
 * control port. Once listening it prints, and flushes:
 *
 *   control PORT
 *   route INDEX LISTEN_PORT TARGET_PORT      (one per target, from 0)
 *   ready
 *
 * Control connections take one command per line and answer one line, "ok"
 * or "error: reason" ("stats" first prints one line per route). Commands
 * apply to every route, or to route INDEX when given:
 *
 *   pass [INDEX]       forward at once (releases held data)
 *   delay MS [INDEX]   forward each chunk MS ms after it was read
 *   blackhole [INDEX]  forward nothing and read nothing: bytes wait in the
 *                      kernel as in a partition, new connections get no
 *                      upstream; "pass" delivers what waited
 *   reset [INDEX]      RST both sides of every open connection, then pass
 *   close [INDEX]      close every open connection (FIN), then pass
 *   stats              "route INDEX LISTEN TARGET MODE DELAY CONNS ACCEPTED
 *                      IDLE_MS" per route (IDLE_MS: since the last byte
 *                      from a ZooKeeper server on the route, -1 if none)
 *   quit               exit at once
 *
 * The control channel is a socket rather than stdin because the test
 * fixture starts every process with stdin on /dev/null, and because the
 * answer tells the test that the fault is in place.
 *
 * Everything is bounded: MAX_CONNS connections per route (more are reset at
 * once), MAX_PENDING bytes held per connection (over it, reset), control
 * lines of MAX_LINE bytes.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#define MAX_ROUTES 16
#define MAX_CONNS 512
#define MAX_PENDING (16u * 1024u * 1024u)
#define MAX_LINE 256
#define MAX_DELAY_MS 60000

typedef enum { MODE_PASS, MODE_DELAY, MODE_BLACKHOLE } proxy_mode_t;

static const char *mode_names[] = { "pass", "delay", "blackhole" };

typedef struct chunk_s {
  struct chunk_s *next;
  uint64_t due;
  size_t len;
  char data[];
} chunk_t;

/* Bytes read from one side, waiting to be written to the other. */
typedef struct {
  chunk_t *head;
  chunk_t *tail;
  uint64_t last_due; /* keeps the order when the delay shrinks */
  int eof;           /* the source ended: close once this queue drains */
} queue_t;

struct route_s;

typedef struct conn_s {
  struct route_s *route;
  struct conn_s *prev, *next;
  uv_tcp_t client;
  uv_tcp_t upstream;
  uv_timer_t timer;
  uv_connect_t connect_req;
  queue_t to_upstream;
  queue_t to_client;
  size_t pending; /* bytes in both queues and in writes not completed */
  int connect_started;
  int upstream_open; /* connected */
  int reading;
  int closing;
  int open_handles;
} conn_t;

typedef struct route_s {
  int index;
  int listen_port;
  int target_port;
  uv_tcp_t server;
  proxy_mode_t mode;
  unsigned delay_ms;
  conn_t *conns;
  unsigned nconns;
  unsigned long accepted;
  uint64_t last_rx; /* loop time of the last byte from upstream, 0: none */
} route_t;

typedef struct {
  uv_tcp_t tcp;
  size_t len;
  char line[MAX_LINE];
} control_t;

typedef struct {
  uv_write_t req;
  conn_t *conn;
  chunk_t *chunk;
} wreq_t;

typedef struct {
  uv_write_t req;
  char text[];
} reply_t;

static uv_loop_t *loop;
static route_t routes[MAX_ROUTES];
static int nroutes;
static uv_tcp_t control_server;

static void conn_close(conn_t *c, int reset);
static void conn_flush(conn_t *c);
static void conn_update_reading(conn_t *c);
static void conn_start_connect(conn_t *c);

static int bound_port(uv_tcp_t *tcp) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len) != 0)
    return -1;
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(suggested);
  buf->len = buf->base ? suggested : 0;
}

static void queue_free(queue_t *q) {
  chunk_t *ch = q->head;
  while (ch) {
    chunk_t *next = ch->next;
    free(ch);
    ch = next;
  }
  q->head = q->tail = NULL;
}

static void conn_handle_closed(uv_handle_t *h) {
  conn_t *c = (conn_t *)h->data;
  if (--c->open_handles > 0)
    return;
  queue_free(&c->to_upstream);
  queue_free(&c->to_client);
  free(c);
}

/* Unlinks the connection and closes its handles; RST when `reset`. */
static void conn_close(conn_t *c, int reset) {
  route_t *r = c->route;
  if (c->closing)
    return;
  c->closing = 1;
  if (c->prev)
    c->prev->next = c->next;
  else
    r->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  r->nconns--;
  uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
  if (reset && uv_tcp_close_reset(&c->client, conn_handle_closed) == 0) {
    /* closed with RST */
  } else {
    uv_close((uv_handle_t *)&c->client, conn_handle_closed);
  }
  if (reset && c->upstream_open &&
      uv_tcp_close_reset(&c->upstream, conn_handle_closed) == 0) {
    /* closed with RST */
  } else {
    /* Also cancels a connect in progress (its callback sees closing). */
    uv_close((uv_handle_t *)&c->upstream, conn_handle_closed);
  }
}

static void write_cb(uv_write_t *req, int status) {
  wreq_t *w = (wreq_t *)req;
  conn_t *c = w->conn;
  c->pending -= w->chunk->len;
  free(w->chunk);
  free(w);
  if (status < 0) {
    conn_close(c, 0);
    return;
  }
  if (!c->closing)
    conn_update_reading(c);
}

/* Writes the chunks of `q` that are due to `dst`; returns the due time of
 * the next one still waiting, 0 when none. */
static uint64_t queue_flush(conn_t *c, queue_t *q, uv_tcp_t *dst) {
  uint64_t now = uv_now(loop);
  while (q->head && q->head->due <= now) {
    chunk_t *ch = q->head;
    wreq_t *w = malloc(sizeof(*w));
    uv_buf_t buf = uv_buf_init(ch->data, (unsigned)ch->len);
    if (!w) {
      conn_close(c, 1);
      return 0;
    }
    q->head = ch->next;
    if (!q->head)
      q->tail = NULL;
    w->conn = c;
    w->chunk = ch;
    if (uv_write(&w->req, (uv_stream_t *)dst, &buf, 1, write_cb) != 0) {
      c->pending -= ch->len;
      free(ch);
      free(w);
      conn_close(c, 0);
      return 0;
    }
  }
  return q->head ? q->head->due : 0;
}

static void timer_cb(uv_timer_t *t) {
  conn_flush((conn_t *)t->data);
}

/* Moves every due byte on, re-arms the timer for the next one, and closes
 * the connection once a side that ended has nothing left to deliver. */
static void conn_flush(conn_t *c) {
  uint64_t next_up = 0, next_down = 0, next;
  if (c->closing || c->route->mode == MODE_BLACKHOLE || !c->upstream_open)
    return;
  next_up = queue_flush(c, &c->to_upstream, &c->upstream);
  if (c->closing)
    return;
  next_down = queue_flush(c, &c->to_client, &c->client);
  if (c->closing)
    return;
  if ((c->to_upstream.eof && !c->to_upstream.head) ||
      (c->to_client.eof && !c->to_client.head)) {
    conn_close(c, 0);
    return;
  }
  next = next_up;
  if (next_down && (!next || next_down < next))
    next = next_down;
  if (next) {
    uint64_t now = uv_now(loop);
    uv_timer_start(&c->timer, timer_cb, next > now ? next - now : 0, 0);
  }
}

static void queue_push(conn_t *c, queue_t *q, const char *data, size_t len) {
  route_t *r = c->route;
  chunk_t *ch = malloc(sizeof(*ch) + len);
  uint64_t due;
  if (!ch) {
    conn_close(c, 1);
    return;
  }
  due = uv_now(loop) + (r->mode == MODE_DELAY ? r->delay_ms : 0);
  if (due < q->last_due)
    due = q->last_due;
  q->last_due = due;
  ch->next = NULL;
  ch->due = due;
  ch->len = len;
  memcpy(ch->data, data, len);
  if (q->tail)
    q->tail->next = ch;
  else
    q->head = ch;
  q->tail = ch;
  c->pending += len;
}

static void on_read(conn_t *c, queue_t *q, ssize_t nread, const uv_buf_t *buf) {
  if (nread > 0) {
    queue_push(c, q, buf->base, (size_t)nread);
    if (!c->closing && c->pending > MAX_PENDING)
      conn_close(c, 1);
  } else if (nread < 0) {
    q->eof = 1;
    if (nread != UV_EOF)
      conn_close(c, 1);
  }
  free(buf->base);
  if (!c->closing) {
    conn_update_reading(c);
    conn_flush(c);
  }
}

static void client_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = (conn_t *)s->data;
  on_read(c, &c->to_upstream, nread, buf);
}

static void upstream_read_cb(uv_stream_t *s, ssize_t nread,
                             const uv_buf_t *buf) {
  conn_t *c = (conn_t *)s->data;
  if (nread > 0)
    c->route->last_rx = uv_now(loop);
  on_read(c, &c->to_client, nread, buf);
}

/* Reads while the route forwards and the connection is not saturated. */
static void conn_update_reading(conn_t *c) {
  int want = c->upstream_open && c->route->mode != MODE_BLACKHOLE &&
             c->pending < MAX_PENDING / 2 && !c->to_upstream.eof &&
             !c->to_client.eof;
  if (want == c->reading)
    return;
  c->reading = want;
  if (want) {
    uv_read_start((uv_stream_t *)&c->client, alloc_cb, client_read_cb);
    uv_read_start((uv_stream_t *)&c->upstream, alloc_cb, upstream_read_cb);
  } else {
    uv_read_stop((uv_stream_t *)&c->client);
    uv_read_stop((uv_stream_t *)&c->upstream);
  }
}

static void connect_cb(uv_connect_t *req, int status) {
  conn_t *c = (conn_t *)req->data;
  if (c->closing)
    return;
  if (status < 0) {
    /* The server is down: the client sees its connection reset, the
     * nearest thing to a refused connect. */
    conn_close(c, 1);
    return;
  }
  c->upstream_open = 1;
  conn_update_reading(c);
  conn_flush(c);
}

static void conn_start_connect(conn_t *c) {
  struct sockaddr_in addr;
  if (c->connect_started || c->closing)
    return;
  c->connect_started = 1;
  uv_ip4_addr("127.0.0.1", c->route->target_port, &addr);
  c->connect_req.data = c;
  if (uv_tcp_connect(&c->connect_req, &c->upstream,
                     (const struct sockaddr *)&addr, connect_cb) != 0)
    conn_close(c, 1);
}

static void accept_cb(uv_stream_t *server, int status) {
  route_t *r = (route_t *)server->data;
  conn_t *c;
  if (status < 0)
    return;
  c = calloc(1, sizeof(*c));
  if (!c)
    return;
  c->route = r;
  uv_tcp_init(loop, &c->client);
  uv_tcp_init(loop, &c->upstream);
  uv_timer_init(loop, &c->timer);
  c->client.data = c->upstream.data = c->timer.data = c;
  c->open_handles = 3;
  c->next = r->conns;
  if (r->conns)
    r->conns->prev = c;
  r->conns = c;
  r->nconns++;
  r->accepted++;
  if (uv_accept(server, (uv_stream_t *)&c->client) != 0) {
    conn_close(c, 0);
    return;
  }
  uv_tcp_nodelay(&c->client, 1);
  uv_tcp_nodelay(&c->upstream, 1);
  if (r->nconns > MAX_CONNS) {
    conn_close(c, 1);
    return;
  }
  if (r->mode != MODE_BLACKHOLE)
    conn_start_connect(c);
}

/* Applies a mode to a route and wakes its connections. */
static void route_set_mode(route_t *r, proxy_mode_t mode, unsigned delay_ms) {
  conn_t *c, *next;
  r->mode = mode;
  r->delay_ms = delay_ms;
  for (c = r->conns; c; c = next) {
    next = c->next;
    if (mode != MODE_BLACKHOLE)
      conn_start_connect(c);
    if (!c->closing)
      conn_update_reading(c);
    if (!c->closing)
      conn_flush(c);
  }
}

static void route_drop_all(route_t *r, int reset) {
  while (r->conns)
    conn_close(r->conns, reset);
}

static void reply_done(uv_write_t *req, int status) {
  (void)status;
  free(req);
}

static void control_reply(control_t *ctl, const char *text) {
  size_t len = strlen(text);
  reply_t *r = malloc(sizeof(*r) + len);
  uv_buf_t buf;
  if (!r)
    return;
  memcpy(r->text, text, len);
  buf = uv_buf_init(r->text, (unsigned)len);
  if (uv_write(&r->req, (uv_stream_t *)&ctl->tcp, &buf, 1, reply_done) != 0)
    free(r);
}

static int parse_uint(const char *s, unsigned max, unsigned *out) {
  char *end;
  unsigned long v;
  if (!s || !*s)
    return -1;
  errno = 0;
  v = strtoul(s, &end, 10);
  if (errno || *end || v > max)
    return -1;
  *out = (unsigned)v;
  return 0;
}

static void control_stats(control_t *ctl) {
  char line[160];
  uint64_t now = uv_now(loop);
  int i;
  for (i = 0; i < nroutes; i++) {
    route_t *r = &routes[i];
    long idle = r->last_rx ? (long)(now - r->last_rx) : -1;
    snprintf(line, sizeof(line), "route %d %d %d %s %u %u %lu %ld\n", r->index,
             r->listen_port, r->target_port, mode_names[r->mode], r->delay_ms,
             r->nconns, r->accepted, idle);
    control_reply(ctl, line);
  }
  control_reply(ctl, "ok\n");
}

/* Runs one command line; returns an error text or NULL. */
static const char *control_run(control_t *ctl, char *line) {
  char *words[4] = { NULL, NULL, NULL, NULL };
  int n = 0, first = 0, last = nroutes - 1, i;
  unsigned value = 0, route_index;
  char *save = NULL, *w;
  const char *index_word;
  for (w = strtok_r(line, " \t\r", &save); w && n < 4;
       w = strtok_r(NULL, " \t\r", &save))
    words[n++] = w;
  if (n == 0)
    return "empty command";
  if (strcmp(words[0], "stats") == 0 && n == 1) {
    control_stats(ctl);
    return NULL;
  }
  if (strcmp(words[0], "quit") == 0 && n == 1) {
    control_reply(ctl, "ok\n");
    uv_stop(loop);
    return NULL;
  }
  if (strcmp(words[0], "delay") == 0) {
    if (n < 2 || n > 3 || parse_uint(words[1], MAX_DELAY_MS, &value) != 0)
      return "usage: delay MS [INDEX] (MS at most 60000)";
    index_word = n == 3 ? words[2] : NULL;
  } else {
    if (n > 2)
      return "too many words";
    index_word = n == 2 ? words[1] : NULL;
  }
  if (index_word) {
    if (parse_uint(index_word, (unsigned)nroutes - 1, &route_index) != 0)
      return "no such route";
    first = last = (int)route_index;
  }
  for (i = first; i <= last; i++) {
    route_t *r = &routes[i];
    if (strcmp(words[0], "pass") == 0) {
      route_set_mode(r, MODE_PASS, 0);
    } else if (strcmp(words[0], "delay") == 0) {
      route_set_mode(r, value ? MODE_DELAY : MODE_PASS, value);
    } else if (strcmp(words[0], "blackhole") == 0) {
      route_set_mode(r, MODE_BLACKHOLE, 0);
    } else if (strcmp(words[0], "reset") == 0) {
      route_drop_all(r, 1);
      route_set_mode(r, MODE_PASS, 0);
    } else if (strcmp(words[0], "close") == 0) {
      route_drop_all(r, 0);
      route_set_mode(r, MODE_PASS, 0);
    } else {
      return "unknown command";
    }
  }
  control_reply(ctl, "ok\n");
  return NULL;
}

static void control_closed(uv_handle_t *h) {
  free(h->data);
}

static void control_read_cb(uv_stream_t *s, ssize_t nread,
                            const uv_buf_t *buf) {
  control_t *ctl = (control_t *)s->data;
  ssize_t i;
  for (i = 0; i < nread; i++) {
    char ch = buf->base[i];
    if (ch == '\n') {
      const char *err;
      ctl->line[ctl->len] = '\0';
      err = control_run(ctl, ctl->line);
      ctl->len = 0;
      if (err) {
        char text[96];
        snprintf(text, sizeof(text), "error: %s\n", err);
        control_reply(ctl, text);
      }
    } else if (ctl->len + 1 >= MAX_LINE) {
      control_reply(ctl, "error: line too long\n");
      uv_close((uv_handle_t *)&ctl->tcp, control_closed);
      free(buf->base);
      return;
    } else {
      ctl->line[ctl->len++] = ch;
    }
  }
  free(buf->base);
  if (nread < 0)
    uv_close((uv_handle_t *)&ctl->tcp, control_closed);
}

static void control_accept_cb(uv_stream_t *server, int status) {
  control_t *ctl;
  if (status < 0)
    return;
  ctl = calloc(1, sizeof(*ctl));
  if (!ctl)
    return;
  uv_tcp_init(loop, &ctl->tcp);
  ctl->tcp.data = ctl;
  if (uv_accept(server, (uv_stream_t *)&ctl->tcp) != 0 ||
      uv_read_start((uv_stream_t *)&ctl->tcp, alloc_cb, control_read_cb) != 0)
    uv_close((uv_handle_t *)&ctl->tcp, control_closed);
}

static int listen_on(uv_tcp_t *tcp, uv_connection_cb cb, void *data) {
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_init(loop, tcp);
  tcp->data = data;
  if (uv_tcp_bind(tcp, (const struct sockaddr *)&addr, 0) != 0 ||
      uv_listen((uv_stream_t *)tcp, 128, cb) != 0)
    return -1;
  return bound_port(tcp);
}

int main(int argc, char **argv) {
  int i, port;
  if (argc < 2 || argc - 1 > MAX_ROUTES) {
    fprintf(stderr, "usage: fault_proxy TARGET_PORT [TARGET_PORT...] (1-%d)\n",
            MAX_ROUTES);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  for (i = 1; i < argc; i++) {
    unsigned target;
    if (parse_uint(argv[i], 65535, &target) != 0 || target == 0) {
      fprintf(stderr, "fault_proxy: invalid port '%s'\n", argv[i]);
      return 2;
    }
    routes[nroutes].index = nroutes;
    routes[nroutes].target_port = (int)target;
    nroutes++;
  }
  port = listen_on(&control_server, control_accept_cb, NULL);
  if (port < 0) {
    fprintf(stderr, "fault_proxy: cannot listen for control\n");
    return 1;
  }
  printf("control %d\n", port);
  for (i = 0; i < nroutes; i++) {
    route_t *r = &routes[i];
    r->listen_port = listen_on(&r->server, accept_cb, r);
    if (r->listen_port < 0) {
      fprintf(stderr, "fault_proxy: cannot listen for route %d\n", i);
      return 1;
    }
    printf("route %d %d %d\n", i, r->listen_port, r->target_port);
  }
  printf("ready\n");
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}
