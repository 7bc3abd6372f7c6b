/*
 * luaopen_disco_core: the module table, the per-state context and the small
 * process-level helpers (time, pid, a blocking sleep for tools and tests).
 */
#include <assert.h>
#include <stdlib.h>

#include "dl.h"

/* The registry key of the per-state context: the address of this variable,
 * which is unique and never written (an immutable global, as STYLE allows). */
static const char dl_ctx_key = 0;

dl_ctx_t *dl_ctx(lua_State *L) {
  dl_ctx_t *ctx;
  lua_pushlightuserdata(L, (void *)&dl_ctx_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  ctx = (dl_ctx_t *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return ctx;
}

/*
 * [-0, +0] Finds or creates the context. It is a userdata without __gc so
 * that it stays valid while lua_close() runs the finalizers of loops and
 * handles, which still read it; Lua frees it after all finalizers ran.
 * Running this twice (busted reloads modules) finds the same context.
 */
static dl_ctx_t *dl_ctx_open(lua_State *L) {
  dl_ctx_t *ctx = dl_ctx(L);
  if (ctx != NULL)
    return ctx;
  lua_pushlightuserdata(L, (void *)&dl_ctx_key);
  ctx = (dl_ctx_t *)lua_newuserdata(L, sizeof(*ctx));
  ctx->cur_L = NULL;
  ctx->error_handler_ref = LUA_NOREF;
  ctx->in_error_handler = 0;
  ctx->in_gc = 0;
  ctx->callback_errors = 0;
  lua_rawset(L, LUA_REGISTRYINDEX);
  return ctx;
}

int dl_push_error(lua_State *L, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", disco_err_name(err), disco_strerror(err));
  lua_pushstring(L, disco_err_name(err));
  return 3;
}

void dl_unref(lua_State *L, int *ref) {
  if (*ref != LUA_NOREF && *ref != LUA_REFNIL)
    luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

lua_State *dl_callback_state(dl_ctx_t *ctx) {
  /* Callbacks only run while Lua drives the loop (run, step, close) or while
   * a finalizer closes it, and each of those sets cur_L. */
  assert(ctx->cur_L != NULL);
  return ctx->cur_L;
}

/* core.strerror(code) -> name, message */
static int dl_strerror(lua_State *L) {
  int err = (int)luaL_checkinteger(L, 1);
  lua_pushstring(L, disco_err_name(err));
  lua_pushstring(L, disco_strerror(err));
  return 2;
}

/* core.sleep(ms): blocks the calling thread. For tools and tests only; the
 * runtime never calls it. */
static int dl_sleep(lua_State *L) {
  lua_Number ms = luaL_checknumber(L, 1);
  luaL_argcheck(L, ms >= 0 && ms <= 3600 * 1000, 1, "0 to 3600000 ms");
  uv_sleep((unsigned int)ms);
  return 0;
}

static int dl_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_os_getpid());
  return 1;
}

/* core.hrtime() -> milliseconds from an arbitrary origin, sub-ms precision */
static int dl_hrtime(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e6);
  return 1;
}

/* core.md5_hex(s) -> 32 lower-case hex digits. `s` may hold any bytes. */
static int dl_md5_hex(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  char hex[33];
  int err = disco_md5_hex(s, len, hex);
  if (err != 0)
    return dl_push_error(L, err);
  lua_pushlstring(L, hex, 32);
  return 1;
}

static void dl_push_errors_table(lua_State *L) {
  lua_newtable(L);
#define DL__ERR_FIELD(name, value, msg)                                        \
  lua_pushinteger(L, (value));                                                 \
  lua_setfield(L, -2, #name);
  DISCO_ERRNO_MAP(DL__ERR_FIELD)
#undef DL__ERR_FIELD
}

static const luaL_Reg dl_functions[] = {
  { "new_loop", dl_loop_new },
  { "strerror", dl_strerror },
  { "sleep", dl_sleep },
  { "getpid", dl_getpid },
  { "hrtime", dl_hrtime },
  { "set_error_handler", dl_set_error_handler },
  { "callback_errors", dl_callback_errors },
  { "md5_hex", dl_md5_hex },
  { "time_ms", dl_time_ms },
  { "interface_addresses", dl_interface_addresses },
  { "trim_memory", dl_trim_memory },
  { "hessian2_decode", dl_hessian2_decode },
  { "hessian2_encode", dl_hessian2_encode },
  { NULL, NULL },
};

/* Exported with default visibility: the module's one entry point. */
int luaopen_disco_core(lua_State *L);

int luaopen_disco_core(lua_State *L) {
  dl_ctx_open(L);
  dl_loop_register(L);
  dl_timer_register(L);
  dl_signal_register(L);
  dl_fs_event_register(L);
  dl_zk_register(L);
  dl_zk_ephemeral_register(L);
  dl_zk_cache_register(L);
  dl_revcache_register(L);
  dl_dubbo_register(L);
  dl_http_register(L);
  dl_http_client_register(L);

  lua_newtable(L);
  luaL_register(L, NULL, dl_functions);
  dl_hessian2_register(L);
  lua_pushinteger(L, DL_ABI_VERSION);
  lua_setfield(L, -2, "ABI_VERSION");
  lua_pushstring(L, DISCO_VERSION_STRING);
  lua_setfield(L, -2, "VERSION");
  lua_pushstring(L, uv_version_string());
  lua_setfield(L, -2, "LIBUV_VERSION");
  dl_push_errors_table(L);
  lua_setfield(L, -2, "errors");
  return 1;
}
