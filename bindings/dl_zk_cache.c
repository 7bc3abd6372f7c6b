/*
 * disco.zk_cache: zk:children_cache(path, opts) -> cache | nil, err, ename
 *   opts: nil | { on_change = function(cache, diff), max_data = bytes,
 *                 name = string, keep_data = bool (default true; false:
 *                 data only in the diff that reports it),
 *                 on_read = function(cache, entry) (each child as its
 *                 data is read, ahead of the diff: see disco.h) }
 *   diff = { added = {...}, updated = {...}, removed = {...} }, each entry
 *     { name =, data = string | nil, stat = {...as zk:get...},
 *       too_large = bool }
 *   cache:snapshot() -> { [name] = { data =, stat =, too_large = } }
 *   cache:loaded(), cache:stats() -> { lists =, reads =, diffs =, waits = },
 *   cache:path(), cache:close(), cache:is_closed()
 *
 * Not anchored, like sessions: a cache nobody refers to is closed by the
 * __gc backstop. It keeps its session's box alive until it closes.
 */
#include <stdlib.h>
#include <string.h>

#include "dl.h"

/* A diff of this many entries or more is built and handled with the
 * collector stopped: all of it is live until the callback returns, and
 * what the callback makes of it (parsed instances) mostly stays, so a
 * collector running meanwhile would walk the heap again and again and
 * free next to nothing. Smaller diffs leave it alone: the heap's high
 * mark, which LuaJIT keeps, grew when a thousand loads of 100 each held
 * their garbage (docs/lua-api.md). */
enum { DL_CACHE_BULK_ENTRIES = 1000 };

/* Registry key of the weak table handle state -> box. */
static const char dl_cache_boxes_key = 0;

static void dl_cache_close_core(void *core) {
  disco_zk_cache_close((disco_zk_cache_t *)core);
}

static void dl_cache_set_ref_core(void *core, int ref) {
  (void)core;
  (void)ref;
}

/* [-0, +1] { name =, data =, stat =, too_large = }. May raise on memory
 * exhaustion only. */
static void dl_cache_push_child(lua_State *L, const disco_zk_child_t *c,
                                int with_name) {
  lua_createtable(L, 0, 4);
  if (with_name) {
    lua_pushstring(L, c->name);
    lua_setfield(L, -2, "name");
  }
  if (c->data != NULL) {
    lua_pushlstring(L, c->data, c->data_len);
    lua_setfield(L, -2, "data");
  }
  dl_zk_push_stat(L, &c->stat);
  lua_setfield(L, -2, "stat");
  lua_pushboolean(L, c->too_large);
  lua_setfield(L, -2, "too_large");
}

/* [-0, +1] An array of children. */
static void dl_cache_push_list(lua_State *L, const disco_zk_child_t *list,
                               size_t n) {
  size_t i;
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    dl_cache_push_child(L, &list[i], 1);
    lua_rawseti(L, -2, (int)i + 1);
  }
}

static void dl_cache_change_cb(disco_zk_cache_t *cache,
                               const disco_zk_cache_diff_t *diff) {
  dl_handle_t *h = (dl_handle_t *)disco_zk_cache_data(cache);
  lua_State *L;
  int bulk;
  if (!h->box_alive || h->cb_ref == LUA_NOREF || h->owner->ctx->in_gc)
    return;
  L = dl_callback_state(h->owner->ctx);
  bulk = diff->num_added + diff->num_updated + diff->num_removed >=
             DL_CACHE_BULK_ENTRIES &&
         lua_gc(L, LUA_GCISRUNNING, 0);
  if (bulk)
    lua_gc(L, LUA_GCSTOP, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->cb_ref);
  dl_zk_weak_push(L, &dl_cache_boxes_key, h);
  lua_createtable(L, 0, 3);
  dl_cache_push_list(L, diff->added, diff->num_added);
  lua_setfield(L, -2, "added");
  dl_cache_push_list(L, diff->updated, diff->num_updated);
  lua_setfield(L, -2, "updated");
  dl_cache_push_list(L, diff->removed, diff->num_removed);
  lua_setfield(L, -2, "removed");
  dl_pcall(h->owner, L, 2, h->name);
  if (bulk)
    lua_gc(L, LUA_GCRESTART, 0);
}

/* on_read lives in the box's environment (beside path): most caches have
 * none, and the handle has room for one callback. */
static void dl_cache_read_cb(disco_zk_cache_t *cache,
                             const disco_zk_child_t *child) {
  dl_handle_t *h = (dl_handle_t *)disco_zk_cache_data(cache);
  lua_State *L;
  if (!h->box_alive || h->owner->ctx->in_gc)
    return;
  L = dl_callback_state(h->owner->ctx);
  dl_zk_weak_push(L, &dl_cache_boxes_key, h);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  lua_getfenv(L, -1);
  lua_getfield(L, -1, "on_read");
  lua_remove(L, -2); /* the environment */
  lua_insert(L, -2); /* on_read, box */
  dl_cache_push_child(L, child, 1);
  dl_pcall(h->owner, L, 2, h->name);
}

/* zk:children_cache(path, opts) */
int dl_zk_children_cache(lua_State *L) {
  const char *path = luaL_checkstring(L, 2);
  const char *name = "cache";
  lua_Number max_data = 0;
  int keep_data = 1;
  int cb_idx = 0;
  int read_idx = 0;
  dl_handle_t *zh = dl_check_handle(L, 1, DL_ZK_MT, 1);
  disco_zk_cache_t *cache;
  dl_handle_t *h;
  int err;

  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    cb_idx = dl_option_function(L, 3, "on_change");
    read_idx = dl_option_function(L, 3, "on_read");
    lua_getfield(L, 3, "max_data");
    if (!lua_isnil(L, -1)) {
      if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) < 0)
        return luaL_argerror(L, 3, "max_data must be a number >= 0");
      max_data = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, 3, "keep_data");
    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
      return luaL_argerror(L, 3, "keep_data must be a boolean");
    keep_data = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 3, "name");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_argerror(L, 3, "name must be a string");
      name = lua_tostring(L, -1); /* stays on the stack */
    }
  }
  h = dl_zk_handle_new(L, 1, DL_ZK_CACHE_MT, name); /* box on top */
  err = disco_zk_cache_new((disco_zk_t *)zh->core, path, (size_t)max_data,
                           dl_cache_change_cb, dl_handle_on_close, h, &cache);
  if (err != 0) {
    dl_unref(L, &h->owner_ref);
    return dl_push_error(L, err);
  }
  disco_zk_cache_set_keep_data(cache, keep_data);
  h->core = cache;
  h->close_core = dl_cache_close_core;
  h->set_ref_core = dl_cache_set_ref_core;
  if (cb_idx != 0) {
    lua_pushvalue(L, cb_idx);
    h->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  dl_zk_weak_set(L, &dl_cache_boxes_key, h, -1);
  lua_createtable(L, 0, 2);
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
  if (read_idx != 0) {
    lua_pushvalue(L, read_idx);
    lua_setfield(L, -2, "on_read");
    disco_zk_cache_set_on_read(cache, dl_cache_read_cb);
  }
  lua_setfenv(L, -2);
  return 1;
}

/* cache:snapshot() -> name -> { data =, stat =, too_large = } */
static int dl_cache_snapshot(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_ZK_CACHE_MT, 1);
  disco_zk_cache_t *cache = (disco_zk_cache_t *)h->core;
  disco_zk_child_t child;
  size_t n = disco_zk_cache_count(cache);
  size_t i;
  lua_createtable(L, 0, (int)n);
  for (i = 0; i < n; i++) {
    if (disco_zk_cache_child(cache, i, &child) != 0)
      continue;
    dl_cache_push_child(L, &child, 0);
    lua_setfield(L, -2, child.name);
  }
  return 1;
}

static int dl_cache_loaded(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_ZK_CACHE_MT, 1);
  lua_pushboolean(L, disco_zk_cache_loaded(h->core));
  return 1;
}

/* cache:stats() -> { lists =, reads =, diffs =, waits = }: requests sent
 * and waits for the session's bound on reads, for tests and metrics. */
static int dl_cache_stats(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_ZK_CACHE_MT, 1);
  disco_zk_cache_stats_t st;
  disco_zk_cache_stats(h->core, &st);
  lua_createtable(L, 0, 4);
  lua_pushnumber(L, (lua_Number)st.lists);
  lua_setfield(L, -2, "lists");
  lua_pushnumber(L, (lua_Number)st.reads);
  lua_setfield(L, -2, "reads");
  lua_pushnumber(L, (lua_Number)st.diffs);
  lua_setfield(L, -2, "diffs");
  lua_pushnumber(L, (lua_Number)st.waits);
  lua_setfield(L, -2, "waits");
  return 1;
}

static int dl_cache_path(lua_State *L) {
  dl_check_handle(L, 1, DL_ZK_CACHE_MT, 0);
  lua_getfenv(L, 1);
  lua_getfield(L, -1, "path");
  return 1;
}

static const luaL_Reg dl_cache_methods[] = {
  { "snapshot", dl_cache_snapshot },
  { "loaded", dl_cache_loaded },
  { "stats", dl_cache_stats },
  { "path", dl_cache_path },
  { NULL, NULL },
};

void dl_zk_cache_register(lua_State *L) {
  dl_handle_register(L, DL_ZK_CACHE_MT, dl_cache_methods);
}
