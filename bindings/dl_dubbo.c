/*
 * disco.dubbo_server and disco.dubbo_client: the dubbo protocol
 * (core/dubbo_*.c) as seen from Lua.
 *
 *   loop:dubbo_server{ host = "127.0.0.1", port = 0, max_connections =,
 *                      idle_timeout =, max_frame =, name =,
 *                      on_request = function(req) end }
 *     -> server | nil, err, ename
 *   req = { path, version, group, method, types, args = {...},
 *           attachments = {...}, id, conn,
 *           reply = function(value) end,
 *           fail = function(status, message) end }
 *   server:port(), server:stats(), server:close()
 *
 *   loop:dubbo_client{ host =, port =, timeout = 5000, heartbeat = 60000,
 *                      name = } -> client | nil, err, ename
 *   client:call({ path, version, group, method, types, args, attachments,
 *                 timeout }, function(err, value, attachments) end)
 *     -> true | nil, err, ename
 *   client:heartbeat(function(err, ms) end [, timeout]) -> true | ...
 *   client:connected(), client:close()
 *
 * References. The server's on_request is its callback (cb_ref) and an open
 * server anchors its own box (self_ref), so that a listening server is
 * never collected; both go when the core server has closed. reply and fail
 * are closures over the server's box and a small token userdata (the
 * connection, the request id, whether it was answered), so they work after
 * on_request returned and for as long as Lua holds them.
 * A client call's callback ref is taken by call() and released at exactly
 * one point: in dl_dubbo_call_cb, just before the callback runs. A client
 * with calls outstanding anchors its box, so its callbacks always run.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dl.h"

typedef struct {
  dl_handle_t h;        /* first: dl_handle_on_close frees the whole */
  disco_h2_writer_t *w; /* scratch for encoding replies */
} dl_dubbo_server_t;

typedef struct {
  dl_handle_t h;        /* first */
  disco_h2_writer_t *w; /* scratch for encoding arguments */
  size_t pending;       /* calls whose callback has not run */
  uint64_t timeout_ms;
} dl_dubbo_client_t;

/* What reply and fail close over, with the server's box. */
typedef struct {
  uint64_t conn;
  int64_t id;
  int answered;
  int two_way;
} dl_dubbo_token_t;

/* A call in flight. */
typedef struct {
  dl_dubbo_client_t *client;
  int cb_ref;
  int heartbeat;
  uint64_t start_ns;
} dl_dubbo_call_t;

/* ------------------------------------------------------------ helpers */

/* [-0, +0] The optional string t[field] (table at idx), or NULL; raises
 * when it is something else. The string stays referenced by the table. */
static const char *dl_dubbo_field(lua_State *L, int idx, const char *field,
                                  int required) {
  const char *s;
  lua_getfield(L, idx, field);
  if (lua_isnil(L, -1) && !required) {
    lua_pop(L, 1);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING) {
    lua_pushfstring(L, "%s must be a string", field);
    luaL_argerror(L, idx, lua_tostring(L, -1));
  }
  s = lua_tostring(L, -1);
  lua_pop(L, 1);
  return s;
}

/* [-0, +0] Checks that opts (at 2) is a table and reads its host, name and
 * port; `required`: host and a port from 1 must be there (a client), else
 * both are optional and port 0 picks a free one (a server). */
static void dl_dubbo_endpoint(lua_State *L, int required, const char **host,
                              const char **name, int *port) {
  double p = 0;
  luaL_checktype(L, 2, LUA_TTABLE);
  *host = dl_dubbo_field(L, 2, "host", required);
  *name = dl_dubbo_field(L, 2, "name", 0);
  dl_option_number(L, "port", required ? 1 : 0, 65535, &p);
  luaL_argcheck(L, !required || p >= 1, 2, "port is required");
  *port = (int)p;
}

/* [-0, +0] A new box of type mt for `size` bytes of handle state, with the
 * name from opts.name; the box is pushed. May raise. */
static dl_handle_t *dl_dubbo_box(lua_State *L, dl_loop_t *lp, size_t size,
                                 const char *mt, const char *name) {
  dl_handle_t **box;
  dl_handle_t *h = (dl_handle_t *)calloc(1, size);
  if (h == NULL)
    luaL_error(L, "out of memory");
  box = (dl_handle_t **)lua_newuserdata(L, sizeof(*box));
  *box = h;
  h->owner = lp;
  h->owner_ref = LUA_NOREF;
  h->cb_ref = LUA_NOREF;
  h->self_ref = LUA_NOREF;
  h->box_alive = 1;
  strncpy(h->name, name, sizeof(h->name) - 1);
  h->name[sizeof(h->name) - 1] = '\0';
  luaL_getmetatable(L, mt);
  lua_setmetatable(L, -2);
  return h;
}

/* ------------------------------------------------------------- server */

static void dl_dubbo_server_close_core(void *core) {
  disco_dubbo_server_close((disco_dubbo_server_t *)core);
}

static void dl_dubbo_server_set_ref_core(void *core, int ref) {
  (void)core;
  (void)ref; /* a server keeps the loop alive while open */
}

static void dl_dubbo_server_on_close(void *core, void *data) {
  dl_dubbo_server_t *s = (dl_dubbo_server_t *)data;
  disco_h2_writer_free(s->w);
  s->w = NULL;
  dl_handle_on_close(core, data);
}

/* reply(value) -> true | nil, err, ename. Raises when answered already or
 * when the value cannot be encoded. Upvalues: the server box, the token. */
static int dl_dubbo_reply(lua_State *L) {
  dl_dubbo_server_t *s =
      *(dl_dubbo_server_t **)lua_touserdata(L, lua_upvalueindex(1));
  dl_dubbo_token_t *tok =
      (dl_dubbo_token_t *)lua_touserdata(L, lua_upvalueindex(2));
  const char *data = NULL;
  size_t len = 0;
  char err[256];
  int rc;

  if (tok->answered)
    return luaL_error(L, "this request was answered already");
  if (s->h.core == NULL || s->h.closing)
    return dl_push_error(L, DISCO_ECLOSED);
  if (!lua_isnoneornil(L, 1)) {
    disco_h2_writer_reset(s->w);
    err[0] = '\0';
    if (dl_h2_write_lua(L, 1, s->w, err, sizeof(err)) != 0)
      return luaL_argerror(L, 1, err);
    data = disco_h2_writer_data(s->w, &len);
  }
  tok->answered = 1;
  if (!tok->two_way) {
    lua_pushboolean(L, 1);
    return 1;
  }
  rc = disco_dubbo_server_reply((disco_dubbo_server_t *)s->h.core, tok->conn,
                                tok->id, DISCO_DUBBO_OK, data, len, NULL);
  if (rc != 0)
    return dl_push_error(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* fail(status, message) -> true | nil, err, ename. status is a name
 * ("service_not_found") or a number (60). */
static int dl_dubbo_fail(lua_State *L) {
  dl_dubbo_server_t *s =
      *(dl_dubbo_server_t **)lua_touserdata(L, lua_upvalueindex(1));
  dl_dubbo_token_t *tok =
      (dl_dubbo_token_t *)lua_touserdata(L, lua_upvalueindex(2));
  const char *message = luaL_optstring(L, 2, NULL);
  int status;
  int rc;

  if (lua_type(L, 1) == LUA_TNUMBER) {
    status = (int)lua_tointeger(L, 1);
    luaL_argcheck(L, status > 0 && status < 256 && status != DISCO_DUBBO_OK, 1,
                  "not an error status");
  } else if (disco_dubbo_status_parse(luaL_checkstring(L, 1), &status) != 0 ||
             status == DISCO_DUBBO_OK) {
    return luaL_argerror(L, 1, "not a dubbo error status name");
  }
  if (tok->answered)
    return luaL_error(L, "this request was answered already");
  if (s->h.core == NULL || s->h.closing)
    return dl_push_error(L, DISCO_ECLOSED);
  tok->answered = 1;
  if (!tok->two_way) {
    lua_pushboolean(L, 1);
    return 1;
  }
  rc = disco_dubbo_server_reply((disco_dubbo_server_t *)s->h.core, tok->conn,
                                tok->id, status, NULL, 0, message);
  if (rc != 0)
    return dl_push_error(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* The core's request callback: never raises; reaches Lua through dl_pcall
 * only. The request's values are converted at once: they are valid only
 * during this call. */
static void dl_dubbo_request_cb(disco_dubbo_server_t *server, uint64_t conn,
                                const disco_dubbo_request_t *req) {
  dl_dubbo_server_t *s = (dl_dubbo_server_t *)disco_dubbo_server_data(server);
  lua_State *L;
  dl_dubbo_token_t *tok;
  size_t i;

  if (s->h.cb_ref == LUA_NOREF || s->h.self_ref == LUA_NOREF ||
      s->h.owner->ctx->in_gc) {
    disco_dubbo_server_reply(server, conn, req->id, DISCO_DUBBO_SERVER_ERROR,
                             NULL, 0, "server is closing");
    return;
  }
  L = dl_callback_state(s->h.owner->ctx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->h.cb_ref);
  lua_createtable(L, 0, 12);
  lua_pushstring(L, req->path);
  lua_setfield(L, -2, "path");
  if (req->version != NULL) {
    lua_pushstring(L, req->version);
    lua_setfield(L, -2, "version");
  }
  if (req->group != NULL) {
    lua_pushstring(L, req->group);
    lua_setfield(L, -2, "group");
  }
  lua_pushstring(L, req->method);
  lua_setfield(L, -2, "method");
  lua_pushstring(L, req->param_types);
  lua_setfield(L, -2, "types");
  if (req->dubbo_version != NULL) {
    lua_pushstring(L, req->dubbo_version);
    lua_setfield(L, -2, "dubbo_version");
  }
  lua_pushnumber(L, (lua_Number)req->id);
  lua_setfield(L, -2, "id");
  lua_pushnumber(L, (lua_Number)conn);
  lua_setfield(L, -2, "conn");
  lua_createtable(L, (int)req->nargs, 0);
  for (i = 0; i < req->nargs; i++) {
    dl_h2_push_value(L, req->args[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_setfield(L, -2, "args");
  if (req->attachments != NULL)
    dl_h2_push_value(L, req->attachments);
  else
    lua_newtable(L);
  lua_setfield(L, -2, "attachments");
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->h.self_ref);
  tok = (dl_dubbo_token_t *)lua_newuserdata(L, sizeof(*tok));
  tok->conn = conn;
  tok->id = req->id;
  tok->answered = 0;
  tok->two_way = req->two_way;
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, dl_dubbo_reply, 2);
  lua_setfield(L, -4, "reply");
  lua_pushcclosure(L, dl_dubbo_fail, 2);
  lua_setfield(L, -2, "fail");
  dl_pcall(s->h.owner, L, 1, s->h.name);
}

/* loop:dubbo_server(opts) */
static int dl_loop_dubbo_server(lua_State *L) {
  dl_loop_t *lp = dl_check_loop(L, 1);
  disco_dubbo_server_options_t opts;
  disco_dubbo_server_t *server;
  dl_dubbo_server_t *s;
  const char *host;
  const char *name;
  int port;
  int err;

  dl_dubbo_endpoint(L, 0, &host, &name, &port);
  disco_dubbo_server_options_init(&opts);
  dl_option_size(L, "max_connections", 1, 1e6, &opts.max_connections);
  dl_option_ms(L, "idle_timeout", 0, &opts.idle_timeout_ms);
  dl_option_size(L, "max_frame", 16, 0x7fffffff, &opts.max_frame);
  lua_getfield(L, 2, "on_request");
  if (!lua_isfunction(L, -1))
    return luaL_argerror(L, 2, "on_request must be a function");
  lua_pop(L, 1);

  s = (dl_dubbo_server_t *)dl_dubbo_box(L, lp, sizeof(*s), DL_DUBBO_SERVER_MT,
                                        name != NULL ? name : "dubbo-server");
  err = disco_h2_writer_new(&s->w);
  if (err == 0) {
    lua_State *previous = dl_enter(lp->ctx, L); /* it may log */
    err = disco_dubbo_server_new(lp->loop, host != NULL ? host : "0.0.0.0",
                                 port, &opts, dl_dubbo_request_cb,
                                 dl_dubbo_server_on_close, s, &server);
    dl_leave(lp->ctx, previous);
  }
  if (err != 0) {
    disco_h2_writer_free(s->w);
    s->w = NULL;
    return dl_push_error(L, err); /* the box's __gc frees s */
  }
  s->h.core = server;
  s->h.close_core = dl_dubbo_server_close_core;
  s->h.set_ref_core = dl_dubbo_server_set_ref_core;
  lua_pushvalue(L, 1);
  s->h.owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, 2, "on_request");
  dl_handle_activate(L, &s->h, lua_gettop(L), lua_gettop(L) - 1);
  lua_pop(L, 1);
  return 1;
}

static int dl_dubbo_server_port(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_DUBBO_SERVER_MT, 1);
  lua_pushinteger(L, disco_dubbo_server_port((disco_dubbo_server_t *)h->core));
  return 1;
}

static int dl_dubbo_server_stats(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_DUBBO_SERVER_MT, 1);
  disco_dubbo_server_stats_t st;
  disco_dubbo_server_stats((disco_dubbo_server_t *)h->core, &st);
  lua_createtable(L, 0, 7);
  dl_set_count(L, "connections", st.connections);
  dl_set_count(L, "accepted", st.accepted);
  dl_set_count(L, "requests", st.requests);
  dl_set_count(L, "heartbeats", st.heartbeats);
  dl_set_count(L, "protocol_errors", st.protocol_errors);
  dl_set_count(L, "rejected", st.rejected);
  dl_set_count(L, "idle_closed", st.idle_closed);
  return 1;
}

static const luaL_Reg dl_dubbo_server_methods[] = {
  { "port", dl_dubbo_server_port },
  { "stats", dl_dubbo_server_stats },
  { NULL, NULL },
};

/* ------------------------------------------------------------- client */

static void dl_dubbo_client_close_core(void *core) {
  disco_dubbo_client_close((disco_dubbo_client_t *)core);
}

static void dl_dubbo_client_set_ref_core(void *core, int ref) {
  (void)core;
  (void)ref;
}

static void dl_dubbo_client_on_close(void *core, void *data) {
  dl_dubbo_client_t *c = (dl_dubbo_client_t *)data;
  disco_h2_writer_free(c->w);
  c->w = NULL;
  dl_handle_on_close(core, data);
}

/* Completes one call: the one place its callback ref is released. */
static void dl_dubbo_call_cb(disco_dubbo_client_t *client,
                             const disco_dubbo_result_t *r, void *arg) {
  dl_dubbo_call_t *call = (dl_dubbo_call_t *)arg;
  dl_dubbo_client_t *c = call->client;
  lua_State *L = dl_callback_state(c->h.owner->ctx);
  int nargs = 2;
  (void)client;
  lua_rawgeti(L, LUA_REGISTRYINDEX, call->cb_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, call->cb_ref);
  if (--c->pending == 0)
    dl_unref(L, &c->h.self_ref);
  if (c->h.owner->ctx->in_gc) {
    lua_pop(L, 1);
    free(call);
    return;
  }
  if (r->status != 0) {
    lua_pushfstring(L, "%s: %s", disco_err_name(r->status),
                    r->message != NULL ? r->message
                                       : disco_strerror(r->status));
  } else {
    lua_pushnil(L);
  }
  if (call->heartbeat) {
    if (r->status == 0)
      lua_pushnumber(L, (lua_Number)(uv_hrtime() - call->start_ns) / 1e6);
    else
      lua_pushnil(L);
  } else {
    /* A null response (or a failure) gives nil; an exception response
     * gives its decoded Throwable after the error. */
    if (r->value != NULL)
      dl_h2_push_value(L, r->value);
    else
      lua_pushnil(L);
    if (r->attachments != NULL)
      dl_h2_push_value(L, r->attachments);
    else
      lua_pushnil(L);
    nargs = 3;
  }
  free(call);
  dl_pcall(c->h.owner, L, nargs, c->h.name);
}

/* loop:dubbo_client(opts) */
static int dl_loop_dubbo_client(lua_State *L) {
  dl_loop_t *lp = dl_check_loop(L, 1);
  disco_dubbo_client_options_t opts;
  disco_dubbo_client_t *client;
  dl_dubbo_client_t *c;
  const char *host;
  const char *name;
  int port;
  int err;

  dl_dubbo_endpoint(L, 1, &host, &name, &port);
  disco_dubbo_client_options_init(&opts);
  dl_option_ms(L, "timeout", 1, &opts.timeout_ms);
  dl_option_ms(L, "heartbeat", 0, &opts.heartbeat_ms);
  dl_option_size(L, "max_frame", 16, 0x7fffffff, &opts.max_frame);

  c = (dl_dubbo_client_t *)dl_dubbo_box(L, lp, sizeof(*c), DL_DUBBO_CLIENT_MT,
                                        name != NULL ? name : "dubbo-client");
  c->timeout_ms = opts.timeout_ms;
  err = disco_h2_writer_new(&c->w);
  if (err == 0)
    err = disco_dubbo_client_new(lp->loop, host, port, &opts,
                                 dl_dubbo_client_on_close, c, &client);
  if (err != 0) {
    disco_h2_writer_free(c->w);
    c->w = NULL;
    return dl_push_error(L, err);
  }
  c->h.core = client;
  c->h.close_core = dl_dubbo_client_close_core;
  c->h.set_ref_core = dl_dubbo_client_set_ref_core;
  lua_pushvalue(L, 1);
  c->h.owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

/* [-0, +0] A call record for the callback at cb_idx; anchors the box at 1
 * while calls are out. May raise on memory exhaustion only. */
static dl_dubbo_call_t *dl_dubbo_call_new(lua_State *L, dl_dubbo_client_t *c,
                                          int cb_idx) {
  dl_dubbo_call_t *call = (dl_dubbo_call_t *)malloc(sizeof(*call));
  if (call == NULL)
    luaL_error(L, "out of memory");
  call->client = c;
  call->heartbeat = 0;
  call->start_ns = uv_hrtime();
  lua_pushvalue(L, cb_idx);
  call->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return call;
}

/* [-0, +1|+3] Ends call/heartbeat: true, or the error tuple after
 * releasing the record (its callback will never run). */
static int dl_dubbo_submitted(lua_State *L, dl_dubbo_client_t *c,
                              dl_dubbo_call_t *call, int err) {
  if (err != 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, call->cb_ref);
    free(call);
    return dl_push_error(L, err);
  }
  if (c->pending++ == 0 && c->h.self_ref == LUA_NOREF) {
    lua_pushvalue(L, 1);
    c->h.self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* client:call(call, cb) */
static int dl_dubbo_client_call(lua_State *L) {
  dl_dubbo_client_t *c =
      (dl_dubbo_client_t *)dl_check_handle(L, 1, DL_DUBBO_CLIENT_MT, 1);
  disco_dubbo_call_t call;
  dl_dubbo_call_t *rec;
  const char **keys = NULL;
  const char **values = NULL;
  double timeout = 0;
  char err[256];
  size_t n, i, cap = 0;
  int rc;

  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  memset(&call, 0, sizeof(call));
  call.path = dl_dubbo_field(L, 2, "path", 1);
  call.method = dl_dubbo_field(L, 2, "method", 1);
  call.version = dl_dubbo_field(L, 2, "version", 0);
  call.group = dl_dubbo_field(L, 2, "group", 0);
  call.param_types = dl_dubbo_field(L, 2, "types", 0);
  lua_getfield(L, 2, "timeout");
  if (!lua_isnil(L, -1)) {
    timeout = lua_tonumber(L, -1);
    luaL_argcheck(L, timeout >= 1 && timeout <= 86400000, 2,
                  "timeout must be a number of ms");
  }
  lua_pop(L, 1);
  /* Arguments: one hessian2 stream. */
  disco_h2_writer_reset(c->w);
  lua_getfield(L, 2, "args"); /* stays at index 4 */
  if (!lua_isnil(L, 4)) {
    luaL_argcheck(L, lua_istable(L, 4), 2, "args must be a table");
    n = lua_objlen(L, 4);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, 4, (int)i);
      err[0] = '\0';
      if (dl_h2_write_lua(L, lua_gettop(L), c->w, err, sizeof(err)) != 0) {
        lua_pushfstring(L, "args[%d]: %s", (int)i, err);
        return luaL_argerror(L, 2, lua_tostring(L, -1));
      }
      lua_pop(L, 1);
    }
  }
  call.args = disco_h2_writer_data(c->w, &call.args_len);
  /* Attachments: string -> string. The strings stay in their table. */
  lua_getfield(L, 2, "attachments"); /* index 5 */
  if (!lua_isnil(L, 5)) {
    luaL_argcheck(L, lua_istable(L, 5), 2, "attachments must be a table");
    lua_pushnil(L);
    while (lua_next(L, 5) != 0) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
        free(keys);
        free(values);
        return luaL_argerror(L, 2, "attachments must map strings to strings");
      }
      if (call.nattachments == cap) {
        const char **k2;
        const char **v2;
        cap = cap != 0 ? 2 * cap : 8;
        k2 = (const char **)realloc(keys, cap * sizeof(*keys));
        if (k2 != NULL)
          keys = k2;
        v2 = (const char **)realloc(values, cap * sizeof(*values));
        if (v2 != NULL)
          values = v2;
        if (k2 == NULL || v2 == NULL) {
          free(keys);
          free(values);
          return luaL_error(L, "out of memory");
        }
      }
      keys[call.nattachments] = lua_tostring(L, -2);
      values[call.nattachments] = lua_tostring(L, -1);
      call.nattachments++;
      lua_pop(L, 1);
    }
  }
  call.attachment_keys = keys;
  call.attachment_values = values;
  rec = (dl_dubbo_call_t *)malloc(sizeof(*rec));
  if (rec == NULL) {
    free(keys);
    free(values);
    return luaL_error(L, "out of memory");
  }
  rec->client = c;
  rec->heartbeat = 0;
  rec->start_ns = uv_hrtime();
  lua_pushvalue(L, 3);
  rec->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  rc = disco_dubbo_client_call((disco_dubbo_client_t *)c->h.core, &call,
                               (uint64_t)timeout, dl_dubbo_call_cb, rec);
  free(keys);
  free(values);
  return dl_dubbo_submitted(L, c, rec, rc);
}

/* client:heartbeat(cb [, timeout]) */
static int dl_dubbo_client_heartbeat(lua_State *L) {
  dl_dubbo_client_t *c =
      (dl_dubbo_client_t *)dl_check_handle(L, 1, DL_DUBBO_CLIENT_MT, 1);
  lua_Number timeout = luaL_optnumber(L, 3, 0);
  dl_dubbo_call_t *rec;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_argcheck(L, timeout >= 0 && timeout <= 86400000, 3,
                "timeout must be a number of ms");
  rec = dl_dubbo_call_new(L, c, 2);
  rec->heartbeat = 1;
  return dl_dubbo_submitted(
      L, c, rec,
      disco_dubbo_client_heartbeat((disco_dubbo_client_t *)c->h.core,
                                   (uint64_t)timeout, dl_dubbo_call_cb, rec));
}

static int dl_dubbo_client_connected(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_DUBBO_CLIENT_MT, 0);
  lua_pushboolean(
      L, h->core != NULL && !h->closing &&
             disco_dubbo_client_connected((disco_dubbo_client_t *)h->core));
  return 1;
}

static const luaL_Reg dl_dubbo_client_methods[] = {
  { "call", dl_dubbo_client_call },
  { "heartbeat", dl_dubbo_client_heartbeat },
  { "connected", dl_dubbo_client_connected },
  { NULL, NULL },
};

/* Creates both metatables and adds loop:dubbo_server and loop:dubbo_client;
 * runs after dl_loop_register. */
void dl_dubbo_register(lua_State *L) {
  dl_handle_register(L, DL_DUBBO_SERVER_MT, dl_dubbo_server_methods);
  /* close completes outstanding calls at once with "ECANCELED: ..."; a
   * client with calls out is anchored, so __gc only meets idle clients. */
  dl_handle_register_entering(L, DL_DUBBO_CLIENT_MT, dl_dubbo_client_methods);
  luaL_getmetatable(L, DL_LOOP_MT);
  lua_getfield(L, -1, "__index");
  lua_pushcfunction(L, dl_loop_dubbo_server);
  lua_setfield(L, -2, "dubbo_server");
  lua_pushcfunction(L, dl_loop_dubbo_client);
  lua_setfield(L, -2, "dubbo_client");
  lua_pop(L, 2);
}
