/*
 * disco.zk_ephemeral: zk:ephemeral(path, data, opts) -> node | nil, err,
 * ename
 *   opts: nil | { on_state = function(node, state, err), name = string }
 *   state: "created", "recreated", "lost" (err "ENAME: message"), "closed"
 *   node:update(data, cb) -> true | nil, err, ename; cb(err) once the data
 *     is on our node (may be nil)
 *   node:path(), node:owned(), node:close(), node:is_closed()
 *
 * As with sessions, the box is not anchored: a node nobody refers to is
 * closed (and deleted if ours) by the __gc backstop. It keeps its session's
 * box alive until it closes. Closing the session closes the node.
 */
#include <stdlib.h>
#include <string.h>

#include "dl.h"

/* Registry key of the weak table handle state -> box. */
static const char dl_eph_boxes_key = 0;

typedef struct {
  dl_loop_t *owner;
  int cb_ref;
  char name[DL_NAME_MAX + 8];
} dl_eph_update_t;

static void dl_eph_close_core(void *core) {
  disco_zk_ephemeral_close((disco_zk_ephemeral_t *)core);
}

static void dl_eph_set_ref_core(void *core, int ref) {
  (void)core;
  (void)ref;
}

static void dl_eph_state_cb(disco_zk_ephemeral_t *node,
                            disco_zk_ephemeral_state_t state, int err) {
  dl_handle_t *h = (dl_handle_t *)disco_zk_ephemeral_data(node);
  lua_State *L;
  if (!h->box_alive || h->cb_ref == LUA_NOREF || h->owner->ctx->in_gc)
    return;
  L = dl_callback_state(h->owner->ctx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->cb_ref);
  dl_zk_weak_push(L, &dl_eph_boxes_key, h);
  lua_pushstring(L, disco_zk_ephemeral_state_name(state));
  if (err != 0)
    lua_pushfstring(L, "%s: %s", disco_err_name(err), disco_strerror(err));
  else
    lua_pushnil(L);
  dl_pcall(h->owner, L, 3, h->name);
}

static void dl_eph_update_cb(disco_zk_ephemeral_t *node, int err, void *arg) {
  dl_eph_update_t *u = (dl_eph_update_t *)arg;
  lua_State *L = dl_callback_state(u->owner->ctx);
  (void)node;
  if (u->cb_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, u->cb_ref);
    if (err != 0)
      lua_pushfstring(L, "%s: %s", disco_err_name(err), disco_strerror(err));
    else
      lua_pushnil(L);
    dl_pcall(u->owner, L, 1, u->name);
  }
  dl_unref(L, &u->cb_ref);
  free(u);
}

/* zk:ephemeral(path, data, opts) */
int dl_zk_ephemeral(lua_State *L) {
  const char *path = luaL_checkstring(L, 2);
  const char *value = NULL;
  size_t len = 0;
  const char *name = "ephemeral";
  int cb_idx = 0;
  dl_handle_t *zh = dl_check_handle(L, 1, DL_ZK_MT, 1);
  disco_zk_ephemeral_t *node;
  dl_handle_t *h;
  int err;

  if (!lua_isnoneornil(L, 3))
    value = luaL_checklstring(L, 3, &len);
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    cb_idx = dl_option_function(L, 4, "on_state");
    lua_getfield(L, 4, "name");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_argerror(L, 4, "name must be a string");
      name = lua_tostring(L, -1); /* stays on the stack */
    }
  }
  h = dl_zk_handle_new(L, 1, DL_ZK_EPHEMERAL_MT, name); /* box on top */
  err = disco_zk_ephemeral_new((disco_zk_t *)zh->core, path, value, len,
                               dl_eph_state_cb, dl_handle_on_close, h, &node);
  if (err != 0) {
    dl_unref(L, &h->owner_ref);
    return dl_push_error(L, err);
  }
  h->core = node;
  h->close_core = dl_eph_close_core;
  h->set_ref_core = dl_eph_set_ref_core;
  if (cb_idx != 0) {
    lua_pushvalue(L, cb_idx);
    h->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  dl_zk_weak_set(L, &dl_eph_boxes_key, h, -1);
  /* The path stays readable after close: kept in the box's environment. */
  lua_createtable(L, 0, 1);
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
  lua_setfenv(L, -2);
  return 1;
}

/* node:update(data, cb) */
static int dl_eph_update(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_ZK_EPHEMERAL_MT, 1);
  size_t len;
  const char *value = luaL_checklstring(L, 2, &len);
  dl_eph_update_t *u;
  int err;
  if (!lua_isnoneornil(L, 3))
    luaL_checktype(L, 3, LUA_TFUNCTION);
  u = (dl_eph_update_t *)malloc(sizeof(*u));
  if (u == NULL)
    return luaL_error(L, "out of memory");
  u->owner = h->owner;
  u->cb_ref = LUA_NOREF;
  snprintf(u->name, sizeof(u->name), "%s:update", h->name);
  if (!lua_isnoneornil(L, 3)) {
    lua_pushvalue(L, 3);
    u->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  err = disco_zk_ephemeral_update((disco_zk_ephemeral_t *)h->core, value, len,
                                  dl_eph_update_cb, u);
  if (err != 0) {
    dl_unref(L, &u->cb_ref);
    free(u);
    return dl_push_error(L, err);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* node:path() works on a closed node too. */
static int dl_eph_path(lua_State *L) {
  dl_check_handle(L, 1, DL_ZK_EPHEMERAL_MT, 0);
  lua_getfenv(L, 1);
  lua_getfield(L, -1, "path");
  return 1;
}

static int dl_eph_owned(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_ZK_EPHEMERAL_MT, 0);
  lua_pushboolean(L, h->core != NULL && !h->closing &&
                         disco_zk_ephemeral_owned(h->core));
  return 1;
}

static const luaL_Reg dl_eph_methods[] = {
  { "update", dl_eph_update },
  { "path", dl_eph_path },
  { "owned", dl_eph_owned },
  { NULL, NULL },
};

void dl_zk_ephemeral_register(lua_State *L) {
  dl_handle_register(L, DL_ZK_EPHEMERAL_MT, dl_eph_methods);
}
