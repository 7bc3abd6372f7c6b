/*
 * What timers, signals and fs events share: the userdata box, callback and
 * anchor refs, and the close path.
 *
 * The box (Lua memory) points at a dl_handle_t (C memory), which the core
 * handle points at too. Either side may go first: the Lua collector may take
 * the box of a stopped handle, or loop:close() may close the core handle
 * under a box that Lua still holds. The dl_handle_t is freed by whichever
 * lets go last.
 */
#include <stdlib.h>
#include <string.h>

#include "dl.h"

dl_handle_t *dl_handle_new(lua_State *L, int loop_idx, int name_idx,
                           const char *mt, const char *default_name) {
  dl_loop_t *lp = dl_check_loop(L, loop_idx);
  const char *name = luaL_optstring(L, name_idx, default_name);
  dl_handle_t **box;
  dl_handle_t *h = (dl_handle_t *)calloc(1, sizeof(*h));
  if (h == NULL)
    luaL_error(L, "out of memory");
  box = (dl_handle_t **)lua_newuserdata(L, sizeof(*box));
  *box = h;
  h->core = NULL;
  h->owner = lp;
  lua_pushvalue(L, loop_idx);
  h->owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  h->cb_ref = LUA_NOREF;
  h->self_ref = LUA_NOREF;
  h->box_alive = 1;
  strncpy(h->name, name, sizeof(h->name) - 1);
  h->name[sizeof(h->name) - 1] = '\0';
  luaL_getmetatable(L, mt);
  lua_setmetatable(L, -2);
  return h;
}

dl_handle_t *dl_check_handle(lua_State *L, int idx, const char *mt,
                             int must_be_open) {
  dl_handle_t **box = (dl_handle_t **)luaL_checkudata(L, idx, mt);
  if (must_be_open && ((*box)->core == NULL || (*box)->closing))
    luaL_argerror(L, idx, "handle is closed");
  return *box;
}

void dl_handle_activate(lua_State *L, dl_handle_t *h, int fn_idx, int box_idx) {
  dl_unref(L, &h->cb_ref);
  lua_pushvalue(L, fn_idx);
  h->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (h->self_ref == LUA_NOREF) {
    lua_pushvalue(L, box_idx);
    h->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

void dl_handle_deactivate(lua_State *L, dl_handle_t *h) {
  dl_unref(L, &h->self_ref);
}

int dl_handle_start_result(lua_State *L, dl_handle_t *h, int err) {
  if (err != 0) {
    dl_handle_deactivate(L, h);
    return dl_push_error(L, err);
  }
  lua_pushboolean(L, 1);
  return 1;
}

int dl_handle_stop_result(lua_State *L, dl_handle_t *h, int err) {
  if (err != 0)
    return dl_push_error(L, err);
  dl_handle_deactivate(L, h);
  lua_pushboolean(L, 1);
  return 1;
}

int dl_handle_push_callback(lua_State *L, dl_handle_t *h) {
  if (h->cb_ref == LUA_NOREF)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->cb_ref);
  if (h->self_ref != LUA_NOREF)
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->self_ref);
  else
    lua_pushnil(L);
  return 1;
}

/* Runs on the loop thread once the core handle has closed (by :close(), by
 * the box's finalizer or by loop close). Releases every Lua reference; calls
 * no Lua function. */
void dl_handle_on_close(void *core_handle, void *data) {
  dl_handle_t *h = (dl_handle_t *)data;
  lua_State *L = dl_callback_state(h->owner->ctx);
  (void)core_handle;
  h->core = NULL;
  h->closing = 1;
  dl_unref(L, &h->cb_ref);
  dl_unref(L, &h->self_ref);
  dl_unref(L, &h->owner_ref);
  if (!h->box_alive)
    free(h);
}

/* handle:close(): idempotent; the handle stops at once and its references
 * go when the core has closed it, on a later loop iteration. */
/* The shared methods below are closures whose upvalue is the metatable name,
 * so that each checks its own handle type. */
static dl_handle_t *dl_check_own(lua_State *L) {
  return dl_check_handle(L, 1, lua_tostring(L, lua_upvalueindex(1)), 0);
}

static int dl_handle_close(lua_State *L) {
  dl_handle_t *h = dl_check_own(L);
  h->closing = 1;
  if (h->core != NULL)
    h->close_core(h->core);
  return 0;
}

/* The __gc backstop: the same close as handle:close(); never calls Lua. */
static int dl_handle_gc(lua_State *L) {
  dl_handle_t *h = *(dl_handle_t **)lua_touserdata(L, 1);
  h->box_alive = 0;
  if (h->core != NULL)
    h->close_core(h->core); /* dl_handle_on_close frees h later */
  else
    free(h);
  return 0;
}

static int dl_handle_tostring(lua_State *L) {
  dl_handle_t *h = *(dl_handle_t **)lua_touserdata(L, 1);
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "__name");
  lua_pushfstring(L, "%s \"%s\" (%s): %p", lua_tostring(L, -1), h->name,
                  h->core != NULL && !h->closing ? "open" : "closed",
                  (void *)h);
  return 1;
}

static int dl_handle_is_closed(lua_State *L) {
  dl_handle_t *h = dl_check_own(L);
  lua_pushboolean(L, h->core == NULL || h->closing);
  return 1;
}

/* handle:unref() / handle:ref(): whether this handle alone keeps
 * loop:run() going (libuv's ref count). Signal watches of `disco run` are
 * unref'ed so that a script with nothing left to do ends. */
static int dl_handle_unref(lua_State *L) {
  dl_handle_t *h = dl_check_own(L);
  if (h->core != NULL)
    h->set_ref_core(h->core, 0);
  return 0;
}

static int dl_handle_ref(lua_State *L) {
  dl_handle_t *h = dl_check_own(L);
  if (h->core != NULL)
    h->set_ref_core(h->core, 1);
  return 0;
}

static int dl_handle_name(lua_State *L) {
  dl_handle_t *h = dl_check_own(L);
  lua_pushstring(L, h->name);
  return 1;
}

void dl_handle_register(lua_State *L, const char *mt, const luaL_Reg *methods) {
  luaL_newmetatable(L, mt);
  lua_pushstring(L, mt);
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  luaL_register(L, NULL, methods);
  lua_pushstring(L, mt);
  lua_pushcclosure(L, dl_handle_close, 1);
  lua_setfield(L, -2, "close");
  lua_pushstring(L, mt);
  lua_pushcclosure(L, dl_handle_is_closed, 1);
  lua_setfield(L, -2, "is_closed");
  lua_pushstring(L, mt);
  lua_pushcclosure(L, dl_handle_name, 1);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, mt);
  lua_pushcclosure(L, dl_handle_ref, 1);
  lua_setfield(L, -2, "ref");
  lua_pushstring(L, mt);
  lua_pushcclosure(L, dl_handle_unref, 1);
  lua_setfield(L, -2, "unref");
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, dl_handle_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, dl_handle_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}

/* ------------------------------------ handles whose close may call Lua */

/* handle:close() for dl_handle_register_entering: idempotent. What the
 * core close cancels completes at once (error-first callbacks with
 * "ECANCELED: ..."), so it runs in the loop state with callbacks allowed.
 * May raise (a wrong self). */
static int dl_handle_close_entering(lua_State *L) {
  dl_handle_t *h = dl_check_own(L);
  lua_State *previous;
  h->closing = 1;
  if (h->core != NULL) {
    previous = dl_enter(h->owner->ctx, L);
    h->close_core(h->core);
    dl_leave(h->owner->ctx, previous);
  }
  return 0;
}

/* The __gc backstop for dl_handle_register_entering: the same close with
 * Lua calls refused (in_gc), so that canceled work only has its refs
 * released. The handle is freed by its close callback (or here when the
 * core is already gone). Never raises. */
static int dl_handle_gc_entering(lua_State *L) {
  dl_handle_t *h = *(dl_handle_t **)lua_touserdata(L, 1);
  dl_ctx_t *ctx;
  lua_State *previous;
  int was_in_gc;
  h->box_alive = 0;
  if (h->core == NULL) {
    free(h);
    return 0;
  }
  ctx = h->owner->ctx;
  was_in_gc = ctx->in_gc;
  ctx->in_gc = 1;
  previous = dl_enter(ctx, L);
  h->close_core(h->core);
  dl_leave(ctx, previous);
  ctx->in_gc = was_in_gc;
  return 0;
}

void dl_handle_register_entering(lua_State *L, const char *mt,
                                 const luaL_Reg *methods) {
  dl_handle_register(L, mt, methods);
  luaL_getmetatable(L, mt);
  lua_pushcfunction(L, dl_handle_gc_entering);
  lua_setfield(L, -2, "__gc");
  lua_getfield(L, -1, "__index");
  lua_pushstring(L, mt);
  lua_pushcclosure(L, dl_handle_close_entering, 1);
  lua_setfield(L, -2, "close");
  lua_pop(L, 2);
}

/* ------------------------------------------------ options tables */

void dl_option_number(lua_State *L, const char *field, double min, double max,
                      double *out) {
  lua_getfield(L, 2, field);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) >= min) ||
        !(lua_tonumber(L, -1) <= max)) {
      lua_pushfstring(L, "%s must be a number from %f to %f", field, min, max);
      luaL_argerror(L, 2, lua_tostring(L, -1));
    }
    *out = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
}

int dl_option_function(lua_State *L, int opts_idx, const char *field) {
  lua_getfield(L, opts_idx, field);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  if (!lua_isfunction(L, -1)) {
    lua_pushfstring(L, "%s must be a function", field);
    luaL_argerror(L, opts_idx, lua_tostring(L, -1));
  }
  return lua_gettop(L);
}

void dl_option_size(lua_State *L, const char *field, double min, double max,
                    size_t *out) {
  double v = (double)*out;
  dl_option_number(L, field, min, max, &v);
  *out = (size_t)v;
}

void dl_option_ms(lua_State *L, const char *field, double min, uint64_t *out) {
  double v = (double)*out;
  dl_option_number(L, field, min, 86400000, &v);
  *out = (uint64_t)v;
}

void dl_set_count(lua_State *L, const char *name, uint64_t v) {
  lua_pushnumber(L, (lua_Number)v);
  lua_setfield(L, -2, name);
}
