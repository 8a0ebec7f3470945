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
# Every installed header compiles on its own, from the installed tree alone: none of them may
# reach an internal one (docs/architecture.md, Public headers).
mkdir -p "$scratch/headers"
{
  echo 'cmake_minimum_required(VERSION 3.25)'
  echo 'project(headers LANGUAGES CXX)'
  echo 'set(CMAKE_CXX_STANDARD 20)'
  echo 'find_package(baton REQUIRED)'
  echo 'add_library(headers OBJECT)'
  echo 'target_link_libraries(headers PRIVATE baton::runtime baton::testkit)'
} > "$scratch/headers/CMakeLists.txt"
count=0
while IFS= read -r header; do
  count=$((count + 1))
  echo "#include \"${header#"$scratch/prefix/include/baton/"}\"" > "$scratch/headers/h$count.cc"
  echo "target_sources(headers PRIVATE h$count.cc)" >> "$scratch/headers/CMakeLists.txt"
done < <(find "$scratch/prefix/include/baton/runtime" "$scratch/prefix/include/baton/hooks" -name '*.h')
cmake -S "$scratch/headers" -B "$scratch/headers/build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$scratch/prefix" >/dev/null
cmake --build "$scratch/headers/build" >/dev/null ||
  { cmake --build "$scratch/headers/build" 2>&1 | grep -m5 -E "error"; exit 1; }
echo "my-worker built against the installed baton, and runs; $count installed headers compile alone"
