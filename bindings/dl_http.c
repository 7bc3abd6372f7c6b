/*
 * disco.http_server: the HTTP/1.1 server (core/http_server.c) as seen from
 * Lua.
 *
 *   loop:http_server{ host = "127.0.0.1", port = 0, name =,
 *                     max_header_bytes =, max_headers =, max_body_bytes =,
 *                     request_timeout =, idle_timeout =, max_connections =,
 *                     on_request = function(req) end }
 *     -> server | nil, err, ename
 *   req = { method, path, query, headers = { [lower-case name] = value },
 *           body, peer, reply = function(self, status, headers, body) }
 *   server:port(), server:address(), server:stats(), server:close(),
 *   server:is_closed()
 *
 * References, as for the dubbo server: on_request is the server's callback
 * (cb_ref) and an open server anchors its own box (self_ref); both go when
 * the core server has closed. reply is a closure over the server's box and
 * a small token userdata (the request id, whether it was answered), so it
 * works after on_request returned and for as long as Lua holds it.
 *
 * A handler that raises is reported through dl_pcall (traceback, log) and,
 * unless it replied first, its request is answered 500 so that the client
 * never hangs.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dl.h"

/* What reply closes over, with the server's box. */
typedef struct {
  uint64_t id;
  int answered;
} dl_http_token_t;

/* [-0, +1] A new box for the server's handle state, named `name`. May
 * raise (memory). */
static dl_handle_t *dl_http_box(lua_State *L, dl_loop_t *lp, const char *name) {
  dl_handle_t **box;
  dl_handle_t *h = (dl_handle_t *)calloc(1, sizeof(*h));
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
  luaL_getmetatable(L, DL_HTTP_SERVER_MT);
  lua_setmetatable(L, -2);
  return h;
}

/* [-0, +0] The optional string opts[field] (opts at 2), or NULL; raises
 * when it is something else. The string stays referenced by the table. */
static const char *dl_http_string_option(lua_State *L, const char *field) {
  const char *s;
  lua_getfield(L, 2, field);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING) {
    lua_pushfstring(L, "%s must be a string", field);
    luaL_argerror(L, 2, lua_tostring(L, -1));
  }
  s = lua_tostring(L, -1);
  lua_pop(L, 1);
  return s;
}

static void dl_http_server_close_core(void *core) {
  disco_http_server_close((disco_http_server_t *)core);
}

static void dl_http_server_set_ref_core(void *core, int ref) {
  (void)core;
  (void)ref; /* a server keeps the loop alive while open */
}

/* reply([self,] status, headers, body) -> true | false, err, ename.
 * Raises when answered already or for bad arguments; false with
 * "ECLOSED: ..." when the client or the server has gone. Upvalues: the
 * server box, the token. */
static int dl_http_reply(lua_State *L) {
  dl_handle_t *h = *(dl_handle_t **)lua_touserdata(L, lua_upvalueindex(1));
  dl_http_token_t *tok =
      (dl_http_token_t *)lua_touserdata(L, lua_upvalueindex(2));
  /* req:reply(...) passes the request table first; req.reply(...) not. */
  int base = lua_type(L, 1) == LUA_TTABLE ? 2 : 1;
  disco_http_header_t *hs = NULL;
  const char *body = NULL;
  size_t body_len = 0;
  size_t n = 0;
  lua_Number status;
  int rc;

  if (tok->answered)
    return luaL_error(L, "reply: already replied");
  status = luaL_checknumber(L, base);
  luaL_argcheck(
      L, status >= 100 && status <= 599 && status == (lua_Number)(int)status,
      base, "status must be an integer from 100 to 599");
  if (!lua_isnoneornil(L, base + 1)) {
    luaL_checktype(L, base + 1, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, base + 1) != 0) {
      n++;
      lua_pop(L, 1);
    }
    /* Lua memory, so that a raise below leaks nothing. */
    hs = (disco_http_header_t *)lua_newuserdata(L,
                                                (n > 0 ? n : 1) * sizeof(*hs));
    n = 0;
    lua_pushnil(L);
    while (lua_next(L, base + 1) != 0) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
        return luaL_argerror(L, base + 1,
                             "headers must map names to string values");
      /* Both strings stay referenced by the headers table. */
      hs[n].name = lua_tolstring(L, -2, &hs[n].name_len);
      hs[n].value = lua_tolstring(L, -1, &hs[n].value_len);
      n++;
      lua_pop(L, 1);
    }
  }
  if (!lua_isnoneornil(L, base + 2))
    body = luaL_checklstring(L, base + 2, &body_len);
  if (h->core == NULL || h->closing) {
    tok->answered = 1;
    lua_pushboolean(L, 0);
    lua_pushstring(L, "ECLOSED: the server is closed");
    lua_pushstring(L, "ECLOSED");
    return 3;
  }
  rc = disco_http_server_reply((disco_http_server_t *)h->core, tok->id,
                               (int)status, hs, n, body, body_len);
  if (rc == DISCO_EINVAL)
    return luaL_argerror(L, base + 1,
                         "header names must be tokens and values must not "
                         "contain CR, LF or NUL");
  tok->answered = 1;
  if (rc == DISCO_ECLOSED) {
    lua_pushboolean(L, 0);
    lua_pushstring(L, "ECLOSED: the client connection has closed");
    lua_pushstring(L, "ECLOSED");
    return 3;
  }
  if (rc != 0)
    return dl_push_error(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* [-0, +1] The request as the Lua table on_request gets, without reply.
 * May raise on memory exhaustion only. */
static void dl_http_push_request(lua_State *L,
                                 const disco_http_request_t *req) {
  size_t i;
  lua_createtable(L, 0, 8);
  lua_pushstring(L, req->method);
  lua_setfield(L, -2, "method");
  lua_pushlstring(L, req->path, req->path_len);
  lua_setfield(L, -2, "path");
  if (req->query != NULL) {
    lua_pushlstring(L, req->query, req->query_len);
    lua_setfield(L, -2, "query");
  }
  lua_createtable(L, 0, (int)req->nheaders);
  for (i = 0; i < req->nheaders; i++) {
    lua_pushlstring(L, req->headers[i].name, req->headers[i].name_len);
    lua_pushlstring(L, req->headers[i].value, req->headers[i].value_len);
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, req->body, req->body_len);
  lua_setfield(L, -2, "body");
  lua_pushstring(L, req->peer);
  lua_setfield(L, -2, "peer");
}

/* The core's request callback: never raises; reaches Lua through dl_pcall
 * only. The request's values are copied into Lua at once. */
static void dl_http_request_cb(disco_http_server_t *server,
                               const disco_http_request_t *req) {
  static const char closing[] = "server is closing\n";
  static const char failed[] = "internal server error\n";
  dl_handle_t *h = (dl_handle_t *)disco_http_server_data(server);
  dl_http_token_t *tok;
  lua_State *L;
  int rc;

  if (h->cb_ref == LUA_NOREF || h->self_ref == LUA_NOREF ||
      h->owner->ctx->in_gc) {
    disco_http_server_reply(server, req->id, 503, NULL, 0, closing,
                            sizeof(closing) - 1);
    return;
  }
  L = dl_callback_state(h->owner->ctx);
  /* The box and the token stay below the call, so that the token is still
   * there to look at when the handler raised. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->self_ref);
  tok = (dl_http_token_t *)lua_newuserdata(L, sizeof(*tok));
  tok->id = req->id;
  tok->answered = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->cb_ref);
  dl_http_push_request(L, req);
  lua_pushvalue(L, -4);
  lua_pushvalue(L, -4);
  lua_pushcclosure(L, dl_http_reply, 2);
  lua_setfield(L, -2, "reply");
  rc = dl_pcall(h->owner, L, 1, h->name);
  if (rc != 0 && !tok->answered && h->core != NULL) {
    tok->answered = 1;
    disco_http_server_reply((disco_http_server_t *)h->core, req->id, 500, NULL,
                            0, failed, sizeof(failed) - 1);
  }
  lua_pop(L, 2);
}

/* loop:http_server(opts) */
static int dl_loop_http_server(lua_State *L) {
  dl_loop_t *lp = dl_check_loop(L, 1);
  disco_http_server_options_t opts;
  disco_http_server_t *server;
  dl_handle_t *h;
  const char *host;
  const char *name;
  double port = 0;
  int err;

  luaL_checktype(L, 2, LUA_TTABLE);
  host = dl_http_string_option(L, "host");
  name = dl_http_string_option(L, "name");
  dl_option_number(L, "port", 0, 65535, &port);
  luaL_argcheck(L, port == (double)(int)port, 2, "port must be an integer");
  disco_http_server_options_init(&opts);
  dl_option_size(L, "max_header_bytes", 64, 1048576, &opts.max_header_bytes);
  dl_option_size(L, "max_headers", 1, 1000, &opts.max_headers);
  dl_option_size(L, "max_body_bytes", 0, 0x7fffffff, &opts.max_body_bytes);
  dl_option_ms(L, "request_timeout", 0, &opts.request_timeout_ms);
  dl_option_ms(L, "idle_timeout", 0, &opts.idle_timeout_ms);
  dl_option_size(L, "max_connections", 1, 1e6, &opts.max_connections);
  lua_getfield(L, 2, "on_request");
  if (!lua_isfunction(L, -1))
    return luaL_argerror(L, 2, "on_request must be a function");
  lua_pop(L, 1);
  opts.name = name != NULL ? name : "http";

  h = dl_http_box(L, lp, opts.name);
  {
    lua_State *previous = dl_enter(lp->ctx, L); /* it may log */
    err = disco_http_server_new(lp->loop, host != NULL ? host : "127.0.0.1",
                                (int)port, &opts, dl_http_request_cb,
                                dl_handle_on_close, h, &server);
    dl_leave(lp->ctx, previous);
  }
  if (err != 0)
    return dl_push_error(L, err); /* the box's __gc frees h */
  h->core = server;
  h->close_core = dl_http_server_close_core;
  h->set_ref_core = dl_http_server_set_ref_core;
  lua_pushvalue(L, 1);
  h->owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, 2, "on_request");
  dl_handle_activate(L, h, lua_gettop(L), lua_gettop(L) - 1);
  lua_pop(L, 1);
  return 1;
}

static int dl_http_server_port(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_HTTP_SERVER_MT, 1);
  lua_pushinteger(L, disco_http_server_port((disco_http_server_t *)h->core));
  return 1;
}

static int dl_http_server_address(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_HTTP_SERVER_MT, 1);
  char buf[80];
  disco_http_server_address((disco_http_server_t *)h->core, buf, sizeof(buf));
  lua_pushstring(L, buf);
  return 1;
}

static int dl_http_server_stats(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_HTTP_SERVER_MT, 1);
  disco_http_server_stats_t st;
  disco_http_server_stats((disco_http_server_t *)h->core, &st);
  lua_createtable(L, 0, 8);
  dl_set_count(L, "connections", st.connections);
  dl_set_count(L, "accepted", st.accepted);
  dl_set_count(L, "requests", st.requests);
  dl_set_count(L, "replies", st.replies);
  dl_set_count(L, "bad_requests", st.bad_requests);
  dl_set_count(L, "too_large", st.too_large);
  dl_set_count(L, "timeouts", st.timeouts);
  dl_set_count(L, "refused", st.refused);
  return 1;
}

static const luaL_Reg dl_http_server_methods[] = {
  { "port", dl_http_server_port },
  { "address", dl_http_server_address },
  { "stats", dl_http_server_stats },
  { NULL, NULL },
};

/* Creates the metatable and adds loop:http_server; runs after
 * dl_loop_register. */
void dl_http_register(lua_State *L) {
  dl_handle_register(L, DL_HTTP_SERVER_MT, dl_http_server_methods);
  luaL_getmetatable(L, DL_LOOP_MT);
  lua_getfield(L, -1, "__index");
  lua_pushcfunction(L, dl_loop_http_server);
  lua_setfield(L, -2, "http_server");
  lua_pop(L, 2);
}
