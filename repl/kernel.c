/* kernel.c — the Jupyter kernel (see kernel.h).
 *
 * Wire format (messaging protocol 5.3): [identities..., "<IDS|MSG>", hmac,
 * header, parent_header, metadata, content, buffers...], where hmac is the
 * hex HMAC-SHA256 of the four JSON frames under the connection file's key.
 * A message whose signature does not match is dropped and logged to stderr.
 *
 * The main thread talks to the I/O thread over an inproc PAIR socket:
 *   main -> io  ["parent", header]   later stream output belongs to it
 *               ["pub", topic, <message frames>]   publish on iopub
 *               ["stop"]
 *   io -> main  ["ack"]              answers parent and pub
 *               ["shutdown"]         a shutdown_request came on control
 * Before it handles a command the I/O thread reads the output pipes dry,
 * and the main thread waits for the ack before it goes on, so output and
 * messages reach iopub in the order the cell produced them. */
#include "kernel.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <zmq.h>

#include "core.h"
#include "kernel_wire.h"
#include "l_util.h"
#include "run.h"

#define DELIM "<IDS|MSG>"
#define TL_KERNEL_PROTOCOL "5.3"
#define TL_KERNEL_MAX_FRAMES 64
#define STREAM_BUF 65536
#define STREAM_DELAY 0.05 /* seconds output is collected before a stream message */
#define KERNEL_KEY "tl.kernel"
#define PAIR_ADDR "inproc://towerlab-kernel-io"

/* One output pipe: what fd 1 or 2 wrote while a cell ran. */
typedef struct {
    int rfd;
    const char *name; /* "stdout", "stderr" */
    char buf[STREAM_BUF];
    size_t len;
    double since; /* when the oldest pending byte was read */
} kstream;

static struct {
    int active;
    lua_State *L;
    void *ctx;
    void *shell, *control, *iopub, *stdin_s, *hb;
    void *pair_main, *pair_io;
    pthread_t io, main_thread;
    char *key; /* owned here; kernel_wire.c signs with it */
    EVP_MAC *mac;
    char session[33];
    int out_w, err_w, saved_out, saved_err;
    kstream out, err;
    /* main thread only */
    json_t *parent; /* header of the request being handled (borrowed) */
    int count;      /* execution_count */
    int displayed;  /* display_data published by the running cell */
    int quit;       /* a shutdown_request came on control */
    json_t *history;
} K;

/* ---- small helpers ---------------------------------------------------------- */

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- messages (the wire protocol itself is kernel_wire.c) ------------------ */

int tl_kernel_parse_for_fuzz(const void *const *frames, const size_t *sizes, int n, const char *key)
{
    static EVP_MAC *mac;
    if (K.active || n < 0 || (n > 0 && (!frames || !sizes))) return -1;
    if (!mac && !(mac = EVP_MAC_fetch(NULL, "HMAC", NULL))) return -1;
    tl_kmsg m;
    memset(&m, 0, sizeof m);
    int overflow = 0;
    for (int i = 0; i < n; i++) {
        if (m.n == TL_KERNEL_MAX_FRAMES) {
            overflow = 1;
            continue;
        }
        if (zmq_msg_init_size(&m.frames[m.n], sizes[i]) != 0) {
            tl_kmsg_free(&m);
            return -1;
        }
        if (sizes[i]) memcpy(zmq_msg_data(&m.frames[m.n]), frames[i], sizes[i]);
        m.n++;
    }
    int log_fd = tl_kernel_log_fd();
    tl_kernel_log_set_fd(open("/dev/null", O_WRONLY | O_CLOEXEC));
    tl_kernel_wire_set(key ? key : "", mac, NULL);
    int ok = tl_kmsg_check(&m, overflow, "fuzz");
    if (ok) tl_kmsg_free(&m);
    if (tl_kernel_log_fd() >= 0) close(tl_kernel_log_fd());
    tl_kernel_log_set_fd(log_fd);
    tl_kernel_wire_set(NULL, NULL, NULL);
    return ok;
}


static json_t *kernel_info(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:s, s:s}, s:s, s:[]}", "status",
                     "ok", "protocol_version", TL_KERNEL_PROTOCOL, "implementation", "towerlab",
                     "implementation_version", TL_VERSION, "language_info", "name", "lua", "version",
                     "5.4", "mimetype", "text/x-lua", "file_extension", ".lua", "pygments_lexer",
                     "lua", "codemirror_mode", "lua", "banner",
                     "towerlab " TL_VERSION " (" LUA_RELEASE ") — multi-task recommender learning\n"
                     "help(x) or ?x for documentation; tl.plot.* draws inline.",
                     "help_links");
}

/* ---- the I/O thread: iopub, control, heartbeat, output pipes ------------------- */

typedef struct {
    json_t *parent; /* header the stream output belongs to */
    int stop;
} io_state;

static void io_publish(io_state *s, const json_t *parent, const char *type, json_t *content)
{
    (void)s;
    tl_kout o;
    if (tl_kout_build(&o, type, parent, content) != 0) return;
    tl_kout_send(K.iopub, NULL, NULL, type, &o);
    tl_kout_free(&o);
}

/* Publish what is pending in st (all of it but a cut-off UTF-8 sequence). */
static void stream_flush(io_state *s, kstream *st)
{
    if (st->len == 0) return;
    size_t keep = 0;
    json_t *text = tl_kernel_jstr_n(st->buf, st->len, &keep);
    if (text && json_string_length(text) > 0)
        io_publish(s, s->parent, "stream", json_pack("{s:s, s:o}", "name", st->name, "text", text));
    else
        json_decref(text);
    memmove(st->buf, st->buf + st->len - keep, keep);
    st->len = keep;
}

/* Read what the pipe holds (once, or until empty with `all`). */
static void stream_read(io_state *s, kstream *st, int all)
{
    for (;;) {
        if (st->len > STREAM_BUF / 2) stream_flush(s, st);
        ssize_t r = read(st->rfd, st->buf + st->len, STREAM_BUF - st->len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (st->len == 0) st->since = mono_now();
        st->len += (size_t)r;
        if (!all) break;
    }
}

static void streams_drain(io_state *s)
{
    stream_read(s, &K.out, 1);
    stream_read(s, &K.err, 1);
    stream_flush(s, &K.out);
    stream_flush(s, &K.err);
}

/* Forward the rest of a "pub" command to iopub, frame by frame. */
static void forward_pub(void)
{
    int more = 1;
    while (more) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        int r;
        while ((r = zmq_msg_recv(&f, K.pair_io, 0)) < 0 && errno == EINTR) {
        }
        if (r < 0) {
            zmq_msg_close(&f);
            return;
        }
        more = zmq_msg_more(&f);
        while ((r = zmq_msg_send(&f, K.iopub, more ? ZMQ_SNDMORE : 0)) < 0 && errno == EINTR) {
        }
        if (r < 0) zmq_msg_close(&f);
    }
}

/* A command from the main thread. */
static void io_command(io_state *s)
{
    char cmd[16];
    int n;
    while ((n = zmq_recv(K.pair_io, cmd, sizeof cmd - 1, 0)) < 0 && errno == EINTR) {
    }
    if (n < 0) return;
    cmd[n < (int)sizeof cmd - 1 ? n : (int)sizeof cmd - 1] = '\0';
    int more = 0;
    size_t sz = sizeof more;
    zmq_getsockopt(K.pair_io, ZMQ_RCVMORE, &more, &sz);
    streams_drain(s);
    if (strcmp(cmd, "pub") == 0 && more) {
        forward_pub();
        tl_kernel_send_part(K.pair_io, "ack", 3, 0);
        return;
    }
    if (strcmp(cmd, "parent") == 0 && more) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, K.pair_io, 0) >= 0) {
            json_decref(s->parent);
            s->parent = json_loadb(zmq_msg_data(&f), zmq_msg_size(&f), 0, NULL);
        }
        zmq_msg_close(&f);
        tl_kernel_send_part(K.pair_io, "ack", 3, 0); /* the main thread may now redirect output */
        return;
    }
    if (strcmp(cmd, "stop") == 0) s->stop = 1;
    while (more) { /* an unknown command: discard its frames */
        zmq_msg_t f;
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, K.pair_io, 0) < 0) more = 0;
        else more = zmq_msg_more(&f);
        zmq_msg_close(&f);
    }
}

static void io_heartbeat(void)
{
    int more = 1;
    while (more) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, K.hb, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&f);
            return;
        }
        more = zmq_msg_more(&f);
        if (zmq_msg_send(&f, K.hb, more ? ZMQ_SNDMORE : 0) < 0) zmq_msg_close(&f);
    }
}

static void io_control(io_state *s)
{
    tl_kmsg m;
    if (!tl_kmsg_recv(K.control, &m, "control")) return;
    io_publish(s, m.header, "status", json_pack("{s:s}", "execution_state", "busy"));
    if (strcmp(m.type, "interrupt_request") == 0) {
        pthread_kill(K.main_thread, SIGINT); /* run.c's Ctrl-C handler, in the Lua thread */
        tl_kmsg_reply(K.control, &m, "interrupt_reply", json_pack("{s:s}", "status", "ok"));
    } else if (strcmp(m.type, "shutdown_request") == 0) {
        int restart = json_is_true(json_object_get(m.content, "restart"));
        tl_kmsg_reply(K.control, &m, "shutdown_reply", json_pack("{s:s, s:b}", "status", "ok", "restart", restart));
        tl_kernel_send_part(K.pair_io, "shutdown", 8, 0);
        pthread_kill(K.main_thread, SIGINT); /* stop a running cell so the main thread can exit */
    } else if (strcmp(m.type, "kernel_info_request") == 0) {
        tl_kmsg_reply(K.control, &m, "kernel_info_reply", kernel_info());
    } else {
        tl_kernel_log("unsupported control message '%s': ignored", m.type);
    }
    io_publish(s, m.header, "status", json_pack("{s:s}", "execution_state", "idle"));
    tl_kmsg_free(&m);
}

static void *io_main(void *arg)
{
    (void)arg;
    io_state s = {NULL, 0};
    zmq_pollitem_t it[5] = {
        {K.pair_io, 0, ZMQ_POLLIN, 0}, {K.hb, 0, ZMQ_POLLIN, 0}, {K.control, 0, ZMQ_POLLIN, 0},
        {NULL, K.out.rfd, ZMQ_POLLIN, 0}, {NULL, K.err.rfd, ZMQ_POLLIN, 0}};
    while (!s.stop) {
        long timeout = -1;
        double now = mono_now();
        kstream *st[2] = {&K.out, &K.err};
        for (int i = 0; i < 2; i++) {
            if (st[i]->len == 0) continue;
            double left = st[i]->since + STREAM_DELAY - now;
            long ms = left <= 0 ? 0 : (long)(left * 1000.0) + 1;
            if (timeout < 0 || ms < timeout) timeout = ms;
        }
        int r = zmq_poll(it, 5, timeout);
        if (r < 0 && errno != EINTR) {
            tl_kernel_log("poll failed: %s", zmq_strerror(errno));
            break;
        }
        if (r > 0) {
            if (it[3].revents & ZMQ_POLLIN) stream_read(&s, &K.out, 0);
            if (it[4].revents & ZMQ_POLLIN) stream_read(&s, &K.err, 0);
            if (it[1].revents & ZMQ_POLLIN) io_heartbeat();
            if (it[2].revents & ZMQ_POLLIN) io_control(&s);
            if (it[0].revents & ZMQ_POLLIN) io_command(&s);
        }
        now = mono_now();
        for (int i = 0; i < 2; i++)
            if (st[i]->len > 0 && now - st[i]->since >= STREAM_DELAY) stream_flush(&s, st[i]);
    }
    streams_drain(&s);
    json_decref(s.parent);
    return NULL;
}

/* ---- publishing from the main thread --------------------------------------------- */

static int pair_read(int flags);

/* Publish an iopub message for the request being handled, after the output
 * printed so far. Waits until the I/O thread has sent it, so that output
 * printed later cannot overtake it. Takes content. */
static int publish(const char *type, json_t *content)
{
    tl_kout o;
    if (tl_kout_build(&o, type, K.parent, content) != 0) return -1;
    int rc = tl_kout_send(K.pair_main, "pub", NULL, type, &o);
    tl_kout_free(&o);
    if (rc == 0)
        while (!pair_read(0)) {
        }
    return rc;
}

static void publish_status(const char *state)
{
    publish("status", json_pack("{s:s}", "execution_state", state));
}

/* display_data / update_display_data with the bundle `data` (taken). */
static int publish_display(json_t *data, const char *display_id, int update)
{
    json_t *c = json_pack("{s:o, s:{}}", "data", data, "metadata");
    if (!c) return -1;
    if (display_id) json_object_set_new(c, "transient", json_pack("{s:o}", "display_id", tl_kernel_jstr(display_id)));
    K.displayed = 1;
    return publish(update && display_id ? "update_display_data" : "display_data", c);
}


/* Lua: publish(bundle, display_id|nil, update) — bundle maps mime type -> text. */
static int l_publish(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *id = luaL_optstring(L, 2, NULL);
    int update = lua_toboolean(L, 3);
    if (!K.active) return luaL_error(L, "tl.display: no notebook kernel is running");
    json_t *data = json_object();
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
            size_t n;
            const char *s = lua_tolstring(L, -1, &n);
            json_object_set_new(data, lua_tostring(L, -2), tl_kernel_jstr_n(s, n, NULL));
        }
        lua_pop(L, 1);
    }
    lua_pushboolean(L, publish_display(data, id, update) == 0);
    return 1;
}

static int l_now(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)mono_now());
    return 1;
}

/* ---- Lua helpers --------------------------------------------------------------------- */

/* Push the kernel helper `name` (repl/lua/kernel.lua) or nil. */
static void push_helper(lua_State *L, const char *name)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, KERNEL_KEY) == LUA_TTABLE) {
        lua_getfield(L, -1, name);
        lua_remove(L, -2);
    } else {
        lua_pop(L, 1);
        lua_pushnil(L);
    }
}

static void setup_lua(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, TL_PRIVATE_KEY);
    if (lua_istable(L, -1)) lua_getfield(L, -1, "kernel_setup");
    else lua_pushnil(L);
    if (lua_isfunction(L, -1)) {
        lua_pushcfunction(L, l_publish);
        lua_pushcfunction(L, l_now);
        lua_pushstring(L, K.session);
        if (lua_pcall(L, 3, 1, 0) == LUA_OK) {
            lua_setfield(L, LUA_REGISTRYINDEX, KERNEL_KEY);
        } else {
            tl_kernel_log("kernel set-up failed: %s", lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    } else {
        lua_pop(L, 1);
        tl_kernel_log("kernel set-up missing (repl/lua/kernel.lua): plots and rich output disabled");
    }
    lua_pop(L, 1);
}

/* Bundle (mime -> text) for the n values at the top, which are popped.
 * Returns a new JSON object; NULL on failure (logged). */
static json_t *bundle_of(lua_State *L, int n)
{
    int base = lua_gettop(L) - n;
    push_helper(L, "bundle");
    json_t *data = NULL;
    if (lua_isfunction(L, -1)) {
        lua_insert(L, base + 1);
        if (lua_pcall(L, n, 1, 0) == LUA_OK && lua_istable(L, -1)) {
            data = json_object();
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
                    size_t len;
                    const char *s = lua_tolstring(L, -1, &len);
                    json_object_set_new(data, lua_tostring(L, -2), tl_kernel_jstr_n(s, len, NULL));
                }
                lua_pop(L, 1);
            }
        } else if (lua_isstring(L, -1)) {
            tl_kernel_log("displaying a result failed: %s", lua_tostring(L, -1));
        }
    } else {
        lua_pop(L, 1);
        size_t len;
        const char *s = luaL_tolstring(L, base + 1, &len);
        data = json_pack("{s:o}", "text/plain", tl_kernel_jstr_n(s, len, NULL));
    }
    lua_settop(L, base);
    return data;
}

/* ---- execute --------------------------------------------------------------------------- */

static void redirect(int on)
{
    fflush(stdout);
    fflush(stderr);
    dup2(on ? K.out_w : K.saved_out, STDOUT_FILENO);
    dup2(on ? K.err_w : K.saved_err, STDERR_FILENO);
}

static int blank_or_comment(const char *s, const char *end)
{
    while (s < end && (*s == ' ' || *s == '\t' || *s == '\r')) s++;
    return s >= end || *s == '\n' || (s + 1 < end && s[0] == '-' && s[1] == '-');
}

static int ends_with_semicolon(const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
    return n > 0 && s[n - 1] == ';';
}

/* Push the function of a cell: the code as an expression ("return " ..
 * code); else the statements with the last top-level expression (after a
 * line break or ';') returned, so its value shows as in IPython; else the
 * statements as they are.
 * Returns the load status (message pushed on error). */
static int load_cell(lua_State *L, const char *code, const char *name)
{
    const char *ret = lua_pushfstring(L, "return %s", code);
    if (luaL_loadbuffer(L, ret, strlen(ret), name) == LUA_OK) {
        lua_remove(L, -2);
        return LUA_OK;
    }
    lua_pop(L, 2);
    size_t n = strlen(code);
    if (!ends_with_semicolon(code)) {
        int tries = 0;
        for (size_t start = n; start > 0 && tries < 64;) {
            size_t s = start - 1;
            while (s > 0 && code[s - 1] != '\n' && code[s - 1] != ';') s--;
            start = s;
            s += strspn(code + s, " \t");
            if (blank_or_comment(code + s, code + n)) continue;
            tries++;
            if (luaL_loadbuffer(L, code, s, name) != LUA_OK) {
                lua_pop(L, 1);
                continue;
            }
            lua_pop(L, 1);
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            luaL_addlstring(&b, code, s);
            luaL_addstring(&b, "return ");
            luaL_addstring(&b, code + s);
            luaL_pushresult(&b);
            const char *cand = lua_tostring(L, -1);
            if (luaL_loadbuffer(L, cand, strlen(cand), name) == LUA_OK) {
                lua_remove(L, -2);
                return LUA_OK;
            }
            lua_pop(L, 2);
        }
    }
    return luaL_loadbuffer(L, code, n, name);
}

/* The error message at the top as ename/evalue/traceback (popped). */
static json_t *error_content(lua_State *L, const char *ename)
{
    const char *msg = lua_tostring(L, -1);
    if (!msg) msg = "(error object is not a string)";
    const char *nl = strchr(msg, '\n');
    size_t first = nl ? (size_t)(nl - msg) : strlen(msg);
    json_t *tb = json_array();
    for (const char *p = msg; *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        json_array_append_new(tb, tl_kernel_jstr_n(p, len, NULL));
        p += len + (e ? 1 : 0);
    }
    json_t *c = json_pack("{s:s, s:o, s:o}", "ename", ename, "evalue", tl_kernel_jstr_n(msg, first, NULL),
                          "traceback", tb);
    lua_pop(L, 1);
    return c;
}

static void do_execute(const tl_kmsg *m)
{
    lua_State *L = K.L;
    int top = lua_gettop(L);
    const char *code = json_string_value(json_object_get(m->content, "code"));
    if (!code) code = "";
    int silent = json_is_true(json_object_get(m->content, "silent"));
    json_t *sh = json_object_get(m->content, "store_history");
    int store = !silent && (sh == NULL || json_is_true(sh));
    if (store) K.count++;
    if (!silent)
        publish("execute_input", json_pack("{s:o, s:i}", "code", tl_kernel_jstr(code), "execution_count", K.count));
    if (store) json_array_append_new(K.history, json_pack("[i, i, o]", 1, K.count, tl_kernel_jstr(code)));

    char name[32];
    snprintf(name, sizeof name, "=In[%d]", K.count);
    const char *ename = "LuaError";
    int quiet = silent || ends_with_semicolon(code);
    K.displayed = 0;
    redirect(1);
    int status;
    const char *p = code + strspn(code, " \t\r\n");
    size_t plen = strlen(p);
    while (plen > 0 && strchr(" \t\r\n", p[plen - 1])) plen--;
    if (p[0] == '?' && !memchr(p, '\n', plen)) { /* ?x: help, as at the prompt */
        lua_getfield(L, LUA_REGISTRYINDEX, TL_LIB_KEY);
        lua_getfield(L, -1, "help");
        lua_remove(L, -2);
        const char *what = p + 1 + strspn(p + 1, " \t");
        size_t wl = strcspn(what, "\r\n");
        while (wl > 0 && (what[wl - 1] == ' ' || what[wl - 1] == '\t')) wl--;
        int na = wl > 0 ? (lua_pushlstring(L, what, wl), 1) : 0;
        status = tl_docall(L, na, 0);
    } else if ((status = load_cell(L, code, name)) == LUA_OK) {
        status = tl_docall(L, 0, LUA_MULTRET);
    } else {
        ename = "SyntaxError";
    }
    if (status != LUA_OK && strcmp(ename, "SyntaxError") != 0 && tl_cancelled())
        ename = "KeyboardInterrupt";
    json_t *data = NULL;
    int n = lua_gettop(L) - top;
    if (status == LUA_OK && n > 0 && !quiet &&
        !(n == 1 && lua_isboolean(L, -1) && K.displayed)) /* a plot call's `true` */
        data = bundle_of(L, n);
    redirect(0);

    json_t *rep;
    if (status != LUA_OK) {
        json_t *err = error_content(L, ename);
        if (!silent) publish("error", json_deep_copy(err));
        rep = err;
        json_object_set_new(rep, "status", json_string("error"));
        json_object_set_new(rep, "execution_count", json_integer(K.count));
    } else {
        if (data)
            publish("execute_result",
                    json_pack("{s:i, s:O, s:{}}", "execution_count", K.count, "data", data, "metadata"));
        rep = json_pack("{s:s, s:i, s:{}, s:[]}", "status", "ok", "execution_count", K.count,
                        "user_expressions", "payload");
    }
    json_decref(data);
    lua_settop(L, top);
    tl_kmsg_reply(K.shell, m, "execute_reply", rep);
}

/* ---- complete, inspect, is_complete, history --------------------------------------- */

static int name_char(char c, int colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || (colon && c == ':');
}

static void do_complete(const tl_kmsg *m)
{
    lua_State *L = K.L;
    int top = lua_gettop(L);
    const char *code = json_string_value(json_object_get(m->content, "code"));
    if (!code) code = "";
    json_t *cp = json_object_get(m->content, "cursor_pos");
    size_t end = json_is_integer(cp) ? tl_kernel_cp_to_byte(code, json_integer_value(cp)) : strlen(code);
    size_t start = end;
    while (start > 0 && name_char(code[start - 1], 1)) start--;
    json_t *matches = json_array();
    lua_getfield(L, LUA_REGISTRYINDEX, TL_PRIVATE_KEY);
    if (lua_istable(L, -1)) lua_getfield(L, -1, "complete");
    else lua_pushnil(L);
    if (lua_isfunction(L, -1)) {
        lua_pushlstring(L, code + start, end - start);
        if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
            lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
            for (lua_Integer i = 1; i <= n; i++) {
                if (lua_rawgeti(L, -1, i) == LUA_TSTRING) json_array_append_new(matches, tl_kernel_jstr(lua_tostring(L, -1)));
                lua_pop(L, 1);
            }
        }
    }
    lua_settop(L, top);
    tl_kmsg_reply(K.shell, m, "complete_reply",
          json_pack("{s:s, s:o, s:I, s:I, s:{}}", "status", "ok", "matches", matches, "cursor_start",
                    (json_int_t)tl_kernel_byte_to_cp(code, start), "cursor_end", (json_int_t)tl_kernel_byte_to_cp(code, end),
                    "metadata"));
}

static void do_inspect(const tl_kmsg *m)
{
    lua_State *L = K.L;
    int top = lua_gettop(L);
    const char *code = json_string_value(json_object_get(m->content, "code"));
    if (!code) code = "";
    json_t *cp = json_object_get(m->content, "cursor_pos");
    size_t pos = json_is_integer(cp) ? tl_kernel_cp_to_byte(code, json_integer_value(cp)) : strlen(code);
    size_t start = pos, end = pos;
    while (start > 0 && name_char(code[start - 1], 1)) start--;
    while (code[end] && name_char(code[end], 1)) end++;
    while (end > start && (code[end - 1] == '.' || code[end - 1] == ':')) end--;
    json_t *data = json_object();
    int found = 0;
    if (end > start) {
        push_helper(L, "inspect");
        if (lua_isfunction(L, -1)) {
            lua_pushlstring(L, code + start, end - start);
            if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_isstring(L, -1)) {
                size_t len;
                const char *s = lua_tolstring(L, -1, &len);
                json_object_set_new(data, "text/plain", tl_kernel_jstr_n(s, len, NULL));
                found = 1;
            }
        }
    }
    lua_settop(L, top);
    tl_kmsg_reply(K.shell, m, "inspect_reply",
          json_pack("{s:s, s:b, s:o, s:{}}", "status", "ok", "found", found, "data", data, "metadata"));
}

static void do_is_complete(const tl_kmsg *m)
{
    lua_State *L = K.L;
    int top = lua_gettop(L);
    const char *code = json_string_value(json_object_get(m->content, "code"));
    if (!code) code = "";
    const char *status = "complete";
    const char *p = code + strspn(code, " \t\r\n");
    if (*p && *p != '?') {
        const char *ret = lua_pushfstring(L, "return %s", code);
        if (luaL_loadbuffer(L, ret, strlen(ret), "=cell") != LUA_OK &&
            luaL_loadbuffer(L, code, strlen(code), "=cell") != LUA_OK) {
            /* "<eof>" in either form's message: more input would help */
            status = "invalid";
            for (int i = -1; i >= -2; i--) {
                size_t n;
                const char *msg = lua_tolstring(L, i, &n);
                if (msg && n >= 5 && strcmp(msg + n - 5, "<eof>") == 0) status = "incomplete";
            }
        }
    }
    lua_settop(L, top);
    json_t *c = json_pack("{s:s}", "status", status);
    if (strcmp(status, "incomplete") == 0) json_object_set_new(c, "indent", json_string(""));
    tl_kmsg_reply(K.shell, m, "is_complete_reply", c);
}

static void do_history(const tl_kmsg *m)
{
    const char *kind = json_string_value(json_object_get(m->content, "hist_access_type"));
    json_t *nj = json_object_get(m->content, "n");
    size_t total = json_array_size(K.history), from = 0;
    if (kind && strcmp(kind, "tail") == 0 && json_is_integer(nj) && json_integer_value(nj) >= 0 &&
        (size_t)json_integer_value(nj) < total)
        from = total - (size_t)json_integer_value(nj);
    json_t *h = json_array();
    for (size_t i = from; i < total; i++) json_array_append(h, json_array_get(K.history, i));
    tl_kmsg_reply(K.shell, m, "history_reply", json_pack("{s:s, s:o}", "status", "ok", "history", h));
}

/* Read one message from the I/O thread; returns 1 for "ack" (and when the
 * socket fails, so that no caller waits forever). */
static int pair_read(int flags)
{
    char cmd[16];
    int n;
    while ((n = zmq_recv(K.pair_main, cmd, sizeof cmd, flags)) < 0 && errno == EINTR) {
    }
    if (n < 0) return errno != EAGAIN;
    if (n == 8 && memcmp(cmd, "shutdown", 8) == 0) K.quit = 1;
    return n == 3 && memcmp(cmd, "ack", 3) == 0;
}

/* Tell the I/O thread which request later output belongs to, and wait
 * until it has taken note: output written before that would be attributed
 * to the previous request. */
static void set_parent(const json_t *header)
{
    char *hdr = json_dumps(header, JSON_COMPACT);
    if (!hdr) return;
    int rc = tl_kernel_send_part(K.pair_main, "parent", 6, 1);
    rc |= tl_kernel_send_part(K.pair_main, hdr, strlen(hdr), 0);
    free(hdr);
    if (rc == 0)
        while (!pair_read(0)) {
        }
}

/* Handle one shell request; returns 1 when the kernel should shut down. */
static int handle_shell(void)
{
    tl_kmsg m;
    if (!tl_kmsg_recv(K.shell, &m, "shell")) return 0;
    K.parent = m.header;
    set_parent(m.header);
    publish_status("busy");
    int quit = 0;
    const char *t = m.type;
    if (strcmp(t, "execute_request") == 0) do_execute(&m);
    else if (strcmp(t, "kernel_info_request") == 0) tl_kmsg_reply(K.shell, &m, "kernel_info_reply", kernel_info());
    else if (strcmp(t, "complete_request") == 0) do_complete(&m);
    else if (strcmp(t, "inspect_request") == 0) do_inspect(&m);
    else if (strcmp(t, "is_complete_request") == 0) do_is_complete(&m);
    else if (strcmp(t, "history_request") == 0) do_history(&m);
    else if (strcmp(t, "comm_info_request") == 0)
        tl_kmsg_reply(K.shell, &m, "comm_info_reply", json_pack("{s:s, s:{}}", "status", "ok", "comms"));
    else if (strcmp(t, "shutdown_request") == 0) {
        int restart = json_is_true(json_object_get(m.content, "restart"));
        tl_kmsg_reply(K.shell, &m, "shutdown_reply", json_pack("{s:s, s:b}", "status", "ok", "restart", restart));
        quit = 1;
    } else {
        tl_kernel_log("unsupported shell message '%s': ignored", t);
    }
    publish_status("idle");
    K.parent = NULL;
    tl_kmsg_free(&m);
    return quit;
}

/* ---- set-up -------------------------------------------------------------------------- */

static void *open_socket(int type, const json_t *conn, const char *port_key, char *err, size_t errlen)
{
    const char *transport = json_string_value(json_object_get(conn, "transport"));
    const char *ip = json_string_value(json_object_get(conn, "ip"));
    json_t *port = json_object_get(conn, port_key);
    if (!transport) transport = "tcp";
    if (!ip) ip = "127.0.0.1";
    if (!json_is_integer(port)) {
        snprintf(err, errlen, "connection file has no integer '%s'", port_key);
        return NULL;
    }
    char ep[512];
    if (strcmp(transport, "ipc") == 0) snprintf(ep, sizeof ep, "ipc://%s-%lld", ip, (long long)json_integer_value(port));
    else snprintf(ep, sizeof ep, "%s://%s:%lld", transport, ip, (long long)json_integer_value(port));
    void *s = zmq_socket(K.ctx, type);
    int linger = 1000;
    int64_t max_frame = TL_KERNEL_MAX_FRAME;
    if (s) zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    /* A peer that announces a larger frame is disconnected before any of it
     * is buffered (the signature is checked only on whole messages). */
    if (s && zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame) != 0) {
        snprintf(err, errlen, "cannot limit the message size on %s: %s", port_key, zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    if (!s || zmq_bind(s, ep) != 0) {
        snprintf(err, errlen, "cannot bind %s (%s): %s", port_key, ep, zmq_strerror(errno));
        if (s) zmq_close(s);
        return NULL;
    }
    return s;
}

static void random_hex(char *out, size_t nbytes)
{
    unsigned char raw[32] = {0};
    if (nbytes > sizeof raw) nbytes = sizeof raw;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, raw, nbytes) : -1;
    if (fd >= 0) close(fd);
    if (got != (ssize_t)nbytes) {
        unsigned long long x = (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 32);
        for (size_t i = 0; i < nbytes; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            raw[i] = (unsigned char)(x >> 56);
        }
    }
    for (size_t i = 0; i < nbytes; i++) snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

static int make_pipe(int *rfd, int *wfd)
{
    int p[2];
    if (pipe(p) != 0) return -1;
    fcntl(p[0], F_SETFD, FD_CLOEXEC);
    fcntl(p[1], F_SETFD, FD_CLOEXEC);
    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
    *rfd = p[0];
    *wfd = p[1];
    return 0;
}

static void close_all(void)
{
    void **socks[] = {&K.shell, &K.control, &K.iopub, &K.stdin_s, &K.hb, &K.pair_main, &K.pair_io};
    for (size_t i = 0; i < sizeof socks / sizeof *socks; i++)
        if (*socks[i]) {
            zmq_close(*socks[i]);
            *socks[i] = NULL;
        }
    if (K.ctx) zmq_ctx_term(K.ctx);
    K.ctx = NULL;
    tl_kernel_wire_set(NULL, NULL, NULL);
    EVP_MAC_free(K.mac);
    K.mac = NULL;
    free(K.key);
    K.key = NULL;
    json_decref(K.history);
    K.history = NULL;
    int *fds[] = {&K.out.rfd, &K.err.rfd, &K.out_w, &K.err_w, &K.saved_out, &K.saved_err};
    for (size_t i = 0; i < sizeof fds / sizeof *fds; i++)
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
    tl_kernel_log_set_fd(-1);
}

int tl_kernel_run(lua_State *L, const char *connection_file)
{
    memset(&K, 0, sizeof K);
    K.out.rfd = K.err.rfd = K.out_w = K.err_w = K.saved_out = K.saved_err = -1;
    tl_kernel_log_set_fd(-1);
    K.out.name = "stdout";
    K.err.name = "stderr";
    K.L = L;
    K.main_thread = pthread_self();
    char err[1024] = "";
    json_error_t jerr;
    json_t *conn = json_load_file(connection_file, 0, &jerr);
    if (!conn || !json_is_object(conn)) {
        fprintf(stderr, "towerlab: cannot read connection file '%s': %s\n", connection_file,
                conn ? "not a JSON object" : jerr.text);
        json_decref(conn);
        return 1;
    }
    const char *scheme = json_string_value(json_object_get(conn, "signature_scheme"));
    const char *key = json_string_value(json_object_get(conn, "key"));
    if (scheme && *scheme && strcmp(scheme, "hmac-sha256") != 0) {
        fprintf(stderr, "towerlab: unsupported signature_scheme '%s' (only hmac-sha256)\n", scheme);
        json_decref(conn);
        return 1;
    }
    K.key = strdup(key ? key : "");
    K.mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (!K.key || !K.mac) {
        fprintf(stderr, "towerlab: cannot set up HMAC-SHA256\n");
        json_decref(conn);
        close_all();
        return 1;
    }
    random_hex(K.session, 16);
    tl_kernel_wire_set(K.key, K.mac, K.session);
    K.history = json_array();

    /* Output: fd 1 and 2 point into these pipes while a cell runs; the
     * real ones stay open for the log. Input: nothing (no stdin prompts). */
    K.saved_out = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    K.saved_err = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    tl_kernel_log_set_fd(K.saved_err);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        close(devnull);
    }
    if (K.saved_out < 0 || K.saved_err < 0 || make_pipe(&K.out.rfd, &K.out_w) != 0 ||
        make_pipe(&K.err.rfd, &K.err_w) != 0) {
        fprintf(stderr, "towerlab: cannot set up output pipes: %s\n", strerror(errno));
        json_decref(conn);
        close_all();
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* Only the main thread takes SIGINT: threads started from here (ours
     * and libzmq's) inherit the blocked mask. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    K.ctx = zmq_ctx_new();
    int ok = K.ctx != NULL;
    if (ok) ok = (K.shell = open_socket(ZMQ_ROUTER, conn, "shell_port", err, sizeof err)) != NULL;
    if (ok) ok = (K.control = open_socket(ZMQ_ROUTER, conn, "control_port", err, sizeof err)) != NULL;
    if (ok) ok = (K.iopub = open_socket(ZMQ_PUB, conn, "iopub_port", err, sizeof err)) != NULL;
    if (ok) ok = (K.stdin_s = open_socket(ZMQ_ROUTER, conn, "stdin_port", err, sizeof err)) != NULL;
    if (ok) ok = (K.hb = open_socket(ZMQ_REP, conn, "hb_port", err, sizeof err)) != NULL;
    if (ok) {
        K.pair_io = zmq_socket(K.ctx, ZMQ_PAIR);
        K.pair_main = zmq_socket(K.ctx, ZMQ_PAIR);
        ok = K.pair_io && K.pair_main && zmq_bind(K.pair_io, PAIR_ADDR) == 0 &&
             zmq_connect(K.pair_main, PAIR_ADDR) == 0;
        if (!ok) snprintf(err, sizeof err, "cannot set up the I/O thread socket: %s", zmq_strerror(errno));
    }
    json_decref(conn);
    if (ok) {
        int linger = 1000;
        zmq_setsockopt(K.pair_main, ZMQ_LINGER, &linger, sizeof linger);
        ok = pthread_create(&K.io, NULL, io_main, NULL) == 0;
        if (!ok) snprintf(err, sizeof err, "cannot start the I/O thread");
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!ok) {
        tl_kernel_log("%s", err[0] ? err : "cannot create the ZeroMQ context");
        close_all();
        return 1;
    }
    K.active = 1;
    setup_lua(L);
    tl_kernel_log("started (session %s)", K.session);

    zmq_pollitem_t it[2] = {{K.pair_main, 0, ZMQ_POLLIN, 0}, {K.shell, 0, ZMQ_POLLIN, 0}};
    while (!K.quit) {
        tl_sigint_pending = 0;
        int r = zmq_poll(it, 2, -1);
        if (r < 0) {
            if (errno == EINTR) continue;
            tl_kernel_log("poll failed: %s", zmq_strerror(errno));
            break;
        }
        if (it[0].revents & ZMQ_POLLIN) pair_read(ZMQ_DONTWAIT);
        if (!K.quit && (it[1].revents & ZMQ_POLLIN) && handle_shell()) K.quit = 1;
    }
    tl_kernel_log("shutting down");
    tl_kernel_send_part(K.pair_main, "stop", 4, 0);
    pthread_join(K.io, NULL);
    K.active = 0;
    fflush(stdout);
    close_all();
    return 0;
}
