/*
 * dl_system.c: what the runtime asks of the machine: the wall clock in
 * milliseconds (Dubbo's timestamps) and the network interfaces (the address
 * a provider advertises by default), and giving freed heap memory back.
 */
#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h>
#endif

#include "dl.h"

/* core.trim_memory() -> true if memory went back to the system. After a
 * bulk load (thousands of ZooKeeper replies read and freed) the C heap
 * keeps the freed pages; malloc_trim returns them, so RSS shows what is
 * live. Costs a walk of the free lists: call it after bursts, not per
 * event. [-0, +1] */
int dl_trim_memory(lua_State *L) {
#ifdef __GLIBC__
  lua_pushboolean(L, malloc_trim(0));
#else
  lua_pushboolean(L, 0);
#endif
  return 1;
}

/* core.time_ms() -> milliseconds since the epoch (wall clock). [-0, +1] */
int dl_time_ms(lua_State *L) {
  uv_timeval64_t tv;
  int err = uv_gettimeofday(&tv);
  if (err != 0)
    return dl_push_error(L, disco_translate_uv_error(err));
  lua_pushnumber(L, (lua_Number)tv.tv_sec * 1000 +
                        (lua_Number)(tv.tv_usec / 1000));
  return 1;
}

/* core.interface_addresses() -> { {name=, address=, family="inet"|"inet6",
 * internal=bool}, ... } in the order the system lists them. [-0, +1]; on
 * failure nil, err, ename. */
int dl_interface_addresses(lua_State *L) {
  uv_interface_address_t *list;
  int count;
  int err = uv_interface_addresses(&list, &count);
  if (err != 0)
    return dl_push_error(L, disco_translate_uv_error(err));
  lua_createtable(L, count, 0);
  for (int i = 0; i < count; i++) {
    char text[INET6_ADDRSTRLEN] = "";
    const char *family = "inet";
    if (list[i].address.address4.sin_family == AF_INET6) {
      family = "inet6";
      uv_ip6_name(&list[i].address.address6, text, sizeof text);
    } else {
      uv_ip4_name(&list[i].address.address4, text, sizeof text);
    }
    lua_createtable(L, 0, 4);
    lua_pushstring(L, list[i].name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, text);
    lua_setfield(L, -2, "address");
    lua_pushstring(L, family);
    lua_setfield(L, -2, "family");
    lua_pushboolean(L, list[i].is_internal);
    lua_setfield(L, -2, "internal");
    lua_rawseti(L, -2, i + 1);
  }
  uv_free_interface_addresses(list, count);
  return 1;
}
