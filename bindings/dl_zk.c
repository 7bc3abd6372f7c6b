/*
 * disco.zk: loop:zk(opts) -> zk | nil, err, ename
 *   opts: hosts (required), session_timeout (ms), auth ("user:password"),
 *   acl ("open" | "creator_all"), min_backoff, max_backoff (ms), name,
 *   on_state = function(zk, state_name, generation),
 *   session = { id = hex, passwd = string } (tests: join a session)
 *   zk:get(path, opts, cb), zk:exists(path, opts, cb),
 *   zk:children(path, opts, cb)            opts: nil | { watch = fn }
 *   zk:create(path, data, opts, cb)        opts: nil | { mode =, parents = }
 *   zk:set(path, data, version, cb), zk:delete(path, version, cb)
 *     -> true | nil, err, ename (then cb never runs)
 *   zk:state(), zk:generation(), zk:session_id(), zk:debug_session(),
 *   zk:close(), zk:is_closed()
 *   zk:ephemeral(...) (dl_zk_ephemeral.c), zk:children_cache(...)
 *   (dl_zk_cache.c)
 * cb(err, result) runs once on the loop; watch(event) at most once.
 *
 * The box is not anchored while the session is open: a session nobody
 * refers to is closed by the __gc backstop. The on_state callback reaches the
 * box through a weak table, so it does not keep it alive either.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl.h"

/* Registry key of the weak table handle state -> box. */
static const char dl_zk_boxes_key = 0;

typedef struct {
  dl_loop_t *owner;
  int cb_ref;
  int watch_ref;
  int pending; /* the result, and the watch if any, still to come */
  char name[DL_NAME_MAX + 16]; /* "<handle name>:<op>" for error reports */
} dl_zk_req_t;

static void dl_zk_close_core(void *core) {
  disco_zk_close((disco_zk_t *)core);
}

/* Sessions keep the loop alive while open; there is no unref for them. */
static void dl_zk_set_ref_core(void *core, int ref) {
  (void)core;
  (void)ref;
}

/* [-0, +1] Pushes the box of `h`, or nil once it was collected. No raise. */
static void dl_zk_push_box(lua_State *L, dl_handle_t *h) {
  lua_pushlightuserdata(L, (void *)&dl_zk_boxes_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, h);
  lua_rawget(L, -2);
  lua_remove(L, -2);
}

static void dl_zk_state_cb(disco_zk_t *zk, disco_zk_state_t state,
                           uint64_t generation) {
  dl_handle_t *h = (dl_handle_t *)disco_zk_data(zk);
  lua_State *L;
  if (!h->box_alive || h->cb_ref == LUA_NOREF)
    return;
  L = dl_callback_state(h->owner->ctx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->cb_ref);
  dl_zk_push_box(L, h);
  lua_pushstring(L, disco_zk_state_name(state));
  lua_pushnumber(L, (lua_Number)generation);
  dl_pcall(h->owner, L, 3, h->name);
}

/* [-0, +0] Sets t[key] = value for the table on top. No raise beyond memory
 * exhaustion. */
static void dl_set_number(lua_State *L, const char *key, double value) {
  lua_pushnumber(L, value);
  lua_setfield(L, -2, key);
}

/* [-0, +1] A 64-bit id as 16 hex digits: session ids exceed 2^53. */
static void dl_push_hex64(lua_State *L, int64_t id) {
  char buf[17];
  snprintf(buf, sizeof(buf), "%016llx", (unsigned long long)id);
  lua_pushstring(L, buf);
}

/* [-0, +1] The stat table. */
void dl_zk_push_stat(lua_State *L, const disco_zk_stat_t *st) {
  lua_createtable(L, 0, 12);
  dl_set_number(L, "czxid", (double)st->czxid);
  dl_set_number(L, "mzxid", (double)st->mzxid);
  dl_set_number(L, "pzxid", (double)st->pzxid);
  dl_set_number(L, "ctime", (double)st->ctime);
  dl_set_number(L, "mtime", (double)st->mtime);
  dl_set_number(L, "version", st->version);
  dl_set_number(L, "cversion", st->cversion);
  dl_set_number(L, "aversion", st->aversion);
  dl_push_hex64(L, st->ephemeral_owner);
  lua_setfield(L, -2, "ephemeral_owner");
  lua_pushboolean(L, st->ephemeral_owner != 0);
  lua_setfield(L, -2, "ephemeral");
  dl_set_number(L, "data_length", st->data_length);
  dl_set_number(L, "num_children", st->num_children);
}

static void dl_zk_req_release(lua_State *L, dl_zk_req_t *req) {
  if (--req->pending > 0)
    return;
  dl_unref(L, &req->cb_ref);
  dl_unref(L, &req->watch_ref);
  free(req);
}

static void dl_zk_result_cb(disco_zk_t *zk, const disco_zk_result_t *r,
                            void *data) {
  dl_zk_req_t *req = (dl_zk_req_t *)data;
  lua_State *L = dl_callback_state(req->owner->ctx);
  size_t i;
  (void)zk;
  lua_rawgeti(L, LUA_REGISTRYINDEX, req->cb_ref);
  dl_unref(L, &req->cb_ref);
  if (r->err != 0) {
    lua_pushfstring(L, "%s: %s", disco_err_name(r->err),
                    disco_strerror(r->err));
    lua_pushnil(L);
  } else {
    lua_pushnil(L);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, r->created_path != NULL ? r->created_path : r->path);
    lua_setfield(L, -2, "path");
    dl_set_number(L, "generation", (double)r->generation);
    if (r->has_stat) {
      dl_zk_push_stat(L, &r->stat);
      lua_setfield(L, -2, "stat");
    }
    if (r->op == DISCO_ZK_OP_GET && r->data != NULL) {
      lua_pushlstring(L, r->data, r->data_len);
      lua_setfield(L, -2, "data");
    }
    if (r->op == DISCO_ZK_OP_CHILDREN) {
      lua_createtable(L, (int)r->num_children, 0);
      for (i = 0; i < r->num_children; i++) {
        lua_pushstring(L, r->children[i]);
        lua_rawseti(L, -2, (int)i + 1);
      }
      lua_setfield(L, -2, "children");
    }
  }
  dl_pcall(req->owner, L, 2, req->name);
  dl_zk_req_release(L, req);
}

static void dl_zk_watch_cb(disco_zk_t *zk, const disco_zk_event_t *ev,
                           void *data) {
  dl_zk_req_t *req = (dl_zk_req_t *)data;
  lua_State *L = dl_callback_state(req->owner->ctx);
  (void)zk;
  /* A watch that ends without firing (request failed, session expired or
   * closed) is not reported: the session's state says what happened. */
  if (ev->status == 0 && req->watch_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, req->watch_ref);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, disco_zk_event_name(ev->type));
    lua_setfield(L, -2, "type");
    lua_pushstring(L, ev->path != NULL ? ev->path : "");
    lua_setfield(L, -2, "path");
    dl_set_number(L, "generation", (double)ev->generation);
    dl_pcall(req->owner, L, 1, req->name);
  }
  dl_unref(L, &req->watch_ref);
  dl_zk_req_release(L, req);
}

/* [-0, +0] A request record holding the callback at cb_idx and the watch at
 * watch_idx (0: none). May raise on memory exhaustion only. */
static dl_zk_req_t *dl_zk_req_new(lua_State *L, dl_handle_t *h, int cb_idx,
                                  int watch_idx, const char *op) {
  dl_zk_req_t *req = (dl_zk_req_t *)malloc(sizeof(*req));
  if (req == NULL)
    luaL_error(L, "out of memory");
  req->owner = h->owner;
  lua_pushvalue(L, cb_idx);
  req->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  req->watch_ref = LUA_NOREF;
  req->pending = 1;
  if (watch_idx != 0) {
    lua_pushvalue(L, watch_idx);
    req->watch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    req->pending = 2;
  }
  snprintf(req->name, sizeof(req->name), "%s:%s", h->name, op);
  return req;
}

/* [-0, +1|+3] Ends a request method: true, or the error tuple after
 * releasing the record (its callbacks will never run). */
static int dl_zk_submitted(lua_State *L, dl_zk_req_t *req, int err) {
  if (err != 0) {
    dl_unref(L, &req->cb_ref);
    dl_unref(L, &req->watch_ref);
    free(req);
    return dl_push_error(L, err);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* The watch function in the options table at idx, left on the stack (its
 * index returned), or 0. May raise on a wrong type. */
static int dl_zk_opt_watch(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx))
    return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "watch");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  if (!lua_isfunction(L, -1))
    luaL_argerror(L, idx, "watch must be a function");
  return lua_gettop(L);
}

typedef int (*dl_zk_read_fn)(disco_zk_t *zk, const char *path,
                             disco_zk_watch_cb watch, disco_zk_cb cb,
                             void *data);

static int dl_zk_read(lua_State *L, dl_zk_read_fn fn, const char *op) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_ZK_MT, 1);
  const char *path = luaL_checkstring(L, 2);
  int watch_idx;
  dl_zk_req_t *req;
  luaL_checktype(L, 4, LUA_TFUNCTION);
  watch_idx = dl_zk_opt_watch(L, 3);
  req = dl_zk_req_new(L, h, 4, watch_idx, op);
  return dl_zk_submitted(L, req,
                         fn((disco_zk_t *)h->core, path,
                            watch_idx ? dl_zk_watch_cb : NULL, dl_zk_result_cb,
                            req));
}

static int dl_zk_get(lua_State *L) {
  return dl_zk_read(L, disco_zk_get, "get");
}

static int dl_zk_exists(lua_State *L) {
  return dl_zk_read(L, disco_zk_exists, "exists");
}

static int dl_zk_children(lua_State *L) {
  return dl_zk_read(L, disco_zk_children, "children");
}

static int dl_check_version(lua_State *L, int idx) {
  lua_Number v;
  if (lua_isnoneornil(L, idx))
    return -1;
  v = luaL_checknumber(L, idx);
  luaL_argcheck(L, v >= -1 && v <= 2147483647.0 && v == (int)v, idx,
                "version must be an integer >= -1");
  return (int)v;
}

static const struct {
  const char *name;
  int flags;
} dl_zk_modes[] = {
  { "persistent", DISCO_ZK_PERSISTENT },
  { "ephemeral", DISCO_ZK_EPHEMERAL },
  { "sequential", DISCO_ZK_SEQUENTIAL },
  { "persistent_sequential", DISCO_ZK_SEQUENTIAL },
  { "ephemeral_sequential", DISCO_ZK_EPHEMERAL | DISCO_ZK_SEQUENTIAL },
  { "container", DISCO_ZK_CONTAINER },
  { NULL, 0 },
};

/* zk:create(path, data, opts, cb); data may be nil (a null value). */
static int dl_zk_create(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_ZK_MT, 1);
  const char *path = luaL_checkstring(L, 2);
  const char *value = NULL;
  size_t len = 0;
  int flags = DISCO_ZK_PERSISTENT;
  dl_zk_req_t *req;
  int i;
  if (!lua_isnil(L, 3))
    value = luaL_checklstring(L, 3, &len);
  luaL_checktype(L, 5, LUA_TFUNCTION);
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_getfield(L, 4, "mode");
    if (!lua_isnil(L, -1)) {
      const char *mode = luaL_checkstring(L, -1);
      for (i = 0; dl_zk_modes[i].name != NULL; i++)
        if (strcmp(dl_zk_modes[i].name, mode) == 0)
          break;
      if (dl_zk_modes[i].name == NULL)
        luaL_argerror(L, 4, "unknown mode");
      flags = dl_zk_modes[i].flags;
    }
    lua_pop(L, 1);
    lua_getfield(L, 4, "parents");
    if (lua_type(L, -1) == LUA_TSTRING &&
        strcmp(lua_tostring(L, -1), "container") == 0)
      flags |= DISCO_ZK_PARENTS_CONTAINER;
    else if (lua_toboolean(L, -1))
      flags |= DISCO_ZK_PARENTS;
    lua_pop(L, 1);
  }
  req = dl_zk_req_new(L, h, 5, 0, "create");
  return dl_zk_submitted(L, req,
                         disco_zk_create((disco_zk_t *)h->core, path, value,
                                         len, flags, dl_zk_result_cb, req));
}

/* zk:set(path, data, version, cb); version nil or -1: any. */
static int dl_zk_set(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_ZK_MT, 1);
  const char *path = luaL_checkstring(L, 2);
  size_t len;
  const char *value = luaL_checklstring(L, 3, &len);
  int version = dl_check_version(L, 4);
  dl_zk_req_t *req;
  luaL_checktype(L, 5, LUA_TFUNCTION);
  req = dl_zk_req_new(L, h, 5, 0, "set");
  return dl_zk_submitted(L, req,
                         disco_zk_set((disco_zk_t *)h->core, path, value, len,
                                      version, dl_zk_result_cb, req));
}

static int dl_zk_delete(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_ZK_MT, 1);
  const char *path = luaL_checkstring(L, 2);
  int version = dl_check_version(L, 3);
  dl_zk_req_t *req;
  luaL_checktype(L, 4, LUA_TFUNCTION);
  req = dl_zk_req_new(L, h, 4, 0, "delete");
  return dl_zk_submitted(L, req,
                         disco_zk_delete((disco_zk_t *)h->core, path, version,
                                         dl_zk_result_cb, req));
}

static int dl_zk_state(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_ZK_MT, 0);
  if (h->core == NULL || h->closing)
    lua_pushstring(L, disco_zk_state_name(DISCO_ZK_CLOSED));
  else
    lua_pushstring(L, disco_zk_state_name(disco_zk_state(h->core)));
  return 1;
}

static int dl_zk_generation(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_ZK_MT, 1);
  lua_pushnumber(L, (lua_Number)disco_zk_generation(h->core));
  return 1;
}

/* zk:session_id() -> 16 hex digits, or nil before the first CONNECTED */
static int dl_zk_session_id(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_ZK_MT, 1);
  int64_t id = disco_zk_session_id(h->core);
  if (id == 0)
    lua_pushnil(L);
  else
    dl_push_hex64(L, id);
  return 1;
}

/* zk:debug_session() -> id (hex), passwd | nil, err, ename. For tests that
 * force an expiry by joining the session with loop:zk{session=...}. */
static int dl_zk_debug_session(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_ZK_MT, 1);
  char passwd[DISCO_ZK_PASSWD_LEN];
  size_t len;
  int64_t id;
  int err = disco_zk_debug_session(h->core, &id, passwd, &len);
  if (err != 0)
    return dl_push_error(L, err);
  dl_push_hex64(L, id);
  lua_pushlstring(L, passwd, len);
  return 2;
}

/* Reads an optional non-negative integer option; raises otherwise. */
static int dl_opt_ms(lua_State *L, int idx, const char *key) {
  lua_Number v;
  int result = 0;
  lua_getfield(L, idx, key);
  if (!lua_isnil(L, -1)) {
    if (!lua_isnumber(L, -1))
      luaL_error(L, "bad option '%s' (number expected)", key);
    v = lua_tonumber(L, -1);
    if (v < 0 || v > 2147483647.0)
      luaL_error(L, "bad option '%s' (0 to 2147483647 ms)", key);
    result = (int)v;
  }
  lua_pop(L, 1);
  return result;
}

static const char *dl_opt_string(lua_State *L, int idx, const char *key) {
  const char *s = NULL;
  lua_getfield(L, idx, key);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "bad option '%s' (string expected)", key);
    s = lua_tostring(L, -1);
  }
  /* The string stays alive: the options table refers to it. */
  lua_pop(L, 1);
  return s;
}

/* loop:zk(opts) -> zk | nil, err, ename */
int dl_loop_zk(lua_State *L) {
  disco_zk_options_t opts;
  const char *acl;
  const char *sid = NULL;
  const char *passwd = NULL;
  size_t passwd_len = 0;
  int has_state_cb;
  dl_handle_t *h;
  disco_zk_t *zk;
  int err;

  dl_check_loop(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  memset(&opts, 0, sizeof(opts));
  opts.hosts = dl_opt_string(L, 2, "hosts");
  if (opts.hosts == NULL)
    return luaL_argerror(L, 2, "hosts is required");
  opts.session_timeout_ms = dl_opt_ms(L, 2, "session_timeout");
  opts.min_backoff_ms = dl_opt_ms(L, 2, "min_backoff");
  opts.max_backoff_ms = dl_opt_ms(L, 2, "max_backoff");
  opts.auth = dl_opt_string(L, 2, "auth");
  acl = dl_opt_string(L, 2, "acl");
  if (acl == NULL || strcmp(acl, "open") == 0)
    opts.acl = DISCO_ZK_ACL_OPEN;
  else if (strcmp(acl, "creator_all") == 0)
    opts.acl = DISCO_ZK_ACL_CREATOR_ALL;
  else
    return luaL_argerror(L, 2, "acl must be \"open\" or \"creator_all\"");
  lua_getfield(L, 2, "session");
  if (!lua_isnil(L, -1)) {
    luaL_checktype(L, -1, LUA_TTABLE);
    lua_getfield(L, -1, "id");
    sid = lua_tostring(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, -1, "passwd");
    passwd = lua_tolstring(L, -1, &passwd_len);
    lua_pop(L, 1);
    if (sid == NULL || passwd == NULL || passwd_len != DISCO_ZK_PASSWD_LEN)
      return luaL_argerror(L, 2, "session needs id (hex) and passwd");
    opts.session_id = (int64_t)strtoull(sid, NULL, 16);
    opts.session_passwd = passwd;
  }
  lua_pop(L, 1); /* session: its strings stay referenced by opts */
  lua_getfield(L, 2, "on_state");
  has_state_cb = !lua_isnil(L, -1);
  if (has_state_cb && !lua_isfunction(L, -1))
    return luaL_argerror(L, 2, "on_state must be a function");
  lua_getfield(L, 2, "name"); /* at -1; on_state at -2 */
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
    return luaL_argerror(L, 2, "name must be a string");

  h = dl_handle_new(L, 1, lua_gettop(L), DL_ZK_MT, "zk"); /* box on top */
  err = disco_zk_new(h->owner->loop, &opts, dl_zk_state_cb, dl_handle_on_close,
                     h, &zk);
  if (err != 0) {
    dl_unref(L, &h->owner_ref);
    /* The box's finalizer frees h: it has no core. */
    return dl_push_error(L, err);
  }
  h->core = zk;
  h->close_core = dl_zk_close_core;
  h->set_ref_core = dl_zk_set_ref_core;
  if (has_state_cb) {
    lua_pushvalue(L, -3);
    h->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_pushlightuserdata(L, (void *)&dl_zk_boxes_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, h);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return 1;
}

dl_handle_t *dl_zk_handle_new(lua_State *L, int zk_idx, const char *mt,
                              const char *name) {
  dl_handle_t *zh = dl_check_handle(L, zk_idx, DL_ZK_MT, 1);
  dl_handle_t **box;
  dl_handle_t *h = (dl_handle_t *)calloc(1, sizeof(*h));
  if (h == NULL)
    luaL_error(L, "out of memory");
  box = (dl_handle_t **)lua_newuserdata(L, sizeof(*box));
  *box = h;
  h->owner = zh->owner;
  lua_pushvalue(L, zk_idx);
  h->owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  h->cb_ref = LUA_NOREF;
  h->self_ref = LUA_NOREF;
  h->box_alive = 1;
  {
    char full[2 * DL_NAME_MAX + 2];
    snprintf(full, sizeof(full), "%s:%s", zh->name, name);
    memcpy(h->name, full, sizeof(h->name) - 1);
    h->name[sizeof(h->name) - 1] = '\0';
  }
  luaL_getmetatable(L, mt);
  lua_setmetatable(L, -2);
  return h;
}

void dl_zk_weak_set(lua_State *L, const void *key, dl_handle_t *h, int idx) {
  lua_pushvalue(L, idx);
  lua_pushlightuserdata(L, (void *)key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushlightuserdata(L, (void *)key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_pushlightuserdata(L, h);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 2);
}

void dl_zk_weak_push(lua_State *L, const void *key, dl_handle_t *h) {
  lua_pushlightuserdata(L, (void *)key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_isnil(L, -1))
    return;
  lua_pushlightuserdata(L, h);
  lua_rawget(L, -2);
  lua_remove(L, -2);
}

static const luaL_Reg dl_zk_methods[] = {
  { "get", dl_zk_get },
  { "exists", dl_zk_exists },
  { "children", dl_zk_children },
  { "create", dl_zk_create },
  { "set", dl_zk_set },
  { "delete", dl_zk_delete },
  { "state", dl_zk_state },
  { "generation", dl_zk_generation },
  { "session_id", dl_zk_session_id },
  { "debug_session", dl_zk_debug_session },
  { "ephemeral", dl_zk_ephemeral },
  { "children_cache", dl_zk_children_cache },
  { NULL, NULL },
};

void dl_zk_register(lua_State *L) {
  dl_handle_register(L, DL_ZK_MT, dl_zk_methods);
  /* The weak table of boxes. */
  lua_pushlightuserdata(L, (void *)&dl_zk_boxes_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushlightuserdata(L, (void *)&dl_zk_boxes_key);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  } else {
    lua_pop(L, 1);
  }
}
