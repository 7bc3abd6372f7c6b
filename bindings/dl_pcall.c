/*
 * The one protected-call path for every callback from the loop into Lua.
 *
 * A daemon must survive a throwing callback: the error and its traceback are
 * reported (through a replaceable handler, the loop's logger by default),
 * counted, and the loop carries on. Nothing here exits the process.
 */
#include "dl.h"

/* [-1, +1] lua_pcall message handler: adds a traceback to the error. Never
 * raises (a failing traceback falls back to the bare message). */
static int dl_traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    /* A non-string error value: describe it rather than lose it. */
    if (luaL_callmeta(L, 1, "__tostring") && lua_isstring(L, -1))
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)",
                            luaL_typename(L, 1));
  }
  lua_getglobal(L, "debug");
  if (!lua_istable(L, -1)) {
    lua_pushstring(L, msg);
    return 1;
  }
  lua_getfield(L, -1, "traceback");
  if (!lua_isfunction(L, -1)) {
    lua_pushstring(L, msg);
    return 1;
  }
  lua_pushstring(L, msg);
  lua_pushinteger(L, 2);
  lua_call(L, 2, 1);
  return 1;
}

/* [-1, +0] Reports the error message on top of the stack. The Lua handler
 * (if any) runs protected; if it throws too, both go to the logger. */
static void dl_report_error(dl_loop_t *lp, lua_State *L, const char *who) {
  dl_ctx_t *ctx = lp->ctx;
  const char *msg = lua_tostring(L, -1);
  if (msg == NULL)
    msg = "(no message)";
  if (ctx->error_handler_ref != LUA_NOREF && !ctx->in_error_handler &&
      !ctx->in_gc) {
    int rc;
    ctx->in_error_handler = 1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->error_handler_ref);
    lua_pushstring(L, who);
    lua_pushvalue(L, -3);
    rc = lua_pcall(L, 2, 0, 0);
    ctx->in_error_handler = 0;
    if (rc == 0) {
      lua_pop(L, 1);
      return;
    }
    disco_log(lp->loop, DISCO_LOG_ERROR, who,
              "error handler failed: %s (reporting: %s)",
              lua_tostring(L, -1) ? lua_tostring(L, -1) : "?", msg);
    lua_pop(L, 2);
    return;
  }
  disco_log(lp->loop, DISCO_LOG_ERROR, who, "callback error: %s", msg);
  lua_pop(L, 1);
}

int dl_pcall(dl_loop_t *lp, lua_State *L, int nargs, const char *who) {
  dl_ctx_t *ctx = lp->ctx;
  int base, rc;
  if (ctx->in_gc) {
    /* A finalizer is closing the loop: Lua must not run from here. */
    lua_pop(L, nargs + 1);
    return LUA_ERRRUN;
  }
  base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, dl_traceback);
  lua_insert(L, base);
  rc = lua_pcall(L, nargs, 0, base);
  if (rc != 0) {
    ctx->callback_errors++;
    dl_report_error(lp, L, who);
  }
  lua_remove(L, base);
  return rc;
}

/* core.set_error_handler(fn | nil): fn(who, message_with_traceback) replaces
 * the default report (an ERROR log line) of errors raised by callbacks. */
int dl_set_error_handler(lua_State *L) {
  dl_ctx_t *ctx = dl_ctx(L);
  if (!lua_isnoneornil(L, 1))
    luaL_checktype(L, 1, LUA_TFUNCTION);
  dl_unref(L, &ctx->error_handler_ref);
  if (!lua_isnoneornil(L, 1)) {
    lua_pushvalue(L, 1);
    ctx->error_handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 0;
}

/* core.callback_errors() -> how many callbacks raised in this Lua state */
int dl_callback_errors(lua_State *L) {
  lua_pushnumber(L, (lua_Number)dl_ctx(L)->callback_errors);
  return 1;
}
