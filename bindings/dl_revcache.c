/*
 * disco.revcache: the revision cache (core/revcache.c) as seen from Lua.
 *
 *   loop:revcache{ fetch = function(app, rev) end,          -- required
 *                  on_evict = function(app, rev, reason) end,
 *                  max_entries =, max_bytes =, fast_retries =,
 *                  fast_retry_ms =, slow_retry_ms =, jitter =,
 *                  persist_path =, persist_delay_ms =, name = }
 *     -> cache | nil, err, ename
 *   cache:lookup(app, rev) -> bytes | nil
 *   cache:want(app, rev, cb) -> bytes (a hit: cb never runs)
 *                             | nil (cb(err, bytes) runs once, later:
 *                               never from inside want)
 *                             | nil, err, ename (bad key, closed cache, no
 *                               memory: cb never runs)
 *   cache:resolve(app, rev, bytes), cache:reject(app, rev, message [, ename]),
 *   cache:put(app, rev, bytes), cache:save() -> true | nil, err, ename
 *   cache:stats() -> { hits, misses, fetches, failures, evictions, entries,
 *                      bytes, inflight, failed }
 *   cache:close(), cache:is_closed(), cache:name(), cache:ref(), cache:unref()
 *
 * fetch(app, rev) starts a fetch and returns; its owner later calls
 * cache:resolve or cache:reject (or does so at once). A fetch function that
 * raises is logged and becomes a reject of that key with EIO.
 *
 * References: the fetch function is the handle's callback (cb_ref); the
 * evict function has a ref of its own; both go when the core handle closed.
 * A waiter's callback ref is taken by want() and released at exactly one
 * point: in dl_revcache_want_cb, when the core completes that want (with the
 * value, the error, or ECANCELED at close), just before the callback runs.
 * Like a ZooKeeper cache, the box is not anchored: a cache nobody refers to
 * is closed by the __gc backstop, whose canceled waiters are released
 * without being called.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dl.h"

typedef struct {
  dl_handle_t h; /* first: dl_handle_on_close frees the whole through it */
  int evict_ref; /* on_evict, or LUA_NOREF */
} dl_revcache_t;

static void dl_revcache_close_core(void *core) {
  disco_revcache_close((disco_revcache_t *)core);
}

static void dl_revcache_set_ref_core(void *core, int ref) {
  disco_revcache_set_ref((disco_revcache_t *)core, ref);
}

/* Core callbacks: never raise; they reach Lua through dl_pcall only. */

static void dl_revcache_fetch_cb(disco_revcache_t *cache, const char *app,
                                 const char *rev) {
  dl_handle_t *h = (dl_handle_t *)disco_revcache_data(cache);
  lua_State *L;
  if (h->cb_ref == LUA_NOREF || h->owner->ctx->in_gc) {
    disco_revcache_reject(cache, app, rev, DISCO_ECANCELED, NULL);
    return;
  }
  L = dl_callback_state(h->owner->ctx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->cb_ref);
  lua_pushstring(L, app);
  lua_pushstring(L, rev);
  if (dl_pcall(h->owner, L, 2, h->name) != 0) {
    /* Logged by dl_pcall. ENOENT when the function answered before it
     * raised: that answer stands. */
    disco_revcache_reject(cache, app, rev, DISCO_EIO,
                          "fetch function raised an error");
  }
}

static void dl_revcache_evict_cb(disco_revcache_t *cache, const char *app,
                                 const char *rev,
                                 disco_revcache_evict_reason_t reason) {
  dl_revcache_t *rc = (dl_revcache_t *)disco_revcache_data(cache);
  lua_State *L;
  if (rc->evict_ref == LUA_NOREF || rc->h.owner->ctx->in_gc)
    return;
  L = dl_callback_state(rc->h.owner->ctx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rc->evict_ref);
  lua_pushstring(L, app);
  lua_pushstring(L, rev);
  lua_pushstring(L, disco_revcache_evict_reason_name(reason));
  dl_pcall(rc->h.owner, L, 3, rc->h.name);
}

/* Completes one want: the one place its callback ref is released. */
static void dl_revcache_want_cb(disco_revcache_t *cache, const char *app,
                                const char *rev, int status,
                                const char *message, const char *bytes,
                                size_t len, void *arg) {
  dl_handle_t *h = (dl_handle_t *)disco_revcache_data(cache);
  int ref = (int)(intptr_t)arg;
  lua_State *L = dl_callback_state(h->owner->ctx);
  (void)app;
  (void)rev;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  if (h->owner->ctx->in_gc) {
    lua_pop(L, 1);
    return;
  }
  if (status == 0) {
    lua_pushnil(L);
    lua_pushlstring(L, bytes, len);
  } else {
    lua_pushfstring(L, "%s: %s", disco_err_name(status),
                    message != NULL ? message : disco_strerror(status));
    lua_pushnil(L);
  }
  dl_pcall(h->owner, L, 2, h->name);
}

/* The core's close callback: drops the evict ref, then the shared refs. */
static void dl_revcache_on_close(void *core, void *data) {
  dl_revcache_t *rc = (dl_revcache_t *)data;
  dl_unref(dl_callback_state(rc->h.owner->ctx), &rc->evict_ref);
  dl_handle_on_close(core, data);
}

/* [-0, +0] The function opts[field] as a new registry ref, or LUA_NOREF;
 * raises when it is something else. */
static int dl_revcache_opt_fn(lua_State *L, const char *field, int required) {
  lua_getfield(L, 2, field);
  if (lua_isnil(L, -1) && !required) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  if (!lua_isfunction(L, -1)) {
    lua_pushfstring(L, "%s must be a function", field);
    luaL_argerror(L, 2, lua_tostring(L, -1));
  }
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* loop:revcache(opts) */
static int dl_loop_revcache(lua_State *L) {
  dl_loop_t *lp = dl_check_loop(L, 1);
  disco_revcache_options_t opts;
  disco_revcache_t *cache;
  const char *name = "revcache";
  dl_revcache_t *rc;
  dl_handle_t **box;
  lua_State *previous;
  double v;
  int err;

  luaL_checktype(L, 2, LUA_TTABLE);
  disco_revcache_options_init(&opts);
  dl_option_size(L, "max_entries", 1, 4294967295.0, &opts.max_entries);
  dl_option_size(L, "max_bytes", 1, 9007199254740992.0, &opts.max_bytes);
  v = opts.fast_retries;
  dl_option_number(L, "fast_retries", 0, 1000000, &v);
  opts.fast_retries = (unsigned)v;
  dl_option_ms(L, "fast_retry_ms", 1, &opts.fast_retry_ms);
  dl_option_ms(L, "slow_retry_ms", 1, &opts.slow_retry_ms);
  dl_option_number(L, "jitter", 0, 1, &opts.jitter);
  dl_option_ms(L, "persist_delay_ms", 0, &opts.persist_delay_ms);
  lua_getfield(L, 2, "persist_path");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_argerror(L, 2, "persist_path must be a string");
    opts.persist_path = lua_tostring(L, -1); /* stays on the stack */
  }
  lua_getfield(L, 2, "name");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_argerror(L, 2, "name must be a string");
    name = lua_tostring(L, -1); /* stays on the stack */
  }
  lua_getfield(L, 2, "fetch");
  if (!lua_isfunction(L, -1))
    luaL_argerror(L, 2, "fetch must be a function");
  lua_getfield(L, 2, "on_evict");
  if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
    luaL_argerror(L, 2, "on_evict must be a function");
  lua_pop(L, 2);

  /* Nothing below raises until the box exists, so rc cannot leak. */
  rc = (dl_revcache_t *)calloc(1, sizeof(*rc));
  if (rc == NULL)
    return luaL_error(L, "out of memory");
  box = (dl_handle_t **)lua_newuserdata(L, sizeof(*box));
  *box = &rc->h;
  rc->h.core = NULL;
  rc->h.owner = lp;
  rc->h.owner_ref = LUA_NOREF;
  rc->h.cb_ref = LUA_NOREF;
  rc->h.self_ref = LUA_NOREF;
  rc->h.box_alive = 1;
  rc->evict_ref = LUA_NOREF;
  strncpy(rc->h.name, name, sizeof(rc->h.name) - 1);
  rc->h.name[sizeof(rc->h.name) - 1] = '\0';
  luaL_getmetatable(L, DL_REVCACHE_MT);
  lua_setmetatable(L, -2);

  /* Loading the file may log, and a Lua log sink runs on cur_L. */
  previous = dl_enter(lp->ctx, L);
  err = disco_revcache_new(lp->loop, &opts, dl_revcache_fetch_cb,
                           dl_revcache_evict_cb, dl_revcache_on_close, rc,
                           &cache);
  dl_leave(lp->ctx, previous);
  if (err != 0)
    return dl_push_error(L, err); /* the box's __gc frees rc */
  rc->h.core = cache;
  rc->h.close_core = dl_revcache_close_core;
  rc->h.set_ref_core = dl_revcache_set_ref_core;
  lua_pushvalue(L, 1);
  rc->h.owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  rc->h.cb_ref = dl_revcache_opt_fn(L, "fetch", 1);
  rc->evict_ref = dl_revcache_opt_fn(L, "on_evict", 0);
  return 1;
}

/* [-0, +0] The open cache at 1; raises on a wrong type or after close. */
static disco_revcache_t *dl_check_revcache(lua_State *L) {
  return (disco_revcache_t *)dl_check_handle(L, 1, DL_REVCACHE_MT, 1)->core;
}

/* [-0, +1|+3] true, or the error tuple. */
static int dl_revcache_result(lua_State *L, int err) {
  if (err != 0)
    return dl_push_error(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* cache:lookup(app, rev) -> bytes | nil */
static int dl_revcache_lookup(lua_State *L) {
  disco_revcache_t *cache = dl_check_revcache(L);
  const char *app = luaL_checkstring(L, 2);
  const char *rev = luaL_checkstring(L, 3);
  const char *bytes;
  size_t len;
  int err = disco_revcache_lookup(cache, app, rev, &bytes, &len);
  if (err == DISCO_ENOENT) {
    lua_pushnil(L);
    return 1;
  }
  if (err != 0)
    return dl_push_error(L, err);
  lua_pushlstring(L, bytes, len);
  return 1;
}

/* cache:want(app, rev, cb) */
static int dl_revcache_want(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_REVCACHE_MT, 1);
  const char *app = luaL_checkstring(L, 2);
  const char *rev = luaL_checkstring(L, 3);
  disco_revcache_value_t value;
  lua_State *previous;
  int ref;
  int err;
  luaL_checktype(L, 4, LUA_TFUNCTION);
  lua_pushvalue(L, 4);
  ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* The fetch callback may run from here. */
  previous = dl_enter(h->owner->ctx, L);
  err = disco_revcache_want((disco_revcache_t *)h->core, app, rev,
                            dl_revcache_want_cb, (void *)(intptr_t)ref, &value);
  dl_leave(h->owner->ctx, previous);
  if (err != 0 || value.ready) {
    /* The core keeps no waiter: the ref is ours to release. */
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
  }
  if (err != 0)
    return dl_push_error(L, err);
  if (value.ready)
    lua_pushlstring(L, value.bytes, value.len);
  else
    lua_pushnil(L);
  return 1;
}

/* The owner's answers may come after close (a fetch was out): they return
 * ECLOSED rather than raise. */
static disco_revcache_t *dl_revcache_answerable(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_REVCACHE_MT, 0);
  return h->core != NULL && !h->closing ? (disco_revcache_t *)h->core : NULL;
}

/* cache:resolve(app, rev, bytes) / cache:put(app, rev, bytes) */
static int dl_revcache_store(lua_State *L, int resolve) {
  disco_revcache_t *cache = dl_revcache_answerable(L);
  dl_handle_t *h = dl_check_handle(L, 1, DL_REVCACHE_MT, 0);
  const char *app = luaL_checkstring(L, 2);
  const char *rev = luaL_checkstring(L, 3);
  size_t len;
  const char *bytes = luaL_checklstring(L, 4, &len);
  lua_State *previous;
  int err;
  if (cache == NULL)
    return dl_push_error(L, DISCO_ECLOSED);
  /* Waiters and the evict callback may run from here. */
  previous = dl_enter(h->owner->ctx, L);
  err = resolve ? disco_revcache_resolve(cache, app, rev, bytes, len)
                : disco_revcache_put(cache, app, rev, bytes, len);
  dl_leave(h->owner->ctx, previous);
  return dl_revcache_result(L, err);
}

static int dl_revcache_resolve(lua_State *L) {
  return dl_revcache_store(L, 1);
}

static int dl_revcache_put(lua_State *L) {
  return dl_revcache_store(L, 0);
}

/* The code of an error name ("EIO"); 0 when unknown. */
static int dl_revcache_err_code(const char *name) {
#define DL__ERR_CODE(ename, value, msg)                                        \
  if (strcmp(name, #ename) == 0)                                               \
    return (value);
  DISCO_ERRNO_MAP(DL__ERR_CODE)
#undef DL__ERR_CODE
  return 0;
}

/* cache:reject(app, rev, message [, ename]): ename defaults to "EIO". */
static int dl_revcache_reject(lua_State *L) {
  disco_revcache_t *cache = dl_revcache_answerable(L);
  dl_handle_t *h = dl_check_handle(L, 1, DL_REVCACHE_MT, 0);
  const char *app = luaL_checkstring(L, 2);
  const char *rev = luaL_checkstring(L, 3);
  const char *message = luaL_optstring(L, 4, NULL);
  int code = dl_revcache_err_code(luaL_optstring(L, 5, "EIO"));
  lua_State *previous;
  int err;
  luaL_argcheck(L, code != 0, 5, "not an error name of core.errors");
  if (cache == NULL)
    return dl_push_error(L, DISCO_ECLOSED);
  previous = dl_enter(h->owner->ctx, L);
  err = disco_revcache_reject(cache, app, rev, code, message);
  dl_leave(h->owner->ctx, previous);
  return dl_revcache_result(L, err);
}

/* cache:save() -> true | nil, err, ename */
static int dl_revcache_save(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_REVCACHE_MT, 1);
  lua_State *previous = dl_enter(h->owner->ctx, L); /* it may log */
  int err = disco_revcache_save((disco_revcache_t *)h->core);
  dl_leave(h->owner->ctx, previous);
  return dl_revcache_result(L, err);
}

/* cache:stats() */
static int dl_revcache_stats(lua_State *L) {
  disco_revcache_t *cache = dl_check_revcache(L);
  disco_revcache_stats_t st;
  disco_revcache_stats(cache, &st);
  lua_createtable(L, 0, 9);
  dl_set_count(L, "hits", st.hits);
  dl_set_count(L, "misses", st.misses);
  dl_set_count(L, "fetches", st.fetches);
  dl_set_count(L, "failures", st.failures);
  dl_set_count(L, "evictions", st.evictions);
  dl_set_count(L, "entries", st.entries);
  dl_set_count(L, "bytes", st.bytes);
  dl_set_count(L, "inflight", st.inflight);
  dl_set_count(L, "failed", st.failed);
  return 1;
}

static const luaL_Reg dl_revcache_methods[] = {
  { "lookup", dl_revcache_lookup },   { "want", dl_revcache_want },
  { "resolve", dl_revcache_resolve }, { "reject", dl_revcache_reject },
  { "put", dl_revcache_put },         { "save", dl_revcache_save },
  { "stats", dl_revcache_stats },     { NULL, NULL },
};

/* Creates the metatable and adds loop:revcache; runs after
 * dl_loop_register. */
void dl_revcache_register(lua_State *L) {
  /* close cancels outstanding wants, whose callbacks run at once; the
   * __gc backstop only releases their refs (dl_revcache_on_close frees h
   * later). */
  dl_handle_register_entering(L, DL_REVCACHE_MT, dl_revcache_methods);
  luaL_getmetatable(L, DL_LOOP_MT);
  lua_getfield(L, -1, "__index");
  lua_pushcfunction(L, dl_loop_revcache);
  lua_setfield(L, -2, "revcache");
  lua_pop(L, 2);
}
