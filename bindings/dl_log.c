/*
 * The loop's logger as seen from Lua: a Lua sink, levels, and log calls.
 *
 * The core calls the sink on the loop thread only (messages from ZooKeeper
 * threads travel through the loop's event queue), so the sink may call Lua.
 */
#include "dl.h"

static const char *const dl_level_names[] = { "error", "warn",  "info",
                                              "debug", "trace", NULL };

/* The core sink that forwards to Lua. Falls back to stderr whenever calling
 * Lua is not allowed (a finalizer runs, the sink itself is logging) or the
 * Lua sink fails, so that no message is lost. */
static void dl_log_sink(void *ud, disco_log_level_t level,
                        const char *component, const char *msg) {
  dl_loop_t *lp = (dl_loop_t *)ud;
  dl_ctx_t *ctx = lp->ctx;
  lua_State *L = ctx->cur_L;
  if (L == NULL || ctx->in_gc || lp->in_sink || lp->log_sink_ref == LUA_NOREF) {
    disco_log_stderr_sink(NULL, level, component, msg);
    return;
  }
  lp->in_sink = 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lp->log_sink_ref);
  lua_pushstring(L, disco_log_level_name(level));
  lua_pushstring(L, component);
  lua_pushstring(L, msg);
  if (lua_pcall(L, 3, 0, 0) != 0) {
    const char *why = lua_tostring(L, -1);
    disco_log_stderr_sink(NULL, level, component, msg);
    disco_log_stderr_sink(NULL, DISCO_LOG_ERROR, "log",
                          why != NULL ? why : "log sink failed");
    lua_pop(L, 1);
  }
  lp->in_sink = 0;
}

/* loop:set_log_sink(fn | nil): fn(level, component, message) receives every
 * message at or below the loop's level; nil restores stderr. */
int dl_loop_set_log_sink(lua_State *L) {
  dl_loop_t *lp = dl_check_loop(L, 1);
  if (!lua_isnoneornil(L, 2))
    luaL_checktype(L, 2, LUA_TFUNCTION);
  dl_unref(L, &lp->log_sink_ref);
  if (lua_isnoneornil(L, 2)) {
    disco_log_set_sink(lp->loop, NULL, NULL);
    return 0;
  }
  lua_pushvalue(L, 2);
  lp->log_sink_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  disco_log_set_sink(lp->loop, dl_log_sink, lp);
  return 0;
}

/* loop:log(level, component, message) */
int dl_loop_log(lua_State *L) {
  dl_loop_t *lp = dl_check_loop(L, 1);
  int level = luaL_checkoption(L, 2, NULL, dl_level_names);
  const char *component = luaL_checkstring(L, 3);
  const char *msg = luaL_checkstring(L, 4);
  lua_State *previous = dl_enter(lp->ctx, L);
  disco_log(lp->loop, (disco_log_level_t)level, component, "%s", msg);
  dl_leave(lp->ctx, previous);
  return 0;
}

/* loop:set_log_level(name) */
int dl_loop_set_log_level(lua_State *L) {
  dl_loop_t *lp = dl_check_loop(L, 1);
  int level = luaL_checkoption(L, 2, NULL, dl_level_names);
  disco_log_set_level(lp->loop, (disco_log_level_t)level);
  return 0;
}

/* loop:get_log_level() -> name */
int dl_loop_get_log_level(lua_State *L) {
  dl_loop_t *lp = dl_check_loop(L, 1);
  lua_pushstring(L, disco_log_level_name(disco_log_get_level(lp->loop)));
  return 1;
}

void dl_log_release(lua_State *L, dl_loop_t *lp) {
  dl_unref(L, &lp->log_sink_ref);
}
