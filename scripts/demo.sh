#!/usr/bin/env bash
# baton's main job, offline: builds baton-demo and runs a whole chat on the embedded session
# host with a scripted model (no API key needed): preload, a head start that hands over a tool
# call, step 2 on the worker, a pure-text head start, and a second turn.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target baton-demo -j "$(nproc)" >/dev/null
exec ./build/baton-demo "$@"
