#!/usr/bin/env bash
# Install the Debian packages towerlab needs to build, test and run its demo.
# Idempotent: when every package is already installed it makes no apt call.
# JUPYTER=1 (make deps JUPYTER=1) also installs a notebook front end, Debian's
# jupyter-notebook (classic Notebook 6: `jupyter notebook notebooks/`); the
# kernel itself and its tests need none of it. DEPS_DRY_RUN=1 prints the
# packages that would be installed and installs nothing.
set -euo pipefail

packages=(
  gcc make pkg-config            # toolchain
  liblua5.4-dev lua5.4           # embedded interpreter (+ plain lua for require "towerlab")
  libreadline-dev                # REPL line editing, history, completion
  libopenblas-dev                # cblas_sgemm for every GEMM
  zlib1g-dev                     # .gz datasets, CRC32 for checkpoints
  libcmocka-dev                  # C unit tests
  gnuplot-nox                    # plots (dumb/svg/png terminals, no X needed)
  tmux                           # REPL tests drive the real program in a terminal
  libzmq3-dev                    # Jupyter kernel: ZeroMQ sockets (towerlab --kernel)
  libjansson-dev                 # Jupyter kernel: JSON messages
  libssl-dev                     # Jupyter kernel: HMAC-SHA256 message signatures (libcrypto)
  python3-jupyter-client         # kernel tests (tests/kernel, run with /usr/bin/python3)
  python3-nbclient               # notebook tests: execute notebooks/*.ipynb against the kernel
  python3-nbformat               # notebook tests: read and write .ipynb
  openmpi-bin libopenmpi-dev     # tl.mpi under mpirun (optional: the build detects mpicc)
  nodejs                         # export parity: onnxruntime-node runs the exported ONNX files
  python3-onnx                   # export tests: onnx.checker.check_model(full_check=True)
)

# onnxruntime-node (version locked in tests/export/package-lock.json) into
# tests/export/node_modules (git-ignored), its CPU library bundled in the
# package; ONNXRUNTIME_NODE_INSTALL=skip turns off its CUDA download.
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export_runtime() {
  [ -n "${DEPS_DRY_RUN:-}" ] && return 0
  [ -d "$(dirname "$0")/../tests/export/node_modules/onnxruntime-node" ] && return 0
  # Debian's nodejs ships npm as its own package; a nodejs that bundles npm conflicts with it
  if ! command -v npm >/dev/null; then
    ${SUDO:-} apt-get install -y -q npm || { echo "deps: no npm: the ONNX parity tests will skip"; return 0; }
  fi
  echo "deps: npm ci in tests/export (onnxruntime-node)"
  (cd "$(dirname "$0")/../tests/export" && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error)
}

case "${JUPYTER:-}" in
  ""|0|no) ;;
  *) packages+=(jupyter-notebook) ;;  # the front end for `jupyter notebook notebooks/`
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} packages present"
  export_runtime
  exit 0
fi

if [ -n "${DEPS_DRY_RUN:-}" ]; then
  echo "deps: would install ${missing[*]}"
  exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q "${missing[@]}" || {
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q "${missing[@]}"
}
export_runtime
