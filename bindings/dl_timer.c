/*
 * disco.timer: loop:timer([name]) -> timer
 *   timer:start(timeout_ms, repeat_ms, fn) -> true | nil, err, ename
 *   timer:stop(), timer:is_active(), timer:close(), timer:is_closed()
 * fn(timer) runs on the loop; an error in it is logged with the timer's
 * name and the loop carries on.
 */
#include "dl.h"

static void dl_timer_close_core(void *core) {
  disco_timer_close((disco_timer_t *)core);
}

static void dl_timer_set_ref_core(void *core, int ref) {
  disco_timer_set_ref((disco_timer_t *)core, ref);
}

static void dl_timer_cb(disco_timer_t *timer) {
  dl_handle_t *h = (dl_handle_t *)disco_timer_data(timer);
  lua_State *L = dl_callback_state(h->owner->ctx);
  if (!dl_handle_push_callback(L, h))
    return;
  dl_pcall(h->owner, L, 1, h->name);
  /* A one-shot timer that was not restarted need not keep its box alive. */
  if (h->core != NULL && !disco_timer_is_active((disco_timer_t *)h->core))
    dl_handle_deactivate(L, h);
}

int dl_loop_timer(lua_State *L) {
  dl_handle_t *h = dl_handle_new(L, 1, 2, DL_TIMER_MT, "timer");
  disco_timer_t *timer;
  int err = disco_timer_new(h->owner->loop, dl_handle_on_close, h, &timer);
  if (err != 0) {
    dl_unref(L, &h->owner_ref);
    return dl_push_error(L, err);
  }
  h->core = timer;
  h->close_core = dl_timer_close_core;
  h->set_ref_core = dl_timer_set_ref_core;
  return 1;
}

static uint64_t dl_check_ms(lua_State *L, int idx) {
  lua_Number ms = luaL_checknumber(L, idx);
  luaL_argcheck(L, ms >= 0 && ms < 9007199254740992.0, idx,
                "milliseconds must be >= 0");
  return (uint64_t)ms;
}

static int dl_timer_start(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_TIMER_MT, 1);
  uint64_t timeout = dl_check_ms(L, 2);
  uint64_t repeat = dl_check_ms(L, 3);
  int err;
  luaL_checktype(L, 4, LUA_TFUNCTION);
  dl_handle_activate(L, h, 4, 1);
  err =
      disco_timer_start((disco_timer_t *)h->core, dl_timer_cb, timeout, repeat);
  return dl_handle_start_result(L, h, err);
}

static int dl_timer_stop(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_TIMER_MT, 1);
  return dl_handle_stop_result(L, h,
                               disco_timer_stop((disco_timer_t *)h->core));
}

static int dl_timer_is_active(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_TIMER_MT, 0);
  lua_pushboolean(L, h->core != NULL &&
                         disco_timer_is_active((disco_timer_t *)h->core));
  return 1;
}

static const luaL_Reg dl_timer_methods[] = {
  { "start", dl_timer_start },
  { "stop", dl_timer_stop },
  { "is_active", dl_timer_is_active },
  { NULL, NULL },
};

void dl_timer_register(lua_State *L) {
  dl_handle_register(L, DL_TIMER_MT, dl_timer_methods);
}
