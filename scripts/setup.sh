#!/usr/bin/env bash
# Installs the Debian bookworm packages baton needs to build and test, when any is missing, and
# the npm packages of the SDK check (tests/sdk), the demo page (tasks/web) and its tests
# (tests/web). Safe to run again: it does nothing when everything is present.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

packages=(
  build-essential cmake ninja-build pkg-config
  libasio-dev libabsl-dev libfmt-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcurl4-openssl-dev libssl-dev libsqlite3-dev clang-format
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libhttp-parser-dev libcli11-dev libmimalloc-dev
  clang-14 libclang-rt-14-dev
  openssl ccache stress-ng
  chromium
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# Node runs the official client SDKs against fake-llm, bundles the demo page and drives chromium
# in its browser test (docs/web.md). A node that came from elsewhere (with its own npm) is fine;
# only a machine without one gets Debian's.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The SDKs at the versions in tests/sdk/package-lock.json.
if [ ! -d "$root/tests/sdk/node_modules" ]; then
  echo "setup: npm ci in tests/sdk"
  npm ci --prefix "$root/tests/sdk" --no-audit --no-fund --loglevel=error
fi

# The demo page's and its tests' packages at their lockfiles' versions (the build runs the same
# install, cmake/npm_ci.cmake, when a lockfile changes). No install script runs.
for dir in tasks/web tests/web; do
  if [ ! -d "$root/$dir/node_modules" ]; then
    echo "setup: npm ci in $dir"
    npm ci --prefix "$root/$dir" --no-audit --no-fund --ignore-scripts --loglevel=error
  fi
done
