"""Shared by tests/kernel/test_*.py: a cmocka-style reporter (the lines
tests/run_tests.sh counts) and a temporary kernelspec for the built binary.

Run with Debian's /usr/bin/python3 (python3-jupyter-client, python3-nbclient);
without them every test file prints one SKIPPED line and exits 0."""
import json
import os
import sys
import tempfile
import time
import traceback

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def binary():
    """Absolute path of the towerlab binary under test ($TL_TEST_BIN, else ./towerlab)."""
    b = os.environ.get("TL_TEST_BIN") or "./towerlab"
    return b if os.path.isabs(b) else os.path.abspath(os.path.join(ROOT, b))


def skip_without(*modules):
    """Print the SKIPPED line and exit 0 when a module cannot be imported."""
    missing = []
    for m in modules:
        try:
            __import__(m)
        except ImportError:
            missing.append(m)
    if missing:
        print("SKIP all: %s missing in %s (apt-get install python3-jupyter-client python3-nbclient)"
              % (", ".join(missing), sys.executable))
        print("[  SKIPPED ] 1 test(s).")
        sys.exit(0)


def install_kernelspec(env=None):
    """Write kernels/towerlab/kernel.json under a new temporary directory,
    put it first on JUPYTER_PATH and return the directory."""
    d = tempfile.mkdtemp(prefix="towerlab-jupyter-")
    os.makedirs(os.path.join(d, "kernels", "towerlab"))
    spec = {
        "argv": [binary(), "--kernel", "{connection_file}"],
        "display_name": "towerlab (Lua)",
        "language": "lua",
        "interrupt_mode": "signal",
        "env": dict({"TOWERLAB_DATA": os.path.join(ROOT, "data"), "TL_NO_RC": "1"}, **(env or {})),
    }
    with open(os.path.join(d, "kernels", "towerlab", "kernel.json"), "w") as f:
        json.dump(spec, f)
    os.environ["JUPYTER_PATH"] = d + os.pathsep + os.environ.get("JUPYTER_PATH", "")
    return d


class Runner:
    """Runs test functions and prints cmocka-style lines."""

    def __init__(self):
        self.passed, self.failed = 0, []

    def run(self, name, fn, *args):
        print("[ RUN      ] %s" % name, flush=True)
        t0 = time.time()
        try:
            fn(*args)
        except Exception:
            traceback.print_exc(file=sys.stdout)
            print("[  FAILED  ] %s (%.1f s)" % (name, time.time() - t0), flush=True)
            self.failed.append(name)
            return False
        print("[       OK ] %s (%.1f s)" % (name, time.time() - t0), flush=True)
        self.passed += 1
        return True

    def finish(self):
        print("[==========] %d test(s) run." % (self.passed + len(self.failed)))
        print("[  PASSED  ] %d test(s)." % self.passed)
        if self.failed:
            print("[  FAILED  ] %d test(s), listed below:" % len(self.failed))
            for n in self.failed:
                print("[  FAILED  ] %s" % n)
        sys.exit(1 if self.failed else 0)
