/*
 * disco.loop: the event loop as seen from Lua.
 *
 * Every entry point that can run callbacks (run, run_once, step, close and
 * the finalizer) records the calling Lua thread in the context first, so that
 * callbacks run on the thread that drives the loop, including from inside an
 * OpenResty timer's coroutine.
 */
#include <stdlib.h>

#include "dl.h"

lua_State *dl_enter(dl_ctx_t *ctx, lua_State *L) {
  lua_State *previous = ctx->cur_L;
  ctx->cur_L = L;
  return previous;
}

void dl_leave(dl_ctx_t *ctx, lua_State *previous) {
  ctx->cur_L = previous;
}

dl_loop_t *dl_check_loop(lua_State *L, int idx) {
  dl_loop_t *lp = (dl_loop_t *)luaL_checkudata(L, idx, DL_LOOP_MT);
  if (lp->closed)
    luaL_argerror(L, idx, "loop is closed");
  return lp;
}

/* core.new_loop() -> loop | nil, err, ename */
int dl_loop_new(lua_State *L) {
  dl_loop_t *lp = (dl_loop_t *)lua_newuserdata(L, sizeof(*lp));
  int err;
  lp->loop = NULL;
  lp->ctx = dl_ctx(L);
  lp->closed = 1;
  lp->log_sink_ref = LUA_NOREF;
  lp->in_sink = 0;
  lp->running = 0;
  luaL_getmetatable(L, DL_LOOP_MT);
  lua_setmetatable(L, -2);
  lp->loop = (disco_loop_t *)malloc(sizeof(*lp->loop));
  if (lp->loop == NULL)
    return dl_push_error(L, DISCO_ENOMEM);
  err = disco_loop_init(lp->loop);
  if (err != 0) {
    free(lp->loop);
    lp->loop = NULL;
    return dl_push_error(L, err);
  }
  lp->loop->data = lp;
  lp->closed = 0;
  return 1;
}

/* [-0, +0] The one cleanup shared by loop:close() and __gc. Closing runs the
 * close callbacks of every handle still open, which release their Lua refs. */
static int dl_loop_cleanup(lua_State *L, dl_loop_t *lp) {
  lua_State *previous;
  int err;
  if (lp->closed)
    return 0;
  if (lp->running)
    return DISCO_EBUSY;
  lp->closed = 1;
  previous = dl_enter(lp->ctx, L);
  err = disco_loop_close(lp->loop);
  dl_leave(lp->ctx, previous);
  dl_log_release(L, lp);
  if (err == 0) {
    free(lp->loop);
  } else {
    /* libuv still holds handles it would touch later: leaking the loop is
     * the safe choice, and it is logged. */
    disco_log_stderr_sink(NULL, DISCO_LOG_ERROR, "loop",
                          "loop did not close cleanly; leaking it");
  }
  lp->loop = NULL;
  return err;
}

static int dl_loop_close(lua_State *L) {
  dl_loop_t *lp = (dl_loop_t *)luaL_checkudata(L, 1, DL_LOOP_MT);
  int err = dl_loop_cleanup(L, lp);
  if (err != 0)
    return dl_push_error(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

static int dl_loop_gc(lua_State *L) {
  dl_loop_t *lp = (dl_loop_t *)lua_touserdata(L, 1);
  dl_ctx_t *ctx = lp->ctx;
  int was_in_gc = ctx->in_gc;
  ctx->in_gc = 1;
  dl_loop_cleanup(L, lp);
  ctx->in_gc = was_in_gc;
  return 0;
}

typedef int (*dl_run_fn)(disco_loop_t *loop);

/* [-0, +1] Runs the loop with `run`, on this Lua thread. Re-entrant runs
 * (a callback that runs the loop) are refused: libuv forbids them. */
static int dl_loop_run_with(lua_State *L, dl_run_fn run) {
  dl_loop_t *lp = dl_check_loop(L, 1);
  lua_State *previous;
  int alive;
  if (lp->running)
    return luaL_error(L, "loop is already running (a callback may not run it)");
  lp->running = 1;
  previous = dl_enter(lp->ctx, L);
  alive = run(lp->loop);
  dl_leave(lp->ctx, previous);
  lp->running = 0;
  lua_pushboolean(L, alive != 0);
  return 1;
}

/* loop:run() -> alive: until stopped or out of work */
static int dl_loop_run(lua_State *L) {
  return dl_loop_run_with(L, disco_loop_run);
}

/* loop:run_once() -> alive: one iteration, waiting for I/O if none is ready */
static int dl_loop_run_once(lua_State *L) {
  return dl_loop_run_with(L, disco_loop_run_once);
}

/* loop:step() -> alive: one iteration that never blocks */
static int dl_loop_step(lua_State *L) {
  return dl_loop_run_with(L, disco_loop_run_nowait);
}

static int dl_loop_stop(lua_State *L) {
  disco_loop_stop(dl_check_loop(L, 1)->loop);
  return 0;
}

static int dl_loop_alive(lua_State *L) {
  lua_pushboolean(L, disco_loop_alive(dl_check_loop(L, 1)->loop));
  return 1;
}

/* loop:now() -> loop time in ms, cached per iteration */
static int dl_loop_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)disco_loop_now(dl_check_loop(L, 1)->loop));
  return 1;
}

static int dl_loop_update_time(lua_State *L) {
  disco_loop_update_time(dl_check_loop(L, 1)->loop);
  return 0;
}

static int dl_loop_is_closed(lua_State *L) {
  dl_loop_t *lp = (dl_loop_t *)luaL_checkudata(L, 1, DL_LOOP_MT);
  lua_pushboolean(L, lp->closed);
  return 1;
}

static int dl_loop_tostring(lua_State *L) {
  dl_loop_t *lp = (dl_loop_t *)luaL_checkudata(L, 1, DL_LOOP_MT);
  lua_pushfstring(L, "disco.loop (%s): %p", lp->closed ? "closed" : "open",
                  (void *)lp);
  return 1;
}

static const luaL_Reg dl_loop_methods[] = {
  { "run", dl_loop_run },
  { "run_once", dl_loop_run_once },
  { "step", dl_loop_step },
  { "stop", dl_loop_stop },
  { "alive", dl_loop_alive },
  { "now", dl_loop_now },
  { "update_time", dl_loop_update_time },
  { "close", dl_loop_close },
  { "is_closed", dl_loop_is_closed },
  { "timer", dl_loop_timer },
  { "signal", dl_loop_signal },
  { "fs_event", dl_loop_fs_event },
  { "queue_probe", dl_loop_queue_probe },
  { "zk", dl_loop_zk },
  { "set_log_sink", dl_loop_set_log_sink },
  { "log", dl_loop_log },
  { "set_log_level", dl_loop_set_log_level },
  { "get_log_level", dl_loop_get_log_level },
  { NULL, NULL },
};

void dl_loop_register(lua_State *L) {
  luaL_newmetatable(L, DL_LOOP_MT);
  lua_newtable(L);
  luaL_register(L, NULL, dl_loop_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, dl_loop_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, dl_loop_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}
