#!/usr/bin/env bash
# baton's main job: starts the whole stack on this machine and drives a chat through it.
#   fake-llm            the model, over real HTTP in Anthropic's wire format (no API key
#                       needed); with ANTHROPIC_API_KEY or OPENAI_API_KEY set, that provider
#   baton-orchestrator  the control plane, on an embedded SQLite file
#   baton-worker        hosts the agents of tasks/, dials the orchestrator over a Unix socket
#   baton-demo          the client: preload, a head start that hands over a tool call (it plays
#                       the warm server), step 2 on the worker, a second turn, and a pure-text
#                       head start, with timings
#   baton-gateway       the web face: the demo page and the AI SDK chat transport, with head
#                       starts; in a terminal it stays up after the chat, for a person to open
#                       the page it prints (Ctrl-C stops it)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target baton-demo baton-worker baton-orchestrator fake-llm baton-gateway \
  -j "$(nproc)" >/dev/null

dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# Waits until process output file $1 has a line starting with $2, and prints the rest of it.
wait_line() {
  for _ in $(seq 1 200); do
    line=$(grep -m1 "^$2" "$1" 2>/dev/null || true)
    if [ -n "$line" ]; then echo "${line#"$2"}"; return 0; fi
    sleep 0.05
  done
  echo "demo: no \"$2\" in $1" >&2
  return 1
}

provider_flags=()
if [ -n "${ANTHROPIC_API_KEY:-}" ]; then
  provider_flags=(--provider=anthropic --model=claude-sonnet-4-5)
  echo "model: Anthropic (claude-sonnet-4-5), key from ANTHROPIC_API_KEY"
elif [ -n "${OPENAI_API_KEY:-}" ]; then
  provider_flags=(--provider=openai --model=gpt-4.1-mini)
  echo "model: OpenAI (gpt-4.1-mini), key from OPENAI_API_KEY"
else
  ./build/tools/fake-llm/fake-llm --script tasks/demo-llm.json >"$dir/fake-llm.out" \
    2>"$dir/fake-llm.log" &
  pids+=($!)
  url=$(wait_line "$dir/fake-llm.out" "listening ")
  provider_flags=(--provider=anthropic --model=demo --base_url="$url" --api_key_env=BATON_DEMO_KEY)
  export BATON_DEMO_KEY=demo
  echo "model: fake-llm at $url, Anthropic wire format"
fi

socket="unix:$dir/orchestrator.sock"
BATON_LOG_LEVEL=warn ./build/tools/orchestrator/baton-orchestrator --listen="$socket" \
  --db="$dir/baton.db" >"$dir/orchestrator.out" 2>"$dir/orchestrator.log" &
pids+=($!)
wait_line "$dir/orchestrator.out" "listening " >/dev/null

mkfifo "$dir/hooks"
BATON_LOG_LEVEL=warn ./build/baton-worker --orchestrator="$socket" --hook_log="$dir/hooks" \
  --drain_grace_ms=1000 \
  "${provider_flags[@]}" 2>"$dir/worker.log" &
pids+=($!)

# The web face: the demo page (tasks/web, built with baton) and the chat transport.
BATON_LOG_LEVEL=warn ./build/tools/gateway/baton-gateway --listen=127.0.0.1:0 \
  --orchestrator="$socket" --agent=weather --public_create \
  "${provider_flags[@]}" >"$dir/gateway.out" 2>"$dir/gateway.log" &
pids+=($!)
page="http://$(wait_line "$dir/gateway.out" "listening ")/"

./build/baton-demo --orchestrator="$socket" --hooks="$dir/hooks" "${provider_flags[@]}" "$@"

if [ -t 0 ] && [ -t 1 ]; then
  echo
  echo "The demo page (useChat on baton-gateway, head starts on): $page"
  echo "Open it in a browser; Ctrl-C stops the stack."
  wait "${pids[-1]}" || true
else
  echo "The demo page was served at $page (run this in a terminal to keep it open)."
fi
