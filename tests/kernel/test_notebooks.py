#!/usr/bin/python3
"""Execute every notebooks/*.ipynb with nbclient against the built towerlab
kernel (TL_QUICK=1: a few training steps) and fail on any error output.

  /usr/bin/python3 tests/kernel/test_notebooks.py           # the test (make test)
  /usr/bin/python3 tests/kernel/test_notebooks.py --write   # full run, save outputs
                                                            # into the notebooks
TL_TEST_BIN names the binary (default ./towerlab)."""
import glob
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

common.skip_without("jupyter_client", "nbclient", "nbformat")

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

WRITE = "--write" in sys.argv[1:]
NB_DIR = os.path.join(common.ROOT, "notebooks")


def execute(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "towerlab", \
        "%s: kernelspec is not towerlab" % path
    client = NotebookClient(nb, kernel_name="towerlab", timeout=None if WRITE else 120,
                            startup_timeout=30, allow_errors=False,
                            resources={"metadata": {"path": NB_DIR}})
    client.execute()
    errors = [(i, o) for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, "%s: error outputs in cells %s" % (path, [i for i, _ in errors])
    ran = [c for c in nb.cells if c.cell_type == "code"]
    assert ran and all(c.get("execution_count") for c in ran), "%s: a code cell did not run" % path
    if WRITE:
        nbformat.write(nb, path)
        print("wrote %s" % os.path.relpath(path, common.ROOT))


def main():
    r = common.Runner()
    if not os.access(common.binary(), os.X_OK):
        print("no towerlab binary at %s" % common.binary())
        r.failed.append("binary")
        r.finish()
    common.install_kernelspec({} if WRITE else {"TL_QUICK": "1"})
    paths = sorted(glob.glob(os.path.join(NB_DIR, "*.ipynb")))
    if not paths:
        r.failed.append("no notebooks in %s" % NB_DIR)
    for p in paths:
        r.run(os.path.basename(p), execute, p)
    r.finish()


if __name__ == "__main__":
    main()
