#!/usr/bin/python3
"""The Jupyter kernel (`towerlab --kernel`) driven by jupyter_client: execute
(streams, results, errors), complete, inspect, is_complete, history, inline
plots, interrupts (signal and control message), a badly signed message sent
raw over ZeroMQ, restart, shutdown. Run by tests/run_tests.sh with /usr/bin/python3."""
import os
import queue
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.skip_without("jupyter_client", "zmq")

import zmq  # noqa: E402
from jupyter_client import KernelManager  # noqa: E402

TIMEOUT = 20


class Kernel:
    def __init__(self):
        common.install_kernelspec()
        self.log = tempfile.NamedTemporaryFile(prefix="towerlab-kernel-", suffix=".log", delete=False)
        self.km = KernelManager(kernel_name="towerlab")
        self.km.start_kernel(stderr=self.log, cwd=common.ROOT)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=TIMEOUT)

    def log_text(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def iopub_until_idle(self, msg_id, timeout=TIMEOUT):
        """iopub messages answering msg_id, up to and including status idle."""
        out, deadline = [], time.time() + timeout
        while time.time() < deadline:
            try:
                m = self.kc.get_iopub_msg(timeout=max(0.05, deadline - time.time()))
            except queue.Empty:
                break
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            out.append(m)
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                return out
        raise AssertionError("no status idle for %s within %s s; got %s"
                             % (msg_id, timeout, [m["msg_type"] for m in out]))

    def shell_reply(self, msg_id, timeout=TIMEOUT):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = self.kc.get_shell_msg(timeout=max(0.05, deadline - time.time()))
            if m["parent_header"].get("msg_id") == msg_id:
                return m
        raise AssertionError("no reply to %s" % msg_id)

    def execute(self, code, timeout=TIMEOUT):
        """(reply content, iopub messages) for one cell."""
        msg_id = self.kc.execute(code)
        reply = self.shell_reply(msg_id, timeout)
        return reply["content"], self.iopub_until_idle(msg_id, timeout)

    def request(self, method, *args, **kw):
        msg_id = getattr(self.kc, method)(*args, **kw)
        reply = self.shell_reply(msg_id)
        self.iopub_until_idle(msg_id)
        return reply["content"]


def of_type(msgs, t):
    return [m["content"] for m in msgs if m["msg_type"] == t]


def stream_text(msgs, name):
    return "".join(c["text"] for c in of_type(msgs, "stream") if c["name"] == name)


def test_kernel_info(k):
    c = k.request("kernel_info")
    assert c["status"] == "ok"
    assert c["protocol_version"] == "5.3", c
    assert c["implementation"] == "towerlab"
    li = c["language_info"]
    assert (li["name"], li["version"], li["mimetype"], li["file_extension"]) == \
        ("lua", "5.4", "text/x-lua", ".lua"), li
    assert "towerlab" in c["banner"]


def test_streams(k):
    code = ('print("from print"); io.stdout:write("from stdio\\n"); io.stderr:write("to stderr\\n")\n'
            'os.execute("echo from a child process")\n'
            'local _ = io.write("no newline")')
    c, msgs = k.execute(code)
    assert c["status"] == "ok", c
    out, err = stream_text(msgs, "stdout"), stream_text(msgs, "stderr")
    for s in ("from print\n", "from stdio\n", "from a child process\n", "no newline"):
        assert s in out, (s, out)
    assert out.index("from print") < out.index("from a child process") < out.index("no newline"), out
    assert err == "to stderr\n", err
    types = [m["msg_type"] for m in msgs]
    assert types[0] == "status" and types[1] == "execute_input", types
    assert "execute_result" not in types, types
    c, msgs = k.execute('io.write("caf\\xc3\\xa9 \\xff!\\n");')  # bytes that are not UTF-8
    assert stream_text(msgs, "stdout") == "caf\u00e9 \ufffd!\n", msgs


def test_results_and_count(k):
    c1, msgs = k.execute("1 + 1")
    assert c1["status"] == "ok"
    res = of_type(msgs, "execute_result")
    assert len(res) == 1 and res[0]["data"]["text/plain"] == "2", res
    assert res[0]["execution_count"] == c1["execution_count"]
    c2, msgs = k.execute("local x = 20\nx + 1")
    assert c2["execution_count"] == c1["execution_count"] + 1, (c1, c2)
    assert of_type(msgs, "execute_result")[0]["data"]["text/plain"] == "21"
    c3, msgs = k.execute("x = 5;")  # trailing ';' hides the value
    assert not of_type(msgs, "execute_result"), msgs
    c4, msgs = k.execute('local t = {income={auc=0.75, logloss=0.3}, married={auc=0.9, logloss=0.2}}\nt')
    data = of_type(msgs, "execute_result")[0]["data"]
    assert "<table>" in data["text/html"] and "income" in data["text/html"], data
    assert data["text/markdown"].startswith("| task | auc | logloss |"), data["text/markdown"]
    c5, msgs = k.execute("x")
    assert of_type(msgs, "execute_result")[0]["data"]["text/plain"] == "5"


def test_error(k):
    c, msgs = k.execute('print("before")\nlocal function f() error("boom") end\nf()')
    assert c["status"] == "error", c
    assert c["ename"] == "LuaError" and "boom" in c["evalue"], c
    errs = of_type(msgs, "error")
    assert len(errs) == 1 and "boom" in errs[0]["evalue"], errs
    tb = errs[0]["traceback"]
    assert isinstance(tb, list) and any("stack traceback" in l for l in tb), tb
    assert stream_text(msgs, "stdout") == "before\n"
    c, msgs = k.execute("x = = 1")
    assert c["status"] == "error" and c["ename"] == "SyntaxError", c
    c, _ = k.execute("2 * 21")
    assert c["status"] == "ok"


def test_complete(k):
    c = k.request("complete", "tl.da", 5)
    assert c["status"] == "ok"
    assert "tl.data" in c["matches"] and "tl.datasets" in c["matches"], c
    assert (c["cursor_start"], c["cursor_end"]) == (0, 5), c
    c = k.request("complete", "x = tl.plot.cal", 15)
    assert c["matches"] == ["tl.plot.calibration"] and c["cursor_start"] == 4, c


def test_inspect(k):
    c = k.request("inspect", "tl.plot.calibration(r)", 10)
    assert c["status"] == "ok" and c["found"], c
    assert "eliability" in c["data"]["text/plain"], c
    c = k.request("inspect", "no_such_name_at_all", 3)
    assert not c["found"], c
    c, msgs = k.execute("?tl.plot.calibration\n")  # ?x prints help, as at the prompt
    assert c["status"] == "ok" and "eliability" in stream_text(msgs, "stdout"), (c, msgs)


def test_is_complete(k):
    for code, want in (("for i = 1, 3 do", "incomplete"), ("x = 1", "complete"),
                       ("1 +", "incomplete"), ("x = = 1", "invalid"), ("", "complete"),
                       ("function f()\n  return 1\nend", "complete")):
        c = k.request("is_complete", code)
        assert c["status"] == want, (code, c)


def test_history(k):
    k.execute("y_hist = 42")
    c = k.request("history", hist_access_type="tail", n=1, output=False, raw=True)
    assert c["status"] == "ok" and c["history"][-1][2] == "y_hist = 42", c


def test_inline_plots(k):
    c, msgs = k.execute(
        "local d = tl.datasets.census()\n"
        "m = tl.model{data=d, backbone=tl.mmoe{experts=2, expert={16}}, emb=4, seed=1}\n"
        "m:fit{data=d.train, valid=d.valid, epochs=2, max_steps=40, batch=512, plot=true}\n"
        "r = m:evaluate(d.test)", timeout=60)
    assert c["status"] == "ok", c
    disp = of_type(msgs, "display_data") + of_type(msgs, "update_display_data")
    assert disp, [m["msg_type"] for m in msgs]
    assert all("<svg" in d["data"]["image/svg+xml"] for d in disp)
    ids = {d.get("transient", {}).get("display_id") for d in disp}
    assert len(ids) == 1 and None not in ids, ids  # the live plot redraws one output in place
    c, msgs = k.execute("tl.plot.calibration(r)")
    assert c["status"] == "ok", c
    d = of_type(msgs, "display_data")
    assert len(d) == 1 and "<svg" in d[0]["data"]["image/svg+xml"], msgs
    assert not of_type(msgs, "execute_result"), "a plot call shows the figure, not `true`"
    c, msgs = k.execute('tl.display{["text/html"]="<b>hi</b>"}; tl.display(r, {id="r1"})')
    d = of_type(msgs, "display_data")
    assert [x["data"].get("text/html") for x in d][0] == "<b>hi</b>", d
    assert "<table>" in d[1]["data"]["text/html"] and d[1]["transient"]["display_id"] == "r1", d
    c, msgs = k.execute('tl.plot.calibration(r, {format="text"})')
    assert not of_type(msgs, "display_data")
    assert "income" in of_type(msgs, "execute_result")[0]["data"]["text/plain"]


def wait_reply(k, msg_id, timeout):
    t0 = time.time()
    reply = k.shell_reply(msg_id, timeout)
    k.iopub_until_idle(msg_id)
    return reply["content"], time.time() - t0


def test_interrupt_loop_signal(k):
    msg_id = k.kc.execute("n = 0\nwhile true do n = n + 1 end")
    time.sleep(0.5)
    k.km.interrupt_kernel()  # interrupt_mode signal: SIGINT to the process
    c, dt = wait_reply(k, msg_id, 10)
    assert c["status"] == "error" and c["ename"] == "KeyboardInterrupt", c
    assert "interrupted" in c["evalue"], c
    c, msgs = k.execute("n > 0")
    assert of_type(msgs, "execute_result")[0]["data"]["text/plain"] == "true"


def test_interrupt_fit_control(k):
    msg_id = k.kc.execute(
        "local d = tl.datasets.census()\n"
        "m2 = tl.model{data=d, backbone=tl.mmoe{experts=4, expert={64}}, emb=8, seed=2}\n"
        "m2:fit{data=d.train, epochs=1000, batch=256}")
    time.sleep(1.5)
    msg = k.kc.session.msg("interrupt_request", {})
    k.kc.control_channel.send(msg)
    r = k.kc.get_control_msg(timeout=10)
    assert r["msg_type"] == "interrupt_reply" and r["content"]["status"] == "ok", r
    c, dt = wait_reply(k, msg_id, 15)
    assert dt < 15, dt
    c, msgs = k.execute("m2 ~= nil and 40 + 2")
    assert c["status"] == "ok", c
    assert of_type(msgs, "execute_result")[0]["data"]["text/plain"] == "42"


def test_bad_signature_dropped(k):
    info = k.km.get_connection_info()
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.connect("%s://%s:%d" % (info["transport"], info["ip"], info["shell_port"]))
    session = k.kc.session
    msg = session.msg("kernel_info_request", {})
    parts = [session.pack(msg["header"]), session.pack(msg["parent_header"]),
             session.pack(msg["metadata"]), session.pack(msg["content"])]
    good = session.sign(parts).decode()
    bad = ("0" if good[0] != "0" else "1") + good[1:]
    for sig in (bad, ""):
        s.send_multipart([b"<IDS|MSG>", sig.encode()] + parts)
        assert s.poll(1000) == 0, "a wrongly signed message was answered"
    # the same frames, correctly signed, are answered: the socket itself works
    s.send_multipart([b"<IDS|MSG>", good.encode()] + parts)
    assert s.poll(5000) != 0, "no reply to a well signed message"
    s.close()
    assert k.log_text().count("invalid signature") >= 2, k.log_text()
    c, msgs = k.execute("1 + 2")
    assert of_type(msgs, "execute_result")[0]["data"]["text/plain"] == "3"


def peak_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def test_oversized_frame_refused(k):
    """Issue 25 item 9: a 96 MiB unsigned frame (over the 64 MiB limit,
    TL_KERNEL_MAX_FRAME) is refused without being buffered: the kernel's
    peak RSS does not grow by its size, and the kernel goes on. Runs early,
    while the peak is still the start-up one."""
    pid = k.km.provisioner.process.pid
    before = peak_rss_kb(pid)
    info = k.km.get_connection_info()
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.connect("%s://%s:%d" % (info["transport"], info["ip"], info["shell_port"]))
    big = b"x" * (96 << 20)
    s.send_multipart([b"<IDS|MSG>", b"0" * 64, big, b"{}", b"{}", b"{}"])
    del big
    assert s.poll(3000) == 0, "an oversized message was answered"
    s.close()
    grown = peak_rss_kb(pid) - before
    assert grown < 32 << 10, "kernel peak RSS grew by %d KiB for a refused 96 MiB frame" % grown
    c, msgs = k.execute("1 + 2")
    assert of_type(msgs, "execute_result")[0]["data"]["text/plain"] == "3"


def test_restart(k):
    k.execute("before_restart = 1")
    pid = k.km.provisioner.process.pid
    k.km.restart_kernel(now=False)  # shutdown_request with restart=true, then a new process
    k.kc.wait_for_ready(timeout=TIMEOUT)
    assert k.km.provisioner.process.pid != pid
    c, msgs = k.execute("before_restart == nil")
    assert of_type(msgs, "execute_result")[0]["data"]["text/plain"] == "true", msgs
    assert c["execution_count"] == 1, c


def test_shutdown(k):
    k.kc.shutdown()
    r = k.kc.get_control_msg(timeout=10)
    assert r["msg_type"] == "shutdown_reply" and r["content"]["status"] == "ok", r
    deadline = time.time() + 10
    while time.time() < deadline and k.km.is_alive():
        time.sleep(0.05)
    assert not k.km.is_alive(), "kernel still running after shutdown_request"
    log = k.log_text()
    assert "shutting down" in log, log
    # under make check (ASan/UBSan) the kernel's reports land in its log
    assert "Sanitizer" not in log and "runtime error" not in log, log


def main():
    r = common.Runner()
    if not os.access(common.binary(), os.X_OK):
        print("no towerlab binary at %s" % common.binary())
        r.failed.append("binary")
        r.finish()
    started = []
    if not r.run("kernel_start", lambda: started.append(Kernel())):
        r.finish()
    k = started[0]
    tests = [test_kernel_info, test_oversized_frame_refused, test_streams, test_results_and_count, test_error, test_complete,
             test_inspect, test_is_complete, test_history, test_inline_plots,
             test_interrupt_loop_signal, test_interrupt_fit_control, test_bad_signature_dropped,
             test_restart, test_shutdown]
    for t in tests:
        r.run(t.__name__[5:], t, k)
    try:
        k.kc.stop_channels()
        if k.km.is_alive():
            k.km.shutdown_kernel(now=True)
    except Exception:
        pass
    if r.failed:
        print("---- kernel log ----\n" + k.log_text())
    r.finish()


if __name__ == "__main__":
    main()
