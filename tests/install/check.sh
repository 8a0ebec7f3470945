#!/usr/bin/env bash
# Installs baton from build dir $1 into a scratch prefix and builds docs/examples/my-worker
# against it with find_package(baton), as a user's own worker would be built.
set -euo pipefail
build="$1"
source_dir="$(cd "$(dirname "$0")/../.." && pwd)"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cmake --install "$build" --prefix "$scratch/prefix" >/dev/null
cmake -S "$source_dir/docs/examples/my-worker" -B "$scratch/build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$scratch/prefix" >/dev/null
cmake --build "$scratch/build" >/dev/null || { cmake --build "$scratch/build" 2>&1 | grep -m5 -E "error|undefined"; exit 1; }
# The worker main's flags are there: the binary is a complete worker (--helpfull exits 1).
usage=$("$scratch/build/my-worker" --helpfull 2>&1 || true)
grep -q -- "--orchestrator" <<<"$usage"
echo "my-worker built against the installed baton, and runs"
