#!/usr/bin/env bash
# make demo: run the demo script with the freshly built binary.
set -euo pipefail
cd "$(dirname "$0")/.."
./towerlab scripts/demo.lua "${DEMO_EPOCHS:-3}"
