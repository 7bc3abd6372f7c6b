/*
 * disco.core's Hessian 2.0 functions (core/hessian2_*.c seen from Lua).
 *
 *   core.hessian2_decode(bytes [, { max_depth =, max_elements =,
 *                                   max_string =, max_total = }])
 *     -> { v1, v2, ..., n = count }
 *      | nil, "EPROTO: <message> at byte <pos>", "EPROTO" (or E2BIG)
 *   core.hessian2_encode(v1, v2, ...) -> bytes (one stream: class
 *     definitions and types shared) | nil, "EINVAL: <message>", "EINVAL"
 *   core.hessian2_null: the null sentinel (a lightuserdata)
 *
 * Conventions (Hessian -> Lua):
 *   null -> core.hessian2_null (so lists and maps have no holes)
 *   boolean -> boolean; int, double -> number
 *   long -> number within +-2^53, else { ["@long"] = "decimal string" }
 *   date -> { ["@date"] = ms }; binary -> { ["@binary"] = bytes }
 *   string -> string (UTF-8)
 *   list -> { v1, v2, ..., ["@list"] = type or "" }
 *   map -> { [k] = v, ..., ["@map"] = type or "" }
 *   object -> { field = v, ..., ["@class"] = name,
 *               ["@fields"] = { field names in stream order } }
 * A node reached twice (a back-reference) is the same table both times, so
 * cycles become cyclic tables.
 *
 * Lua -> Hessian: a table with "@class" is an object (fields in "@fields"
 * order, else its non-"@" string keys sorted); with "@map" a map (typed
 * unless ""); with "@list", or a non-empty sequence, a list; "@long" (a
 * decimal string or an integral number), "@date", "@binary" and "@double"
 * (forces a double) tables are those values; any other table whose keys are
 * all strings and numbers is an untyped map (the empty table too). Map
 * keys are written sorted (numbers, then strings) so that output is
 * deterministic. Numbers: integral within int32 -> int, integral within
 * int64 -> long, else double. Anything else (functions, userdata other
 * than the sentinel) is EINVAL. A table met twice (shared, or a cycle) is
 * written once and then as a back-reference, so Java gets the same graph.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl.h"

/* The sentinel's address; its value is never read. */
static const char dl_h2_null_key = 0;
/* The metatable of the box that frees a reader and a writer on unwind. */
#define DL_H2_BOX "disco.hessian2_box"
/* Nesting bound for Lua tables being encoded (C stack). */
#define DL_H2_MAX_DEPTH 200

typedef struct {
  disco_h2_reader_t *r;
  disco_h2_writer_t *w;
} dl_h2_box_t;

static int dl_h2_box_gc(lua_State *L) {
  dl_h2_box_t *b = (dl_h2_box_t *)lua_touserdata(L, 1);
  disco_h2_reader_free(b->r);
  disco_h2_writer_free(b->w);
  b->r = NULL;
  b->w = NULL;
  return 0;
}

/* [-0, +1] A box whose __gc frees what it holds, so that a raise (memory
 * exhaustion) never leaks. May raise. */
static dl_h2_box_t *dl_h2_box(lua_State *L) {
  dl_h2_box_t *b = (dl_h2_box_t *)lua_newuserdata(L, sizeof(*b));
  b->r = NULL;
  b->w = NULL;
  if (luaL_newmetatable(L, DL_H2_BOX)) {
    lua_pushcfunction(L, dl_h2_box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return b;
}

static void dl_h2_push_null(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&dl_h2_null_key);
}

static int dl_h2_is_null(lua_State *L, int idx) {
  return lua_type(L, idx) == LUA_TLIGHTUSERDATA &&
         lua_touserdata(L, idx) == (void *)&dl_h2_null_key;
}

/* ---------------------------------------------------------- decoding */

/* [-0, +1] A one-field table { [key] = value at the top }. */
static void dl_h2_wrap(lua_State *L, const char *key) {
  lua_createtable(L, 0, 1);
  lua_insert(L, -2);
  lua_setfield(L, -2, key);
}

static void dl_h2_push_long(lua_State *L, int64_t l, int is_date) {
  if (!is_date && l >= -9007199254740992LL && l <= 9007199254740992LL) {
    lua_pushnumber(L, (lua_Number)l);
    return;
  }
  if (is_date) {
    lua_pushnumber(L, (lua_Number)l);
    dl_h2_wrap(L, "@date");
    return;
  }
  {
    /* lua_pushfstring has no 64-bit format. */
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", (long long)l);
    lua_pushstring(L, buf);
  }
  dl_h2_wrap(L, "@long");
}

/* [-0, +1] v as Lua; `visited` is the absolute index of a table mapping
 * container nodes (lightuserdata) to their tables. May raise (memory). */
static void dl_h2_push(lua_State *L, const disco_h2_value_t *v, int visited) {
  size_t i;
  luaL_checkstack(L, 6, "hessian2: value too deep");
  switch (v->type) {
    case DISCO_H2_NULL:
      dl_h2_push_null(L);
      return;
    case DISCO_H2_BOOL:
      lua_pushboolean(L, v->u.b);
      return;
    case DISCO_H2_INT:
      lua_pushnumber(L, v->u.i);
      return;
    case DISCO_H2_LONG:
    case DISCO_H2_DATE:
      dl_h2_push_long(L, v->u.l, v->type == DISCO_H2_DATE);
      return;
    case DISCO_H2_DOUBLE:
      lua_pushnumber(L, v->u.d);
      return;
    case DISCO_H2_STRING:
      lua_pushlstring(L, v->u.bytes.data, v->u.bytes.len);
      return;
    case DISCO_H2_BINARY:
      lua_pushlstring(L, v->u.bytes.data, v->u.bytes.len);
      dl_h2_wrap(L, "@binary");
      return;
    default:
      break;
  }
  lua_pushlightuserdata(L, (void *)v);
  lua_rawget(L, visited);
  if (!lua_isnil(L, -1))
    return;
  lua_pop(L, 1);
  if (v->type == DISCO_H2_LIST) {
    lua_createtable(L, (int)v->u.list.count, 1);
  } else if (v->type == DISCO_H2_MAP) {
    lua_createtable(L, 0, (int)v->u.map.count + 1);
  } else {
    lua_createtable(L, 0, (int)v->u.object.count + 2);
  }
  /* Registered before the contents, so that a cycle finds it. */
  lua_pushlightuserdata(L, (void *)v);
  lua_pushvalue(L, -2);
  lua_rawset(L, visited);
  if (v->type == DISCO_H2_LIST) {
    lua_pushstring(L, v->u.list.type ? v->u.list.type : "");
    lua_setfield(L, -2, "@list");
    for (i = 0; i < v->u.list.count; i++) {
      dl_h2_push(L, v->u.list.items[i], visited);
      lua_rawseti(L, -2, (int)(i + 1));
    }
  } else if (v->type == DISCO_H2_MAP) {
    lua_pushstring(L, v->u.map.type ? v->u.map.type : "");
    lua_setfield(L, -2, "@map");
    for (i = 0; i < v->u.map.count; i++) {
      dl_h2_push(L, v->u.map.keys[i], visited);
      dl_h2_push(L, v->u.map.values[i], visited);
      lua_rawset(L, -3);
    }
  } else {
    lua_pushstring(L, v->u.object.class_name);
    lua_setfield(L, -2, "@class");
    lua_createtable(L, (int)v->u.object.count, 0);
    for (i = 0; i < v->u.object.count; i++) {
      lua_pushstring(L, v->u.object.field_names[i]);
      lua_rawseti(L, -2, (int)(i + 1));
    }
    lua_setfield(L, -2, "@fields");
    for (i = 0; i < v->u.object.count; i++) {
      lua_pushstring(L, v->u.object.field_names[i]);
      dl_h2_push(L, v->u.object.fields[i], visited);
      lua_rawset(L, -3);
    }
  }
}

void dl_h2_push_value(lua_State *L, const disco_h2_value_t *v) {
  int visited;
  lua_newtable(L);
  visited = lua_gettop(L);
  dl_h2_push(L, v, visited);
  lua_remove(L, visited);
}

/* [-0, +0] Reads a limit field of the table at idx, if present. Raises on
 * a bad value (a programmer error). */
static void dl_h2_limit(lua_State *L, int idx, const char *field, size_t *out) {
  lua_getfield(L, idx, field);
  if (!lua_isnil(L, -1)) {
    lua_Number n = lua_tonumber(L, -1);
    if (!lua_isnumber(L, -1) || n < 0 || n != floor(n))
      luaL_error(L, "hessian2_decode: %s must be a non-negative integer",
                 field);
    *out = n > 1e15 ? (size_t)1e15 : (size_t)n;
  }
  lua_pop(L, 1);
}

/* core.hessian2_decode(bytes [, limits]). Raises on bad arguments. */
int dl_hessian2_decode(lua_State *L) {
  size_t len;
  const char *buf = luaL_checklstring(L, 1, &len);
  disco_h2_limits_t limits;
  dl_h2_box_t *box;
  disco_h2_value_t *v;
  int visited;
  int n = 0;
  int err;

  disco_h2_limits_init(&limits);
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    dl_h2_limit(L, 2, "max_depth", &limits.max_depth);
    dl_h2_limit(L, 2, "max_elements", &limits.max_elements);
    dl_h2_limit(L, 2, "max_string", &limits.max_string);
    dl_h2_limit(L, 2, "max_total", &limits.max_total);
  }
  lua_settop(L, 1);
  box = dl_h2_box(L);
  err = disco_h2_reader_new(buf, len, &limits, &box->r);
  if (err != 0)
    return dl_push_error(L, err);
  lua_newtable(L);
  visited = lua_gettop(L);
  lua_newtable(L);
  while ((err = disco_h2_read(box->r, &v)) == 0) {
    dl_h2_push(L, v, visited);
    lua_rawseti(L, -2, ++n);
  }
  if (err != DISCO_EOF) {
    size_t pos;
    const char *msg = disco_h2_reader_error(box->r, &pos);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s at byte %d", disco_err_name(err),
                    msg ? msg : disco_strerror(err), (int)pos);
    lua_pushstring(L, disco_err_name(err));
    return 3;
  }
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "n");
  return 1;
}

/* ---------------------------------------------------------- encoding */

typedef struct {
  lua_State *L;
  disco_h2_writer_t *w;
  char *err;
  size_t errlen;
  int path; /* absolute index of the map: table written -> its ref index */
} dl_h2_enc_t;

static int dl_h2_einval(dl_h2_enc_t *e, const char *msg) {
  if (e->err != NULL && e->errlen > 0)
    snprintf(e->err, e->errlen, "%s", msg);
  return DISCO_EINVAL;
}

/* The writer's error with a message. */
static int dl_h2_werr(dl_h2_enc_t *e, int err) {
  if (e->err != NULL && e->errlen > 0)
    snprintf(e->err, e->errlen, "%s",
             err == DISCO_EINVAL ? "invalid string (not UTF-8)"
                                 : disco_strerror(err));
  return err;
}

static int dl_h2_enc(dl_h2_enc_t *e, int idx, int depth);

static int dl_h2_number(dl_h2_enc_t *e, lua_Number n) {
  int err;
  if (n == floor(n) && n >= -2147483648.0 && n <= 2147483647.0)
    err = disco_h2_write_int(e->w, (int32_t)n);
  else if (n == floor(n) && n >= -9223372036854775808.0 &&
           n < 9223372036854775808.0)
    err = disco_h2_write_long(e->w, (int64_t)n);
  else
    err = disco_h2_write_double(e->w, n);
  return err ? dl_h2_werr(e, err) : 0;
}

/* The string or number field `key` of the table at idx, as an int64. */
static int dl_h2_int64_field(dl_h2_enc_t *e, int idx, const char *key,
                             int64_t *out) {
  lua_State *L = e->L;
  int ok = 0;
  lua_getfield(L, idx, key);
  if (lua_type(L, -1) == LUA_TNUMBER) {
    lua_Number n = lua_tonumber(L, -1);
    ok = n == floor(n) && n >= -9223372036854775808.0 &&
         n < 9223372036854775808.0;
    if (ok)
      *out = (int64_t)n;
  } else if (lua_type(L, -1) == LUA_TSTRING) {
    const char *s = lua_tostring(L, -1);
    char *end;
    errno = 0;
    *out = (int64_t)strtoll(s, &end, 10);
    ok = errno == 0 && end != s && *end == '\0';
  }
  lua_pop(L, 1);
  return ok ? 0
            : dl_h2_einval(e, key[1] == 'l' ? "bad @long value"
                                            : "bad @date value");
}

/* Whether the table at idx has the field (raw). */
static int dl_h2_has(lua_State *L, int idx, const char *key) {
  int has;
  lua_pushstring(L, key);
  lua_rawget(L, idx);
  has = !lua_isnil(L, -1);
  lua_pop(L, 1);
  return has;
}

/* A key's order: numbers (by value), strings (by bytes), others last. */
static int dl_h2_key_less(lua_State *L, int a, int b) {
  int ta = lua_type(L, a);
  int tb = lua_type(L, b);
  int ra = ta == LUA_TNUMBER ? 0 : ta == LUA_TSTRING ? 1 : 2;
  int rb = tb == LUA_TNUMBER ? 0 : tb == LUA_TSTRING ? 1 : 2;
  if (ra != rb)
    return ra < rb;
  if (ra == 0)
    return lua_tonumber(L, a) < lua_tonumber(L, b);
  if (ra == 1) {
    size_t la;
    size_t lb;
    const char *sa = lua_tolstring(L, a, &la);
    const char *sb = lua_tolstring(L, b, &lb);
    int c = memcmp(sa, sb, la < lb ? la : lb);
    return c < 0 || (c == 0 && la < lb);
  }
  return 0;
}

/* [-0, +1] An array of the keys of the table at idx, sorted, leaving out
 * `skip_at` "@" string keys (all when 2, only "@map" when 1). Insertion
 * sort: maps here are small. */
static int dl_h2_sorted_keys(lua_State *L, int idx, int skip_at) {
  int n = 0;
  int i;
  int j;
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -1);
      if ((skip_at == 2 && k[0] == '@') ||
          (skip_at == 1 && strcmp(k, "@map") == 0))
        continue;
    }
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, ++n);
  }
  for (i = 2; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    for (j = i - 1; j >= 1; j--) {
      lua_rawgeti(L, -2, j);
      if (!dl_h2_key_less(L, -2, -1)) {
        lua_pop(L, 1);
        break;
      }
      lua_rawseti(L, -3, j + 1);
    }
    lua_rawseti(L, -2, j + 1);
  }
  return n;
}

static int dl_h2_map(dl_h2_enc_t *e, int idx, int depth, const char *type,
                     int skip_at) {
  lua_State *L = e->L;
  int n;
  int i;
  int err = disco_h2_write_map_begin(e->w, type);
  if (err)
    return dl_h2_werr(e, err);
  n = dl_h2_sorted_keys(L, idx, skip_at);
  for (i = 1; i <= n; i++) {
    int k;
    lua_rawgeti(L, -1, i);
    k = lua_gettop(L);
    lua_pushvalue(L, k);
    lua_rawget(L, idx);
    err = dl_h2_enc(e, k, depth);
    err = err ? err : dl_h2_enc(e, k + 1, depth);
    lua_pop(L, 2);
    if (err) {
      lua_pop(L, 1);
      return err;
    }
  }
  lua_pop(L, 1);
  err = disco_h2_write_end(e->w);
  return err ? dl_h2_werr(e, err) : 0;
}

static int dl_h2_list(dl_h2_enc_t *e, int idx, int depth, const char *type,
                      size_t n) {
  lua_State *L = e->L;
  size_t i;
  int err = disco_h2_write_list_begin(e->w, type);
  if (err)
    return dl_h2_werr(e, err);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, (int)i);
    err = lua_isnil(L, -1) ? disco_h2_write_null(e->w)
                           : dl_h2_enc(e, lua_gettop(L), depth);
    lua_pop(L, 1);
    if (err)
      return err;
  }
  err = disco_h2_write_end(e->w);
  return err ? dl_h2_werr(e, err) : 0;
}

static int dl_h2_object(dl_h2_enc_t *e, int idx, int depth) {
  lua_State *L = e->L;
  const char **names;
  size_t n;
  size_t i;
  int list;
  int err;
  lua_getfield(L, idx, "@class");
  if (lua_type(L, -1) != LUA_TSTRING) {
    lua_pop(L, 1);
    return dl_h2_einval(e, "@class must be a string");
  }
  lua_getfield(L, idx, "@fields");
  if (lua_type(L, -1) == LUA_TTABLE) {
    n = lua_objlen(L, -1);
  } else {
    lua_pop(L, 1);
    n = (size_t)dl_h2_sorted_keys(L, idx, 2);
  }
  list = lua_gettop(L);
  /* The names live in a userdata, so that a raise frees them. */
  names = (const char **)lua_newuserdata(L, (n ? n : 1) * sizeof(*names));
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, list, (int)(i + 1));
    if (lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 4);
      return dl_h2_einval(e, "object field names must be strings");
    }
    names[i] = lua_tostring(L, -1);
    lua_pop(L, 1); /* still referenced by the list */
  }
  err = disco_h2_write_object_begin(e->w, lua_tostring(L, list - 1), n, names);
  if (err) {
    lua_pop(L, 3);
    return dl_h2_werr(e, err);
  }
  for (i = 0; i < n && err == 0; i++) {
    lua_pushstring(L, names[i]);
    lua_rawget(L, idx);
    err = lua_isnil(L, -1) ? disco_h2_write_null(e->w)
                           : dl_h2_enc(e, lua_gettop(L), depth);
    lua_pop(L, 1);
  }
  lua_pop(L, 3);
  return err;
}

/* The table at idx. */
/* Whether the table at idx is written as a map, list or object (which a
 * back-reference can name), rather than as one of the scalar forms. */
static int dl_h2_is_container(lua_State *L, int idx) {
  if (dl_h2_has(L, idx, "@class") || dl_h2_has(L, idx, "@map") ||
      dl_h2_has(L, idx, "@list"))
    return 1;
  return !(dl_h2_has(L, idx, "@long") || dl_h2_has(L, idx, "@date") ||
           dl_h2_has(L, idx, "@binary") || dl_h2_has(L, idx, "@double"));
}

static int dl_h2_table(dl_h2_enc_t *e, int idx, int depth) {
  lua_State *L = e->L;
  int err;
  size_t len;
  size_t count;
  int numeric_only;

  if (dl_h2_has(L, idx, "@class"))
    return dl_h2_object(e, idx, depth);
  if (dl_h2_has(L, idx, "@map")) {
    const char *type;
    lua_getfield(L, idx, "@map");
    type = lua_tostring(L, -1);
    if (type == NULL) {
      lua_pop(L, 1);
      return dl_h2_einval(e, "@map must be a string");
    }
    err = dl_h2_map(e, idx, depth, type[0] ? type : NULL, 1);
    lua_pop(L, 1);
    return err;
  }
  if (dl_h2_has(L, idx, "@list")) {
    const char *type;
    lua_getfield(L, idx, "@list");
    type = lua_tostring(L, -1);
    if (type == NULL) {
      lua_pop(L, 1);
      return dl_h2_einval(e, "@list must be a string");
    }
    err = dl_h2_list(e, idx, depth, type[0] ? type : NULL, lua_objlen(L, idx));
    lua_pop(L, 1);
    return err;
  }
  if (dl_h2_has(L, idx, "@long")) {
    int64_t l;
    if (dl_h2_int64_field(e, idx, "@long", &l))
      return DISCO_EINVAL;
    err = disco_h2_write_long(e->w, l);
    return err ? dl_h2_werr(e, err) : 0;
  }
  if (dl_h2_has(L, idx, "@date")) {
    int64_t l;
    if (dl_h2_int64_field(e, idx, "@date", &l))
      return DISCO_EINVAL;
    err = disco_h2_write_date(e->w, l);
    return err ? dl_h2_werr(e, err) : 0;
  }
  if (dl_h2_has(L, idx, "@binary")) {
    const char *s;
    lua_getfield(L, idx, "@binary");
    s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    err = s ? disco_h2_write_binary(e->w, s, len) : DISCO_EINVAL;
    lua_pop(L, 1);
    if (s == NULL)
      return dl_h2_einval(e, "@binary must be a string");
    return err ? dl_h2_werr(e, err) : 0;
  }
  if (dl_h2_has(L, idx, "@double")) {
    lua_getfield(L, idx, "@double");
    if (lua_type(L, -1) != LUA_TNUMBER) {
      lua_pop(L, 1);
      return dl_h2_einval(e, "@double must be a number");
    }
    err = disco_h2_write_double(e->w, lua_tonumber(L, -1));
    lua_pop(L, 1);
    return err ? dl_h2_werr(e, err) : 0;
  }

  /* A sequence (every key in 1..#t, and at least one), else a map of
   * string and number keys. */
  len = lua_objlen(L, idx);
  count = 0;
  numeric_only = 1;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int kt = lua_type(L, -2);
    lua_pop(L, 1);
    count++;
    if (kt != LUA_TNUMBER)
      numeric_only = 0;
    if (kt != LUA_TNUMBER && kt != LUA_TSTRING) {
      lua_pop(L, 1);
      return dl_h2_einval(e, "map keys must be strings or numbers");
    }
  }
  if (len > 0 && count == len && numeric_only)
    return dl_h2_list(e, idx, depth, NULL, len);
  return dl_h2_map(e, idx, depth, NULL, 0);
}

static int dl_h2_enc(dl_h2_enc_t *e, int idx, int depth) {
  lua_State *L = e->L;
  int err;
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      err = disco_h2_write_null(e->w);
      return err ? dl_h2_werr(e, err) : 0;
    case LUA_TBOOLEAN:
      err = disco_h2_write_bool(e->w, lua_toboolean(L, idx));
      return err ? dl_h2_werr(e, err) : 0;
    case LUA_TNUMBER:
      return dl_h2_number(e, lua_tonumber(L, idx));
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      err = disco_h2_write_string(e->w, s, len);
      return err ? dl_h2_werr(e, err) : 0;
    }
    case LUA_TLIGHTUSERDATA:
      if (dl_h2_is_null(L, idx)) {
        err = disco_h2_write_null(e->w);
        return err ? dl_h2_werr(e, err) : 0;
      }
      return dl_h2_einval(e, "cannot encode a userdata");
    case LUA_TTABLE:
      break;
    default:
      if (e->err != NULL && e->errlen > 0)
        snprintf(e->err, e->errlen, "cannot encode a %s",
                 luaL_typename(L, idx));
      return DISCO_EINVAL;
  }
  if (depth >= DL_H2_MAX_DEPTH)
    return dl_h2_einval(e, "tables nested too deeply");
  luaL_checkstack(L, 12, "hessian2: tables nested too deeply");
  /* A table met again (shared, or an ancestor: a cycle) is written as a
   * back-reference to the container it became the first time, as Java
   * does; `refs` maps each container table to its ref index. */
  lua_pushvalue(L, idx);
  lua_rawget(L, e->path);
  if (lua_isnumber(L, -1)) {
    size_t index = (size_t)lua_tonumber(L, -1);
    lua_pop(L, 1);
    err = disco_h2_write_ref(e->w, index);
    return err ? dl_h2_werr(e, err) : 0;
  }
  lua_pop(L, 1);
  if (dl_h2_is_container(L, idx)) {
    lua_pushvalue(L, idx);
    lua_pushnumber(L, (lua_Number)disco_h2_writer_ref_count(e->w));
    lua_rawset(L, e->path);
  }
  return dl_h2_table(e, idx, depth + 1);
}

int dl_h2_write_lua(lua_State *L, int idx, disco_h2_writer_t *w, char *err,
                    size_t errlen) {
  dl_h2_enc_t e;
  int rc;
  int top = lua_gettop(L);
  if (idx < 0 && idx > LUA_REGISTRYINDEX)
    idx = top + idx + 1;
  e.L = L;
  e.w = w;
  e.err = err;
  e.errlen = errlen;
  if (err != NULL && errlen > 0)
    err[0] = '\0';
  lua_newtable(L);
  e.path = lua_gettop(L);
  rc = dl_h2_enc(&e, idx, 0);
  lua_settop(L, top);
  return rc;
}

/* core.hessian2_encode(...). */
int dl_hessian2_encode(lua_State *L) {
  int n = lua_gettop(L);
  int i;
  dl_h2_box_t *box = dl_h2_box(L);
  char msg[160];
  int err = disco_h2_writer_new(&box->w);
  if (err != 0)
    return dl_push_error(L, err);
  for (i = 1; i <= n; i++) {
    err = dl_h2_write_lua(L, i, box->w, msg, sizeof(msg));
    if (err != 0) {
      lua_pushnil(L);
      lua_pushfstring(L, "%s: %s", disco_err_name(err), msg);
      lua_pushstring(L, disco_err_name(err));
      return 3;
    }
  }
  {
    size_t len;
    const char *data = disco_h2_writer_data(box->w, &len);
    lua_pushlstring(L, data, len);
  }
  return 1;
}

void dl_hessian2_register(lua_State *L) {
  /* The module table is at the top: add the sentinel. */
  dl_h2_push_null(L);
  lua_setfield(L, -2, "hessian2_null");
}
