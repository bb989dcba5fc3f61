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
)

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
