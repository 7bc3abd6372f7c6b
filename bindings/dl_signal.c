/*
 * disco.signal: loop:signal([name]) -> signal
 *   signal:start(signum | "SIGINT" | "int", fn) -> true | nil, err, ename
 *   signal:stop(), signal:close(), signal:is_closed()
 * fn(signal, "SIGINT") runs on the loop thread, never in the signal handler.
 */
#include <signal.h>
#include <string.h>
#include <strings.h>

#include "dl.h"

static const struct {
  const char *name;
  int signum;
} dl_signals[] = {
  { "SIGINT", SIGINT },   { "SIGTERM", SIGTERM }, { "SIGHUP", SIGHUP },
  { "SIGQUIT", SIGQUIT }, { "SIGUSR1", SIGUSR1 }, { "SIGUSR2", SIGUSR2 },
  { "SIGPIPE", SIGPIPE }, { "SIGCHLD", SIGCHLD }, { NULL, 0 },
};

static const char *dl_signal_name(int signum) {
  int i;
  for (i = 0; dl_signals[i].name != NULL; i++)
    if (dl_signals[i].signum == signum)
      return dl_signals[i].name;
  return "SIG?";
}

/* Accepts 15, "SIGTERM", "TERM" or "term". */
static int dl_check_signum(lua_State *L, int idx) {
  const char *name;
  int i;
  if (lua_type(L, idx) == LUA_TNUMBER)
    return (int)lua_tointeger(L, idx);
  name = luaL_checkstring(L, idx);
  if (strncasecmp(name, "SIG", 3) == 0)
    name += 3;
  for (i = 0; dl_signals[i].name != NULL; i++)
    if (strcasecmp(dl_signals[i].name + 3, name) == 0)
      return dl_signals[i].signum;
  return luaL_argerror(L, idx, "unknown signal name");
}

static void dl_signal_close_core(void *core) {
  disco_signal_close((disco_signal_t *)core);
}

static void dl_signal_set_ref_core(void *core, int ref) {
  disco_signal_set_ref((disco_signal_t *)core, ref);
}

static void dl_signal_cb(disco_signal_t *sig, int signum) {
  dl_handle_t *h = (dl_handle_t *)disco_signal_data(sig);
  lua_State *L = dl_callback_state(h->owner->ctx);
  if (!dl_handle_push_callback(L, h))
    return;
  lua_pushstring(L, dl_signal_name(signum));
  dl_pcall(h->owner, L, 2, h->name);
}

int dl_loop_signal(lua_State *L) {
  dl_handle_t *h = dl_handle_new(L, 1, 2, DL_SIGNAL_MT, "signal");
  disco_signal_t *sig;
  int err = disco_signal_new(h->owner->loop, dl_handle_on_close, h, &sig);
  if (err != 0) {
    dl_unref(L, &h->owner_ref);
    return dl_push_error(L, err);
  }
  h->core = sig;
  h->close_core = dl_signal_close_core;
  h->set_ref_core = dl_signal_set_ref_core;
  return 1;
}

static int dl_signal_start(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_SIGNAL_MT, 1);
  int signum = dl_check_signum(L, 2);
  int err;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  dl_handle_activate(L, h, 3, 1);
  err = disco_signal_start((disco_signal_t *)h->core, dl_signal_cb, signum);
  return dl_handle_start_result(L, h, err);
}

static int dl_signal_stop(lua_State *L) {
  dl_handle_t *h = dl_check_handle(L, 1, DL_SIGNAL_MT, 1);
  return dl_handle_stop_result(L, h,
                               disco_signal_stop((disco_signal_t *)h->core));
}

static const luaL_Reg dl_signal_methods[] = {
  { "start", dl_signal_start },
  { "stop", dl_signal_stop },
  { NULL, NULL },
};

void dl_signal_register(lua_State *L) {
  dl_handle_register(L, DL_SIGNAL_MT, dl_signal_methods);
}
