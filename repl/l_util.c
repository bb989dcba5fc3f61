/* l_util.c — helpers shared by the Lua binding files (see l_util.h). */
#include "l_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned long interrupts_delivered;

static void clear_cancel_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    tl_cancel_clear();
}

void tl_lua_interrupt_delivered(lua_State *L)
{
    interrupts_delivered++;
    lua_sethook(L, clear_cancel_hook, LUA_MASKCOUNT, 1);
}

unsigned long tl_lua_interrupt_count(void) { return interrupts_delivered; }

int tl_lua_raise_status(lua_State *L, const char *fn, tl_status s)
{
    const char *msg = tl_errmsg();
    if (!msg || !*msg) msg = tl_status_name(s);
    if (s == TL_ERR_CANCELLED) tl_lua_interrupt_delivered(L);
    /* the engine names its function too ("movielens: ...", "fit: ..."): say it
     * once (fn's last part: "tl.datasets.movielens" -> "movielens", "m:fit" -> "fit") */
    const char *last = fn;
    for (const char *p = fn; *p; p++)
        if (*p == '.' || *p == ':') last = p + 1;
    size_t n = strlen(last);
    if (strncmp(msg, last, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ') msg += n + 2;
    return luaL_error(L, "%s: %s", fn, msg);
}

void tl_lua_check_fields(lua_State *L, int idx, const char *fn, const char *const *allowed)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE) return;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        int known = 0;
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -1);
            for (const char *const *a = allowed; *a; a++)
                if (strcmp(*a, k) == 0) { known = 1; break; }
        } else if (lua_isinteger(L, -1)) {
            continue; /* array part: positional items belong to the caller */
        }
        if (!known) {
            luaL_Buffer b;
            const char *key = luaL_tolstring(L, -1, NULL);
            luaL_buffinit(L, &b);
            for (const char *const *a = allowed; *a; a++) {
                if (a != allowed) luaL_addstring(&b, ", ");
                luaL_addstring(&b, *a);
            }
            luaL_pushresult(&b);
            luaL_error(L, "%s: unknown field '%s' (expected one of: %s)", fn, key,
                       lua_tostring(L, -1));
        }
    }
}

/* Pushes t[key] and returns its type; leaves the value on the stack. */
static int get_field(lua_State *L, int idx, const char *key)
{
    if (lua_type(L, idx) != LUA_TTABLE) {
        lua_pushnil(L);
        return LUA_TNIL;
    }
    return lua_getfield(L, idx, key);
}

/* Describe the value at the top for error messages: its type, and the value
 * itself for numbers and short strings ("number 1.5", "string 'abc'"). */
static const char *describe(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        return lua_pushfstring(L, "%s", luaL_tolstring(L, idx, NULL));
    case LUA_TSTRING:
        return lua_pushfstring(L, "string '%s'", lua_tostring(L, idx));
    default:
        return luaL_typename(L, idx);
    }
}

lua_Integer tl_lua_opt_int(lua_State *L, int idx, const char *fn, const char *key,
                           lua_Integer def, lua_Integer min, lua_Integer max)
{
    idx = lua_absindex(L, idx);
    int t = get_field(L, idx, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return def;
    }
    int ok = 0;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok || t != LUA_TNUMBER || v < min || v > max) {
        if (min == 1 && max == LUA_MAXINTEGER)
            luaL_error(L, "%s: field '%s' must be a positive integer, got %s", fn, key,
                       describe(L, -1));
        else if (min == 0 && max == LUA_MAXINTEGER)
            luaL_error(L, "%s: field '%s' must be a non-negative integer, got %s", fn, key,
                       describe(L, -1));
        else
            luaL_error(L, "%s: field '%s' must be an integer in [%I, %I], got %s", fn, key,
                       min, max, describe(L, -1));
    }
    lua_pop(L, 1);
    return v;
}

double tl_lua_opt_number(lua_State *L, int idx, const char *fn, const char *key,
                         double def, double min, double max)
{
    idx = lua_absindex(L, idx);
    int t = get_field(L, idx, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return def;
    }
    double v = (double)lua_tonumber(L, -1);
    if (t != LUA_TNUMBER || isnan(v) || v < min || v > max) {
        if (isinf(min) && isinf(max))
            luaL_error(L, "%s: field '%s' must be a number, got %s", fn, key, describe(L, -1));
        else
            luaL_error(L, "%s: field '%s' must be a number in [%f, %f], got %s", fn, key,
                       (lua_Number)min, (lua_Number)max, describe(L, -1));
    }
    lua_pop(L, 1);
    return v;
}

int tl_lua_opt_bool(lua_State *L, int idx, const char *fn, const char *key, int def)
{
    idx = lua_absindex(L, idx);
    int t = get_field(L, idx, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return def;
    }
    if (t != LUA_TBOOLEAN)
        luaL_error(L, "%s: field '%s' must be a boolean, got %s", fn, key, describe(L, -1));
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

const char *tl_lua_opt_string(lua_State *L, int idx, const char *fn, const char *key,
                              const char *def)
{
    idx = lua_absindex(L, idx);
    int t = get_field(L, idx, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return def;
    }
    if (t != LUA_TSTRING)
        luaL_error(L, "%s: field '%s' must be a string, got %s", fn, key, describe(L, -1));
    /* The table still references the string, so the pointer stays valid. */
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 1);
    return s;
}

int tl_lua_opt_enum(lua_State *L, int idx, const char *fn, const char *key,
                    const char *const *choices, int def)
{
    idx = lua_absindex(L, idx);
    const char *s = tl_lua_opt_string(L, idx, fn, key, NULL);
    if (!s) return def;
    for (int i = 0; choices[i]; i++)
        if (strcmp(choices[i], s) == 0) return i;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 0; choices[i]; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addchar(&b, '"');
        luaL_addstring(&b, choices[i]);
        luaL_addchar(&b, '"');
    }
    luaL_pushresult(&b);
    luaL_error(L, "%s: field '%s' must be one of %s, got '%s'", fn, key, lua_tostring(L, -1), s);
    return def;
}

/* Documentation lives in two registry tables: TL_DOCS_NAMES maps a name to
 * its text, TL_DOCS_VALUES (weak keys) maps a documented value to its name. */
static void push_registry_table(lua_State *L, const char *name, int weak)
{
    if (luaL_getsubtable(L, LUA_REGISTRYINDEX, name)) return;
    if (weak) {
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
    }
}

void tl_lua_doc(lua_State *L, const char *name, int value_idx, const char *text)
{
    if (value_idx) value_idx = lua_absindex(L, value_idx);
    push_registry_table(L, TL_DOCS_NAMES, 0);
    lua_pushstring(L, text);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
    if (value_idx && !lua_isnoneornil(L, value_idx)) {
        push_registry_table(L, TL_DOCS_VALUES, 1);
        lua_pushvalue(L, value_idx);
        lua_pushstring(L, name);
        lua_rawset(L, -3);
        lua_pop(L, 1);
    }
}

void tl_lua_docs(lua_State *L, int t, const tl_lua_doc_entry *docs, size_t n)
{
    t = lua_absindex(L, t);
    for (size_t i = 0; i < n; i++) {
        lua_getfield(L, t, docs[i].field);
        tl_lua_doc(L, docs[i].topic, lua_gettop(L), docs[i].text);
        lua_pop(L, 1);
    }
}

void tl_lua_push_docs(lua_State *L)
{
    push_registry_table(L, TL_DOCS_NAMES, 0);
    push_registry_table(L, TL_DOCS_VALUES, 1);
}

void tl_lua_note_alloc(lua_State *L, size_t bytes)
{
    int kb = (int)(bytes / 1024);
    if (kb > 0) lua_gc(L, LUA_GCSTEP, kb);
}

int tl_lua_stdout_is_tty(void)
{
    return isatty(STDOUT_FILENO);
}

lua_Integer tl_lua_next_seed(lua_State *L)
{
    lua_Integer base = 1;
    if (lua_getfield(L, LUA_REGISTRYINDEX, TL_LIB_KEY) == LUA_TTABLE) {
        lua_getfield(L, -1, "seed");
        int ok = 0;
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        if (ok) base = v;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    /* Counter state: registry["tl.seed.state"] = {base, n}. */
    luaL_getsubtable(L, LUA_REGISTRYINDEX, "tl.seed.state");
    lua_rawgeti(L, -1, 1);
    int ok = 0;
    lua_Integer last = lua_tointegerx(L, -1, &ok);
    lua_rawgeti(L, -2, 2);
    lua_Integer n = lua_tointeger(L, -1);
    lua_pop(L, 2);
    if (!ok || last != base) n = 0;
    lua_pushinteger(L, base);
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, n + 1);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 1);
    /* splitmix64 step: nearby (seed, n) pairs give unrelated streams. */
    uint64_t z = (uint64_t)base * 0x9E3779B97F4A7C15ull + (uint64_t)n;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (lua_Integer)(z & 0x7FFFFFFFFFFFFFFFull);
}

void tl_lua_memory_refresh(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return;
    char line[128];
    unsigned long long kb;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
            tl_memory_set_available((uint64_t)kb * 1024u);
            break;
        }
    fclose(f);
}

uint64_t tl_lua_opt_bytes(lua_State *L, int idx, const char *fn, const char *field)
{
    lua_getfield(L, idx, field);
    double v = 0;
    if (lua_type(L, -1) == LUA_TNUMBER) {
        v = lua_tonumber(L, -1);
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        const char *str = lua_tostring(L, -1);
        char *end;
        v = strtod(str, &end);
        double unit = *end == 'k' || *end == 'K' ? 1e3 : *end == 'M' ? 1e6 : *end == 'G' ? 1e9
                    : *end == 'T' ? 1e12 : *end ? -1 : 1;
        if (*end && (end[1] == 'B' ? end[2] : end[1])) unit = -1;
        if (unit < 0 || end == str)
            luaL_error(L, "%s: field '%s' must be bytes (a number, or a string such as \"64G\" or "
                          "\"512M\"), got \"%s\"", fn, field, str);
        v *= unit;
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "%s: field '%s' must be bytes (a number or \"64G\"), got %s", fn, field,
                   luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    if (!(v >= 0 && v < 1.8e19)) luaL_error(L, "%s: field '%s' must be >= 0 bytes", fn, field);
    return (uint64_t)v;
}

int tl_lua_progress_call(lua_State *L, char *error, size_t cap)
{
    unsigned long interrupts = tl_lua_interrupt_count();
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        /* Ctrl-C inside the callback: the engine reports it. A delivered
         * interrupt has cleared the flag (an engine call inside the
         * callback saw it), so raise it again for the fit loop. */
        if (tl_cancelled() || tl_lua_interrupt_count() != interrupts) {
            tl_cancel_request();
            lua_pop(L, 1);
            return 0;
        }
        snprintf(error, cap, "progress callback failed: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return 1;
    }
    /* returning false (or "stop") ends training, like Ctrl-C */
    int stop = (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) ||
               (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "stop") == 0);
    lua_pop(L, 1);
    return stop;
}
