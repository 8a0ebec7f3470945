#!/usr/bin/env bash
# Checks the lock annotations (ABSL_GUARDED_BY, ABSL_EXCLUSIVE_LOCKS_REQUIRED, ...) with clang's
# -Wthread-safety on every source that holds an absl::Mutex and that clang 14 can compile: those
# that use no C++20 coroutines (clang 14 cannot compile them against GCC 12's libstdc++;
# docs/decisions.md). Needs the generated protobuf headers of a configured build: $1 (build).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
files=(
  # the control plane's one mutex and all it guards: its core and its two edges
  tools/orchestrator/orchestrator.cc
  tools/orchestrator/sessions_service.cc
  tools/orchestrator/worker_gateway.cc
  tools/orchestrator/memory_store.cc
  tools/orchestrator/sqlite_store.cc
  runtime/base/metrics.cc
)
for file in "${files[@]}"; do
  clang++-14 -std=c++20 -fsyntax-only -Wthread-safety -Wthread-safety-beta -Werror \
    -DASIO_STANDALONE -DASIO_NO_DEPRECATED -DFMT_SHARED -I. -isystem "$build/proto" "$file"
done
echo "thread-safety: ${#files[@]} files clean"
