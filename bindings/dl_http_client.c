/*
 * disco.http_client: the HTTP/1.1 client (core/http_client.c) as seen from
 * Lua.
 *
 *   loop:http_client{ host =, port =, name =, connect_timeout = 3000,
 *                     read_timeout = 10000, idle_timeout = 30000,
 *                     max_connections = 8, max_header_bytes = 16384,
 *                     max_body_bytes = 8388608 }
 *     -> client | nil, "EINVAL: ...", "EINVAL"
 *   client:request({ method =, path =, headers =, body =, timeout =,
 *                    read_timeout =, on_headers =, on_data =, split = },
 *                  function(err, res) end)
 *     -> req | nil, err, ename
 *   req:cancel(), client:stats(), client:close()
 *
 * Options tables are checked whole: an unknown key or a value of the
 * wrong type or range gives the EINVAL tuple (no raise), so that a plugin
 * can report it; a missing callback or a non-table raises.
 *
 * References. A request's three functions (done, on_headers, on_data) are
 * registry refs held by its record, released at exactly one point: when it
 * ends (just before the done callback runs) or when it is canceled. A
 * client with requests out anchors its box, so their callbacks always run.
 * The request's box and its record may outlive each other: the record is
 * freed by the end of the request when the box is gone, else by the box's
 * __gc once the request has ended; dropping the box never cancels.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl.h"
#include "http_client.h"

#define DL_HTTP_CLIENT_MT "disco.http_client"
#define DL_HTTP_REQUEST_MT "disco.http_request"

typedef struct {
  dl_handle_t h;  /* first: dl_handle_on_close frees the whole */
  size_t pending; /* requests whose end has not come */
} dl_hc_t;

typedef struct {
  dl_hc_t *client;
  disco_http_creq_t *core; /* NULL once ended or canceled */
  int done_ref;
  int headers_ref;
  int data_ref;
  int box_alive;
} dl_hreq_t;

/* ------------------------------------------------------ option tables */

enum { DL_HC_STRING, DL_HC_NUMBER, DL_HC_TABLE, DL_HC_FUNCTION };

typedef struct {
  const char *name;
  int type;
  double min; /* numbers: the range, whole numbers only */
  double max;
} dl_hc_opt_t;

static const dl_hc_opt_t dl_hc_client_opts[] = {
  { "host", DL_HC_STRING, 0, 0 },
  { "port", DL_HC_NUMBER, 1, 65535 },
  { "name", DL_HC_STRING, 0, 0 },
  { "connect_timeout", DL_HC_NUMBER, 0, 86400000 },
  { "read_timeout", DL_HC_NUMBER, 0, 86400000 },
  { "idle_timeout", DL_HC_NUMBER, 0, 86400000 },
  { "max_connections", DL_HC_NUMBER, 1, 10000 },
  { "max_header_bytes", DL_HC_NUMBER, 64, 67108864 },
  { "max_body_bytes", DL_HC_NUMBER, 1, 0x7fffffff },
  { NULL, 0, 0, 0 },
};

static const dl_hc_opt_t dl_hc_request_opts[] = {
  { "method", DL_HC_STRING, 0, 0 },
  { "path", DL_HC_STRING, 0, 0 },
  { "headers", DL_HC_TABLE, 0, 0 },
  { "body", DL_HC_STRING, 0, 0 },
  { "timeout", DL_HC_NUMBER, 0, 86400000 },
  { "read_timeout", DL_HC_NUMBER, 0, 86400000 },
  { "on_headers", DL_HC_FUNCTION, 0, 0 },
  { "on_data", DL_HC_FUNCTION, 0, 0 },
  { "split", DL_HC_STRING, 0, 0 },
  { NULL, 0, 0, 0 },
};

static const char *const dl_hc_type_names[] = { "a string", "a number",
                                                "a table", "a function" };

/* [-0, +0] Checks every key of the table at idx against spec; returns 0,
 * or -1 with a message in msg. No raise. */
static int dl_hc_check(lua_State *L, int idx, const dl_hc_opt_t *spec,
                       const char *what, char *msg, size_t size) {
  int bad = 0;

  lua_pushnil(L);
  while (!bad && lua_next(L, idx) != 0) {
    const dl_hc_opt_t *o = NULL;
    const dl_hc_opt_t *s;
    int t = lua_type(L, -1);
    if (lua_type(L, -2) == LUA_TSTRING)
      for (s = spec; s->name != NULL; s++)
        if (strcmp(s->name, lua_tostring(L, -2)) == 0)
          o = s;
    bad = 1;
    if (o == NULL && lua_type(L, -2) == LUA_TSTRING)
      snprintf(msg, size, "unknown %s option \"%.40s\"", what,
               lua_tostring(L, -2));
    else if (o == NULL)
      snprintf(msg, size, "%s options must have string keys", what);
    else if ((o->type == DL_HC_STRING && t != LUA_TSTRING) ||
             (o->type == DL_HC_NUMBER && t != LUA_TNUMBER) ||
             (o->type == DL_HC_TABLE && t != LUA_TTABLE) ||
             (o->type == DL_HC_FUNCTION && t != LUA_TFUNCTION))
      snprintf(msg, size, "%s must be %s", o->name, dl_hc_type_names[o->type]);
    else if (o->type == DL_HC_NUMBER &&
             (!(lua_tonumber(L, -1) >= o->min &&
                lua_tonumber(L, -1) <= o->max) ||
              lua_tonumber(L, -1) != (lua_Number)(int64_t)lua_tonumber(L, -1)))
      snprintf(msg, size, "%s must be a whole number from %.0f to %.0f",
               o->name, o->min, o->max);
    else
      bad = 0;
    lua_pop(L, bad ? 2 : 1);
  }
  return bad ? -1 : 0;
}

/* [-0, +3] nil, "EINVAL: msg", "EINVAL". */
static int dl_hc_einval(lua_State *L, const char *msg) {
  lua_pushnil(L);
  lua_pushfstring(L, "EINVAL: %s", msg);
  lua_pushliteral(L, "EINVAL");
  return 3;
}

/* [-0, +0] The number t[field] (table at idx) or def. */
static double dl_hc_number(lua_State *L, int idx, const char *field,
                           double def) {
  double v = def;
  lua_getfield(L, idx, field);
  if (lua_type(L, -1) == LUA_TNUMBER)
    v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* [-0, +0] The string t[field] or NULL; it stays referenced by the table. */
static const char *dl_hc_string(lua_State *L, int idx, const char *field,
                                size_t *len) {
  const char *s = NULL;
  lua_getfield(L, idx, field);
  if (lua_type(L, -1) == LUA_TSTRING)
    s = lua_tolstring(L, -1, len);
  lua_pop(L, 1);
  return s;
}

/* ------------------------------------------------------------- client */

static void dl_hc_close_core(void *core) {
  disco_http_client_close((disco_http_client_t *)core);
}

static void dl_hc_set_ref_core(void *core, int ref) {
  (void)core;
  (void)ref; /* only requests keep the loop busy */
}

/* loop:http_client(opts) */
static int dl_loop_http_client(lua_State *L) {
  dl_loop_t *lp = dl_check_loop(L, 1);
  disco_http_client_options_t opts;
  disco_http_client_t *client;
  dl_handle_t **box;
  dl_hc_t *c;
  const char *host;
  const char *name;
  char msg[160];
  int err;

  luaL_checktype(L, 2, LUA_TTABLE);
  if (dl_hc_check(L, 2, dl_hc_client_opts, "http_client", msg, sizeof(msg)))
    return dl_hc_einval(L, msg);
  host = dl_hc_string(L, 2, "host", NULL);
  name = dl_hc_string(L, 2, "name", NULL);
  if (host == NULL)
    return dl_hc_einval(L, "host is required");
  if (dl_hc_number(L, 2, "port", 0) == 0)
    return dl_hc_einval(L, "port is required");
  disco_http_client_options_init(&opts);
  opts.connect_timeout_ms = (uint64_t)dl_hc_number(
      L, 2, "connect_timeout", (double)opts.connect_timeout_ms);
  opts.read_timeout_ms = (uint64_t)dl_hc_number(L, 2, "read_timeout",
                                                (double)opts.read_timeout_ms);
  opts.idle_timeout_ms = (uint64_t)dl_hc_number(L, 2, "idle_timeout",
                                                (double)opts.idle_timeout_ms);
  opts.max_connections = (size_t)dl_hc_number(L, 2, "max_connections",
                                              (double)opts.max_connections);
  opts.max_header_bytes = (size_t)dl_hc_number(L, 2, "max_header_bytes",
                                               (double)opts.max_header_bytes);
  opts.max_body_bytes =
      (size_t)dl_hc_number(L, 2, "max_body_bytes", (double)opts.max_body_bytes);
  opts.name = name != NULL ? name : "http-client";

  c = (dl_hc_t *)calloc(1, sizeof(*c));
  if (c == NULL)
    return luaL_error(L, "out of memory");
  box = (dl_handle_t **)lua_newuserdata(L, sizeof(*box));
  *box = &c->h;
  c->h.owner = lp;
  c->h.owner_ref = LUA_NOREF;
  c->h.cb_ref = LUA_NOREF;
  c->h.self_ref = LUA_NOREF;
  c->h.box_alive = 1;
  strncpy(c->h.name, opts.name, sizeof(c->h.name) - 1);
  luaL_getmetatable(L, DL_HTTP_CLIENT_MT);
  lua_setmetatable(L, -2);
  err =
      disco_http_client_new(lp->loop, host, (int)dl_hc_number(L, 2, "port", 0),
                            &opts, dl_handle_on_close, c, &client);
  if (err == DISCO_EINVAL)
    return dl_hc_einval(L, "host must be an IPv4 or IPv6 address");
  if (err != 0)
    return dl_push_error(L, err); /* the box's __gc frees c */
  c->h.core = client;
  c->h.close_core = dl_hc_close_core;
  c->h.set_ref_core = dl_hc_set_ref_core;
  lua_pushvalue(L, 1);
  c->h.owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

/* ----------------------------------------------------------- requests */

/* [-0, +0] Releases the record's refs and its hold on the client. No
 * raise. */
static void dl_hreq_release(lua_State *L, dl_hreq_t *rec) {
  dl_hc_t *c = rec->client;
  dl_unref(L, &rec->done_ref);
  dl_unref(L, &rec->headers_ref);
  dl_unref(L, &rec->data_ref);
  if (--c->pending == 0)
    dl_unref(L, &c->h.self_ref);
}

/* [-0, +1] A table of the headers. May raise on memory exhaustion only. */
static void dl_hc_push_headers(lua_State *L, const disco_http_response_t *res) {
  size_t i;
  lua_createtable(L, 0, (int)res->nheaders);
  for (i = 0; i < res->nheaders; i++) {
    lua_pushlstring(L, res->headers[i].name, res->headers[i].name_len);
    lua_pushlstring(L, res->headers[i].value, res->headers[i].value_len);
    lua_rawset(L, -3);
  }
}

static void dl_hc_headers_cb(disco_http_creq_t *req,
                             const disco_http_response_t *res, void *arg) {
  dl_hreq_t *rec = (dl_hreq_t *)arg;
  dl_hc_t *c = rec->client;
  lua_State *L;
  (void)req;

  if (rec->headers_ref == LUA_NOREF || c->h.owner->ctx->in_gc)
    return;
  L = dl_callback_state(c->h.owner->ctx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rec->headers_ref);
  lua_pushinteger(L, res->status);
  dl_hc_push_headers(L, res);
  dl_pcall(c->h.owner, L, 2, c->h.name);
}

static void dl_hc_data_cb(disco_http_creq_t *req, const char *data, size_t len,
                          void *arg) {
  dl_hreq_t *rec = (dl_hreq_t *)arg;
  dl_hc_t *c = rec->client;
  lua_State *L;
  (void)req;

  if (rec->data_ref == LUA_NOREF || c->h.owner->ctx->in_gc)
    return;
  L = dl_callback_state(c->h.owner->ctx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rec->data_ref);
  lua_pushlstring(L, data, len);
  dl_pcall(c->h.owner, L, 1, c->h.name);
}

/* The end of a request: the one place its refs go (unless canceled). The
 * record is not touched after the callback, which may drop the last
 * reference to the box. */
static void dl_hc_done_cb(disco_http_creq_t *req, int err, const char *message,
                          const disco_http_response_t *res, void *arg) {
  dl_hreq_t *rec = (dl_hreq_t *)arg;
  dl_hc_t *c = rec->client;
  dl_loop_t *owner = c->h.owner;
  lua_State *L = dl_callback_state(owner->ctx);
  char who[DL_NAME_MAX];
  (void)req;

  rec->core = NULL;
  memcpy(who, c->h.name, sizeof(who));
  lua_rawgeti(L, LUA_REGISTRYINDEX, rec->done_ref);
  dl_hreq_release(L, rec);
  if (!rec->box_alive)
    free(rec);
  if (owner->ctx->in_gc) {
    lua_pop(L, 1);
    return;
  }
  if (err != 0)
    lua_pushfstring(L, "%s: %s", disco_err_name(err),
                    message != NULL ? message : disco_strerror(err));
  else
    lua_pushnil(L);
  if (res->status != 0) {
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, res->status);
    lua_setfield(L, -2, "status");
    dl_hc_push_headers(L, res);
    lua_setfield(L, -2, "headers");
    if (res->body != NULL) {
      lua_pushlstring(L, res->body, res->body_len);
      lua_setfield(L, -2, "body");
    }
  } else {
    lua_pushnil(L);
  }
  dl_pcall(owner, L, 2, who);
}

/* client:request(opts, cb) */
static int dl_hc_request(lua_State *L) {
  dl_hc_t *c = (dl_hc_t *)dl_check_handle(L, 1, DL_HTTP_CLIENT_MT, 1);
  disco_http_client_request_t r;
  disco_http_header_t *hs = NULL;
  dl_hreq_t **box;
  dl_hreq_t *rec;
  char msg[160];
  size_t n = 0;
  int err;

  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);
  if (dl_hc_check(L, 2, dl_hc_request_opts, "request", msg, sizeof(msg)))
    return dl_hc_einval(L, msg);
  memset(&r, 0, sizeof(r));
  r.method = dl_hc_string(L, 2, "method", NULL);
  r.path = dl_hc_string(L, 2, "path", NULL);
  r.body = dl_hc_string(L, 2, "body", &r.body_len);
  r.split = dl_hc_string(L, 2, "split", &r.split_len);
  r.timeout_ms = (uint64_t)dl_hc_number(L, 2, "timeout", 0);
  /* Lua's 0 is "none"; absent is the client's. */
  r.read_timeout_ms = (int64_t)dl_hc_number(L, 2, "read_timeout", -2);
  if (r.read_timeout_ms == 0)
    r.read_timeout_ms = DISCO_HTTP_NO_READ_TIMEOUT;
  else if (r.read_timeout_ms == -2)
    r.read_timeout_ms = 0;
  if (r.path == NULL || r.path[0] != '/')
    return dl_hc_einval(L, "path must start with \"/\"");
  lua_getfield(L, 2, "on_data");    /* 4 */
  lua_getfield(L, 2, "on_headers"); /* 5 */
  lua_getfield(L, 2, "headers");    /* 6 */
  if (r.split != NULL && (r.split_len == 0 || r.split_len > 8))
    return dl_hc_einval(L, "split must be 1 to 8 bytes");
  if (r.split != NULL && lua_isnil(L, 4))
    return dl_hc_einval(L, "split needs on_data");
  if (!lua_isnil(L, 6)) {
    lua_pushnil(L);
    while (lua_next(L, 6) != 0) {
      n++;
      lua_pop(L, 1);
    }
    /* Lua memory, so that an early return leaks nothing. */
    hs = (disco_http_header_t *)lua_newuserdata(L,
                                                (n > 0 ? n : 1) * sizeof(*hs));
    n = 0;
    lua_pushnil(L);
    while (lua_next(L, 6) != 0) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
        return dl_hc_einval(L, "headers must map names to string values");
      /* Both strings stay referenced by the headers table. */
      hs[n].name = lua_tolstring(L, -2, &hs[n].name_len);
      hs[n].value = lua_tolstring(L, -1, &hs[n].value_len);
      n++;
      lua_pop(L, 1);
    }
  }
  r.headers = hs;
  r.nheaders = n;
  r.on_done = dl_hc_done_cb;
  r.on_headers = lua_isnil(L, 5) ? NULL : dl_hc_headers_cb;
  r.on_data = lua_isnil(L, 4) ? NULL : dl_hc_data_cb;

  rec = (dl_hreq_t *)calloc(1, sizeof(*rec));
  if (rec == NULL)
    return luaL_error(L, "out of memory");
  box = (dl_hreq_t **)lua_newuserdata(L, sizeof(*box));
  *box = rec;
  rec->client = c;
  rec->box_alive = 1;
  rec->done_ref = LUA_NOREF;
  rec->headers_ref = LUA_NOREF;
  rec->data_ref = LUA_NOREF;
  luaL_getmetatable(L, DL_HTTP_REQUEST_MT);
  lua_setmetatable(L, -2);
  r.arg = rec;
  err = disco_http_client_request((disco_http_client_t *)c->h.core, &r,
                                  &rec->core);
  if (err == DISCO_EINVAL)
    return dl_hc_einval(L, "bad method, path or header (a token, a path "
                           "without spaces or control bytes, header names "
                           "and values without CR, LF or NUL)");
  if (err != 0)
    return dl_push_error(L, err); /* the box's __gc frees rec */
  lua_pushvalue(L, 3);
  rec->done_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (!lua_isnil(L, 5)) {
    lua_pushvalue(L, 5);
    rec->headers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (!lua_isnil(L, 4)) {
    lua_pushvalue(L, 4);
    rec->data_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (c->pending++ == 0 && c->h.self_ref == LUA_NOREF) {
    lua_pushvalue(L, 1);
    c->h.self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 1; /* the request's box */
}

/* req:cancel(): idempotent; no callback afterwards. */
static int dl_hreq_cancel(lua_State *L) {
  dl_hreq_t *rec = *(dl_hreq_t **)luaL_checkudata(L, 1, DL_HTTP_REQUEST_MT);
  disco_http_creq_t *core = rec->core;

  if (core == NULL)
    return 0;
  rec->core = NULL;
  disco_http_client_cancel(core);
  dl_hreq_release(L, rec);
  return 0;
}

/* req:is_done(): whether the request has ended or was canceled. */
static int dl_hreq_is_done(lua_State *L) {
  dl_hreq_t *rec = *(dl_hreq_t **)luaL_checkudata(L, 1, DL_HTTP_REQUEST_MT);
  lua_pushboolean(L, rec->core == NULL);
  return 1;
}

/* The box's __gc: never cancels (a request runs to its end without its
 * box); frees the record once the request has ended. */
static int dl_hreq_gc(lua_State *L) {
  dl_hreq_t *rec = *(dl_hreq_t **)lua_touserdata(L, 1);
  rec->box_alive = 0;
  if (rec->core == NULL)
    free(rec);
  return 0;
}

static int dl_hc_stats(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_HTTP_CLIENT_MT, 1);
  disco_http_client_stats_t st;
  disco_http_client_stats((disco_http_client_t *)h->core, &st);
  lua_createtable(L, 0, 8);
  dl_set_count(L, "connections", st.connections);
  dl_set_count(L, "idle", st.idle);
  dl_set_count(L, "queued", st.queued);
  dl_set_count(L, "active", st.active);
  dl_set_count(L, "connects", st.connects);
  dl_set_count(L, "requests", st.requests);
  dl_set_count(L, "reused", st.reused);
  dl_set_count(L, "retried", st.retried);
  return 1;
}

static const luaL_Reg dl_hc_methods[] = {
  { "request", dl_hc_request },
  { "stats", dl_hc_stats },
  { NULL, NULL },
};

static const luaL_Reg dl_hreq_methods[] = {
  { "cancel", dl_hreq_cancel },
  { "is_done", dl_hreq_is_done },
  { NULL, NULL },
};

/* Creates the metatables and adds loop:http_client; runs after
 * dl_loop_register. */
void dl_http_client_register(lua_State *L) {
  /* close ends outstanding requests at once with "ECANCELED: ..."; a
   * client with requests out is anchored, so __gc only meets idle ones. */
  dl_handle_register_entering(L, DL_HTTP_CLIENT_MT, dl_hc_methods);
  luaL_newmetatable(L, DL_HTTP_REQUEST_MT);
  lua_pushstring(L, DL_HTTP_REQUEST_MT);
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  luaL_register(L, NULL, dl_hreq_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, dl_hreq_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_getmetatable(L, DL_LOOP_MT);
  lua_getfield(L, -1, "__index");
  lua_pushcfunction(L, dl_loop_http_client);
  lua_setfield(L, -2, "http_client");
  lua_pop(L, 2);
}
