/*
 * disco.fs_event: loop:fs_event([name]) -> watch
 *   watch:start(path, fn) -> true | nil, err, ename
 *   watch:stop() -> true | nil, err, ename
 *   watch:close(), watch:is_closed(), watch:name(), watch:ref(), watch:unref()
 * fn(watch, filename, events, err) runs on the loop for each change under
 * `path` (a file, or a directory watched without recursion): `filename` is
 * the entry that changed, relative to `path`, or nil; `events` is
 * { change = bool, rename = bool }; `err` is nil or "ENAME: message".
 * An error in fn is logged with the watch's name and the loop carries on.
 */
#include "dl.h"

static void dl_fs_event_close_core(void *core) {
  disco_fs_event_close((disco_fs_event_t *)core);
}

static void dl_fs_event_set_ref_core(void *core, int ref) {
  disco_fs_event_set_ref((disco_fs_event_t *)core, ref);
}

/* Called by the core; pushes the callback and its four arguments, then
 * calls through dl_pcall. Raises only if Lua runs out of memory while
 * pushing the arguments, as the signal callback. */
static void dl_fs_event_cb(disco_fs_event_t *fs, const char *filename,
                           int events, int status) {
  dl_handle_t *h = (dl_handle_t *)disco_fs_event_data(fs);
  lua_State *L = dl_callback_state(h->owner->ctx);
  if (!dl_handle_push_callback(L, h))
    return;
  if (filename != NULL)
    lua_pushstring(L, filename);
  else
    lua_pushnil(L);
  lua_createtable(L, 0, 2);
  lua_pushboolean(L, (events & DISCO_FS_CHANGE) != 0);
  lua_setfield(L, -2, "change");
  lua_pushboolean(L, (events & DISCO_FS_RENAME) != 0);
  lua_setfield(L, -2, "rename");
  if (status != 0)
    lua_pushfstring(L, "%s: %s", disco_err_name(status),
                    disco_strerror(status));
  else
    lua_pushnil(L);
  dl_pcall(h->owner, L, 4, h->name);
}

int dl_loop_fs_event(lua_State *L) {
  dl_handle_t *h = dl_handle_new(L, 1, 2, DL_FS_EVENT_MT, "fs_event");
  disco_fs_event_t *fs;
  int err = disco_fs_event_new(h->owner->loop, dl_handle_on_close, h, &fs);
  if (err != 0) {
    dl_unref(L, &h->owner_ref);
    return dl_push_error(L, err);
  }
  h->core = fs;
  h->close_core = dl_fs_event_close_core;
  h->set_ref_core = dl_fs_event_set_ref_core;
  return 1;
}

/* watch:start(path, fn): starting an active watch moves it to `path`; a
 * failed start leaves it stopped. */
static int dl_fs_event_start(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_FS_EVENT_MT, 1);
  const char *path = luaL_checkstring(L, 2);
  int err;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  dl_handle_activate(L, h, 3, 1);
  err = disco_fs_event_start((disco_fs_event_t *)h->core, dl_fs_event_cb, path);
  return dl_handle_start_result(L, h, err);
}

static int dl_fs_event_stop(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_FS_EVENT_MT, 1);
  return dl_handle_stop_result(
      L, h, disco_fs_event_stop((disco_fs_event_t *)h->core));
}

static const luaL_Reg dl_fs_event_methods[] = {
  { "start", dl_fs_event_start },
  { "stop", dl_fs_event_stop },
  { NULL, NULL },
};

void dl_fs_event_register(lua_State *L) {
  dl_handle_register(L, DL_FS_EVENT_MT, dl_fs_event_methods);
}
