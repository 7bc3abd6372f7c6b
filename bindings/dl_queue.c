/*
 * loop:queue_probe(producers, per_producer, fn): a diagnostic that starts
 * `producers` threads pushing `per_producer` numbered events each through a
 * fresh event queue, and calls fn(result) on the loop once every event has
 * arrived. The demo and the specs use it to show the cross-thread path that
 * ZooKeeper events take; the runtime never does.
 */
#include <stdlib.h>

#include "dl.h"

typedef struct {
  dl_loop_t *owner;
  int owner_ref;
  int cb_ref;
} dl_probe_t;

static void dl_set_number(lua_State *L, const char *key, double value) {
  lua_pushnumber(L, value);
  lua_setfield(L, -2, key);
}

static void dl_probe_done(const disco_queue_probe_result_t *r, void *data) {
  dl_probe_t *probe = (dl_probe_t *)data;
  lua_State *L = dl_callback_state(probe->owner->ctx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, probe->cb_ref);
  lua_newtable(L);
  dl_set_number(L, "producers", (double)r->producers);
  dl_set_number(L, "per_producer", (double)r->per_producer);
  dl_set_number(L, "received", (double)r->received);
  dl_set_number(L, "out_of_order", (double)r->out_of_order);
  dl_set_number(L, "duplicates", (double)r->duplicates);
  dl_set_number(L, "missing", (double)r->missing);
  dl_set_number(L, "wakeups", (double)r->wakeups);
  dl_set_number(L, "elapsed_ms", r->elapsed_ms);
  dl_unref(L, &probe->cb_ref);
  dl_unref(L, &probe->owner_ref);
  dl_pcall(probe->owner, L, 1, "queue_probe");
  free(probe);
}

int dl_loop_queue_probe(lua_State *L) {
  dl_loop_t *lp = dl_check_loop(L, 1);
  lua_Number producers = luaL_checknumber(L, 2);
  lua_Number per_producer = luaL_checknumber(L, 3);
  dl_probe_t *probe;
  int err;
  luaL_checktype(L, 4, LUA_TFUNCTION);
  luaL_argcheck(L, producers >= 1 && producers <= 64, 2, "1 to 64");
  luaL_argcheck(L, per_producer >= 1 && per_producer <= 1e7, 3,
                "1 to 10000000");
  probe = (dl_probe_t *)malloc(sizeof(*probe));
  if (probe == NULL)
    return dl_push_error(L, DISCO_ENOMEM);
  probe->owner = lp;
  lua_pushvalue(L, 1);
  probe->owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 4);
  probe->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  err = disco_queue_probe_start(lp->loop, (unsigned)producers,
                                (uint64_t)per_producer, dl_probe_done, probe);
  if (err != 0) {
    dl_unref(L, &probe->cb_ref);
    dl_unref(L, &probe->owner_ref);
    free(probe);
    return dl_push_error(L, err);
  }
  lua_pushboolean(L, 1);
  return 1;
}
