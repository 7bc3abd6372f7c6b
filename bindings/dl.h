/*
 * disco.core Lua bindings: shared declarations.
 *
 * The bindings only translate between Lua and the core (core/disco.h):
 * argument checks, userdata lifetime, callback references and error tuples.
 * Conventions (after luv):
 * - Runtime failures return `nil, "ENAME: message", "ENAME"`; programmer
 *   errors (wrong type, use after close) raise.
 * - A handle's userdata is a small box pointing at a dl_handle_t, which the C
 *   side may outlive or which may outlive the C side; whichever of the two
 *   lets go last frees it.
 * - Every call from the loop into Lua goes through dl_pcall().
 *
 * Raising: a `static int dl_<type>_<method>(lua_State *L)` is a Lua C
 * function; it may raise (longjmp) through luaL_check* and luaL_error on
 * bad arguments, and is only ever called by Lua. Functions the core calls
 * (timer, signal, fs event, probe and log callbacks, dl_handle_on_close)
 * never raise: they only touch the Lua stack through protected calls and
 * reference releases. The other helpers say their stack effect as
 * [-pop, +push] and whether they may raise.
 */
#ifndef DL_H
#define DL_H

#include <lauxlib.h>
#include <lua.h>

#include "disco.h"

/* Bump when the Lua-visible API of disco.core changes incompatibly;
 * lua/disco/init.lua refuses to load a core built with another value. */
#define DL_ABI_VERSION 1

#define DL_LOOP_MT "disco.loop"
#define DL_TIMER_MT "disco.timer"
#define DL_SIGNAL_MT "disco.signal"
#define DL_FS_EVENT_MT "disco.fs_event"
#define DL_ZK_MT "disco.zk"
#define DL_ZK_EPHEMERAL_MT "disco.zk_ephemeral"
#define DL_ZK_CACHE_MT "disco.zk_cache"
#define DL_REVCACHE_MT "disco.revcache"

/* Handle names (for log lines) are cut to this many bytes. */
#define DL_NAME_MAX 64

/*
 * Per-Lua-state context, stored in the registry under a static-address key.
 * There are no C globals: everything a callback needs hangs off this.
 */
typedef struct dl_ctx_s {
  /* The thread now driving a loop (run, step, close) or finalizing one; the
   * state every loop callback runs on. NULL while no loop runs. Keeping no
   * other thread means a coroutine that required the module can die. */
  lua_State *cur_L;
  int error_handler_ref; /* replaceable error reporter, or LUA_NOREF */
  int in_error_handler;  /* guards against an error handler that throws */
  int in_gc;             /* finalizers may release refs but never call Lua */
  unsigned long callback_errors; /* callbacks that raised, for stats */
} dl_ctx_t;

/* A loop as seen from Lua. The disco_loop_t is malloc'ed so that handles
 * closing late can still reach it. */
typedef struct dl_loop_s {
  disco_loop_t *loop;
  dl_ctx_t *ctx;
  int closed;
  int log_sink_ref; /* Lua log sink, or LUA_NOREF */
  int in_sink;      /* the Lua sink is running: its own errors go to stderr */
  int running;      /* inside run/run_once/step: libuv forbids nesting */
} dl_loop_t;

/* The state shared by a handle's userdata box and its core handle. */
typedef struct dl_handle_s {
  void *core; /* disco_timer_t *, disco_signal_t *, ...; NULL once closed */
  void (*close_core)(void *core);            /* the core's idempotent close */
  void (*set_ref_core)(void *core, int ref); /* keeps the loop alive or not */
  dl_loop_t *owner;                          /* the loop box */
  int owner_ref; /* keeps the loop box alive while the handle is open */
  int cb_ref;    /* the Lua callback, or LUA_NOREF */
  int self_ref;  /* keeps the box alive while the handle is active */
  int box_alive; /* the userdata box has not been collected */
  int closing;   /* close() was called: Lua may not use it any more */
  char name[DL_NAME_MAX];
} dl_handle_t;

/* dl_core.c */
/* [-0, +0] The context of this Lua state; NULL before luaopen. No raise. */
dl_ctx_t *dl_ctx(lua_State *L);
/* [-0, +3] Pushes nil, "ENAME: message", "ENAME"; returns 3. May raise
 * only on memory exhaustion. */
int dl_push_error(lua_State *L, int err);
/* [-0, +0] Releases a registry reference and resets it to LUA_NOREF. */
void dl_unref(lua_State *L, int *ref);
/* The state to use from a loop callback: ctx->cur_L, which is set. */
lua_State *dl_callback_state(dl_ctx_t *ctx);

/* dl_pcall.c */
/*
 * [-(nargs+1), +0] Calls the function below `nargs` arguments in protected
 * mode. On error, reports "who: message" with a traceback through the
 * error handler (the loop's logger by default), counts it, and returns the
 * Lua error code; never raises, never exits, leaves the stack balanced.
 */
int dl_pcall(dl_loop_t *lp, lua_State *L, int nargs, const char *who);
int dl_set_error_handler(lua_State *L);
int dl_callback_errors(lua_State *L);

/* dl_loop.c */
int dl_loop_new(lua_State *L);
void dl_loop_register(lua_State *L);
/* [-0, +0] The open loop at idx; raises when it is not one or is closed. */
dl_loop_t *dl_check_loop(lua_State *L, int idx);
/* Sets ctx->cur_L to L (the thread about to run callbacks) and returns the
 * previous value, which dl_leave() restores. No stack effect. */
lua_State *dl_enter(dl_ctx_t *ctx, lua_State *L);
void dl_leave(dl_ctx_t *ctx, lua_State *previous);

/* dl_log.c */
/* [-0, +0] Installs/removes the loop's Lua log sink (function at idx or
 * nil). */
int dl_loop_set_log_sink(lua_State *L);
int dl_loop_log(lua_State *L);
int dl_loop_set_log_level(lua_State *L);
int dl_loop_get_log_level(lua_State *L);
void dl_log_release(lua_State *L, dl_loop_t *lp);

/* dl_handle.c helpers shared by timers, signals and fs events. */
/* [-0, +1] Pushes a new box for a handle of loop `loop_idx`, named by the
 * optional string at `name_idx`. The caller then creates the core handle with
 * dl_handle_on_close and the returned state as its data. */
dl_handle_t *dl_handle_new(lua_State *L, int loop_idx, int name_idx,
                           const char *mt, const char *default_name);
/* [-0, +0] The handle at idx; raises on a wrong type, and when
 * must_be_open and close() was called. */
dl_handle_t *dl_check_handle(lua_State *L, int idx, const char *mt,
                             int must_be_open);
/* [-0, +0] Stores the callback at fn_idx and anchors the box at box_idx
 * while the handle is active; dl_handle_deactivate drops the anchor (the
 * callback stays for a restart). May raise only on memory exhaustion. */
void dl_handle_activate(lua_State *L, dl_handle_t *h, int fn_idx, int box_idx);
void dl_handle_deactivate(lua_State *L, dl_handle_t *h);
/* [-0, +1|+3] Ends handle:start() after dl_handle_activate: on an error
 * drops the anchor again and pushes the error tuple, else pushes true.
 * Returns the number of results. May raise only on memory exhaustion. */
int dl_handle_start_result(lua_State *L, dl_handle_t *h, int err);
/* [-0, +1|+3] Ends handle:stop(): on success drops the anchor and pushes
 * true, else pushes the error tuple. */
int dl_handle_stop_result(lua_State *L, dl_handle_t *h, int err);
/* The core close callback shared by every handle type. */
void dl_handle_on_close(void *core_handle, void *data);
/* [-0, +2 | 0] Pushes the handle's callback then its box; returns 0 when
 * there is no callback to call (stack unchanged). */
int dl_handle_push_callback(lua_State *L, dl_handle_t *h);
/* [-0, +0] Creates the metatable `mt` with `methods` plus the shared ones
 * (close, is_closed, name, ref, unref) and the __gc backstop. */
void dl_handle_register(lua_State *L, const char *mt, const luaL_Reg *methods);
/* [-0, +0] dl_handle_register for handles whose close cancels work with
 * Lua callbacks (revcache, dubbo client): close enters the loop state so
 * those callbacks run at once, and __gc closes with Lua calls refused. */
void dl_handle_register_entering(lua_State *L, const char *mt,
                                 const luaL_Reg *methods);

/* dl_handle.c: reading an options table (at stack index 2). */
/* [-0, +0] Reads the optional number opts[field] into *out when present;
 * raises unless it is a number in [min, max]. */
void dl_option_number(lua_State *L, const char *field, double min, double max,
                      double *out);
/* [-0, +0] dl_option_number for a size_t option; *out is the default. */
void dl_option_size(lua_State *L, const char *field, double min, double max,
                    size_t *out);
/* [-0, +0] dl_option_number for a millisecond option up to a day; *out is the
 * default. */
void dl_option_ms(lua_State *L, const char *field, double min, uint64_t *out);
/* [-0, +0|1] Pushes the optional function opts[field] of the options table
 * at `opts_idx` and returns its stack index; pushes nothing and returns 0
 * when it is nil; raises unless it is a function. */
int dl_option_function(lua_State *L, int opts_idx, const char *field);
/* [-0, +0] t[name] = v for the table at the top (a stats counter). */
void dl_set_count(lua_State *L, const char *name, uint64_t v);

/* dl_timer.c, dl_signal.c, dl_fs_event.c, dl_queue.c */
void dl_timer_register(lua_State *L);
int dl_loop_timer(lua_State *L);
void dl_signal_register(lua_State *L);
int dl_loop_signal(lua_State *L);
void dl_fs_event_register(lua_State *L);
int dl_loop_fs_event(lua_State *L);
int dl_loop_queue_probe(lua_State *L);

/* dl_zk.c */
void dl_zk_register(lua_State *L);
int dl_loop_zk(lua_State *L);
/* [-0, +1] The stat table of a node, as zk:get() returns it. May raise on
 * memory exhaustion only. */
void dl_zk_push_stat(lua_State *L, const disco_zk_stat_t *st);
/* [-0, +1] A new box of type `mt` for a handle built on the open session
 * at zk_idx (raises when closed), named "<session name>:<name>". The
 * handle keeps the session's box alive until it closes. */
dl_handle_t *dl_zk_handle_new(lua_State *L, int zk_idx, const char *mt,
                              const char *name);
/* [-0, +0] Records the box at idx under h in the weak table at `key`, and
 * [-0, +1] pushes that box (nil once collected). May raise on memory
 * exhaustion only. */
void dl_zk_weak_set(lua_State *L, const void *key, dl_handle_t *h, int idx);
void dl_zk_weak_push(lua_State *L, const void *key, dl_handle_t *h);

/* dl_zk_ephemeral.c, dl_zk_cache.c */
int dl_zk_ephemeral(lua_State *L);
void dl_zk_ephemeral_register(lua_State *L);
int dl_zk_children_cache(lua_State *L);
void dl_zk_cache_register(lua_State *L);

/* dl_revcache.c: the revision cache's metatable and loop:revcache (after
 * dl_loop_register). */
void dl_revcache_register(lua_State *L);

/* dl_system.c: the clock and the network interfaces. */
int dl_time_ms(lua_State *L);
int dl_interface_addresses(lua_State *L);
int dl_trim_memory(lua_State *L);

/* dl_hessian2.c: Hessian 2.0 <-> Lua (conventions at the top of that
 * file and in docs/lua-api.md). */
int dl_hessian2_decode(lua_State *L);
int dl_hessian2_encode(lua_State *L);
/* [-0, +0] Sets core.hessian2_null on the module table at the top. */
void dl_hessian2_register(lua_State *L);
/* [-0, +1] A decoded value as Lua; a node reached twice is one table (so
 * cycles become cyclic tables). May raise on memory exhaustion only. */
void dl_h2_push_value(lua_State *L, const disco_h2_value_t *v);
/* [-0, +0] Writes the Lua value at idx to w: 0, or DISCO_EINVAL (a value
 * Hessian cannot carry, a cycle) or DISCO_ENOMEM with a message in err.
 * May raise on memory exhaustion only. */
int dl_h2_write_lua(lua_State *L, int idx, disco_h2_writer_t *w, char *err,
                    size_t errlen);

/* dl_dubbo.c: the dubbo server and client metatables and
 * loop:dubbo_server / loop:dubbo_client (after dl_loop_register). */
#define DL_DUBBO_SERVER_MT "disco.dubbo_server"
#define DL_DUBBO_CLIENT_MT "disco.dubbo_client"
void dl_dubbo_register(lua_State *L);

/* dl_http.c: the http server metatable and loop:http_server (after
 * dl_loop_register). */
#define DL_HTTP_SERVER_MT "disco.http_server"
void dl_http_register(lua_State *L);

/* dl_http_client.c: the http client and request metatables and
 * loop:http_client (after dl_loop_register). */
void dl_http_client_register(lua_State *L);

#endif /* DL_H */
