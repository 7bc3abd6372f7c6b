/*
 * The `disco` host binary: embeds LuaJIT, preloads disco.core (linked in),
 * points package.path at disco's Lua modules and hands argv to the Lua CLI
 * (lua/disco/cli/init.lua), whose return value is the exit status.
 *
 * Module lookup: when the binary runs from a build tree (build/disco with
 * ../lua/disco/init.lua beside it) it uses that tree, so `build/disco` works
 * without installing; otherwise it uses the directories fixed at build time
 * from PREFIX.
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "dl.h"

#ifndef DISCO_LUA_DIR
#define DISCO_LUA_DIR "/usr/local/share/lua/5.1"
#endif
#ifndef DISCO_PLUGIN_DIR
#define DISCO_PLUGIN_DIR "/usr/local/share/disco/plugins"
#endif

int luaopen_disco_core(lua_State *L);

typedef struct {
  char exe[PATH_MAX];
  char lua_dir[PATH_MAX];
  char plugin_dir[PATH_MAX];
  const char *tree; /* "build" or "installed" */
} host_paths_t;

static int host_file_exists(const char *path) {
  return access(path, R_OK) == 0;
}

/*
 * Uses the layout where `lua_dir`/disco/init.lua exists (relative paths are
 * taken from `exe_dir`). Returns 1 when it does and `paths` is filled.
 */
static int host_try_layout(host_paths_t *paths, const char *exe_dir,
                           const char *lua_dir, const char *plugin_dir,
                           const char *tree) {
  char lua_path[PATH_MAX];
  char plugin_path[PATH_MAX];
  char probe[PATH_MAX];
  const char *base = exe_dir;
  if (lua_dir[0] == '/')
    base = "";
  if (snprintf(lua_path, sizeof(lua_path), "%s%s%s", base, *base ? "/" : "",
               lua_dir) >= (int)sizeof(lua_path) ||
      snprintf(plugin_path, sizeof(plugin_path), "%s%s%s", base,
               *base ? "/" : "", plugin_dir) >= (int)sizeof(plugin_path) ||
      snprintf(probe, sizeof(probe), "%s/disco/init.lua", lua_path) >=
          (int)sizeof(probe) ||
      !host_file_exists(probe) || realpath(lua_path, paths->lua_dir) == NULL)
    return 0;
  /* The plugin directory may not exist yet; keep the path as given. */
  if (realpath(plugin_path, paths->plugin_dir) == NULL)
    strcpy(paths->plugin_dir, plugin_path);
  paths->tree = tree;
  return 1;
}

/*
 * Finds disco's Lua modules and plugins: a build tree (build/disco beside
 * lua/), then an installed prefix relative to the binary (PREFIX/bin/disco
 * beside PREFIX/share/lua/5.1), so an installed tree can be moved, then the
 * prefix fixed at build time.
 */
static void host_find_paths(host_paths_t *paths) {
  char exe_dir[PATH_MAX];
  size_t size = sizeof(paths->exe);
  char *slash;
  if (uv_exepath(paths->exe, &size) != 0)
    paths->exe[0] = '\0';
  strcpy(exe_dir, paths->exe);
  slash = strrchr(exe_dir, '/');
  if (slash != NULL) {
    *slash = '\0';
    if (host_try_layout(paths, exe_dir, "../lua", "../plugins", "build") ||
        host_try_layout(paths, exe_dir, "../share/lua/5.1",
                        "../share/disco/plugins", "installed"))
      return;
  }
  if (host_try_layout(paths, "", DISCO_LUA_DIR, DISCO_PLUGIN_DIR, "installed"))
    return;
  /* Nothing found: keep the configured paths so that the error from
   * require names where the modules were expected. */
  paths->tree = "installed";
  strcpy(paths->lua_dir, DISCO_LUA_DIR);
  strcpy(paths->plugin_dir, DISCO_PLUGIN_DIR);
}

/* [-0, +0] Prepends disco's module directories to package.path, preloads
 * disco.core and records where things were found in package.loaded
 * ["disco.host"]. May raise (out of memory) before the CLI runs. */
static void host_setup(lua_State *L, const host_paths_t *paths) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", paths->lua_dir,
                  paths->lua_dir, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 1);

  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_disco_core);
  lua_setfield(L, -2, "disco.core");
  lua_pop(L, 1);

  lua_getfield(L, -1, "loaded");
  lua_newtable(L);
  lua_pushstring(L, paths->exe);
  lua_setfield(L, -2, "exe");
  lua_pushstring(L, paths->lua_dir);
  lua_setfield(L, -2, "lua_dir");
  lua_pushstring(L, paths->plugin_dir);
  lua_setfield(L, -2, "plugin_dir");
  lua_pushstring(L, paths->tree);
  lua_setfield(L, -2, "tree");
  lua_setfield(L, -2, "disco.host");
  lua_pop(L, 2);
}

/* [-0, +1] Message handler: the error with a traceback. */
static int host_traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL)
    msg =
        lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  lua_getglobal(L, "debug");
  lua_getfield(L, -1, "traceback");
  lua_pushstring(L, msg);
  lua_pushinteger(L, 2);
  lua_call(L, 2, 1);
  return 1;
}

/* [-0, +1] Protected body: require("disco.cli").main(args) -> status */
static int host_main(lua_State *L) {
  char **argv = (char **)lua_touserdata(L, 1);
  int argc = (int)lua_tointeger(L, 2);
  int i;
  lua_getglobal(L, "require");
  lua_pushstring(L, "disco.cli");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "main");
  lua_createtable(L, argc, 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_call(L, 1, 1);
  return 1;
}

int main(int argc, char **argv) {
  host_paths_t paths;
  lua_State *L;
  int status = 0;

  /* Writes to a closed socket must return EPIPE, not kill the daemon. */
  signal(SIGPIPE, SIG_IGN);
  argv = uv_setup_args(argc, argv);

  host_find_paths(&paths);
  L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "disco: cannot create a Lua state (out of memory)\n");
    return 1;
  }
  luaL_openlibs(L);
  host_setup(L, &paths);

  lua_pushcfunction(L, host_traceback);
  lua_pushcfunction(L, host_main);
  lua_pushlightuserdata(L, argv);
  lua_pushinteger(L, argc);
  if (lua_pcall(L, 2, 1, -4) != 0) {
    fprintf(stderr, "disco: %s\n", lua_tostring(L, -1));
    status = 1;
  } else if (lua_isnumber(L, -1)) {
    status = (int)lua_tointeger(L, -1);
  }
  /* Closing the state runs the finalizers that close loops and sessions. */
  lua_close(L);
  return status;
}
