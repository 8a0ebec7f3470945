#!/usr/bin/env bash
# Builds baton and runs every test: the release build's tests, then the same tests under
# AddressSanitizer + UndefinedBehaviorSanitizer, then a clang-format check.
# Installs what the build needs first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

jobs=$(nproc)

# A compiler cache outside the clone: a second run, or a fresh clone on the same machine, only
# compiles what changed. BATON_CCACHE_DIR moves it; relative paths let clones share entries.
# ccache hashes the build directory into every -g compile (it lands in the debug info), so
# without CCACHE_NOHASHDIR a fresh clone in another directory missed on every object.
export CCACHE_DIR=${BATON_CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/baton-ccache}
export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)

echo "== release build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== sanitizer build (ASan + UBSan)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DBATON_SANITIZE=ON \
  -DBATON_BUILD_BENCH=OFF "${launcher[@]}" >/dev/null
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs"

echo "== fuzz (libFuzzer, a fixed budget per target, on a scratch copy of the corpus)"
CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DBATON_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >/dev/null
cmake --build build-fuzz -j "$jobs"
fuzz_seconds=${BATON_FUZZ_SECONDS:-20}
for target in in_record ui_chunks sse anthropic_stream openai_stream http_request ui_message \
  handover wire batonctl auth json_depth gateway_http snapshot_delta; do
  scratch=$(mktemp -d)
  cp -r "tests/fuzz/corpus/$target/." "$scratch/"
  ./build-fuzz/${target}_fuzz -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 \
    -artifact_prefix="build-fuzz/" "$scratch" 2>&1 | tail -n 1
  rm -rf "$scratch"
done

echo "== format"
files=$(git ls-files '*.h' '*.cc' 2>/dev/null || find . -name '*.h' -o -name '*.cc')
clang-format --dry-run -Werror $files
echo "format: clean"

echo "== lock annotations (clang -Wthread-safety on what clang can compile)"
bash scripts/thread_safety.sh build
