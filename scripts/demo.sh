#!/usr/bin/env bash
# The body of `make demo`: what Radial is for, on this machine. Starts a local cluster (WORKERS workers, default 6,
# and a coordinator on loopback) serving MODEL with ROUTER, asks it one question over gRPC (`radial generate --show-depth`: the reply,
# then the layers and worker hops each token used), asks the same over the OpenAI-compatible HTTP API with curl,
# shows `radial status` (hops saved by routing among it), and stops the cluster.
#   scripts/demo.sh MODEL ROUTER "PROMPT" [SKIP_RATE] [WORKERS]
# More workers hold fewer layers each, so a token more often skips a whole worker (a hop saved).
# Builds nothing: `make demo` fetches, builds and trains the router first.
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1 router=$2 prompt=$3 skip=${4:-0.1} workers=${5:-6}
bin=.build/release
http=127.0.0.1:${RADIAL_DEMO_HTTP_PORT:-8080}

trap 'deploy/local-cluster.sh down >/dev/null' EXIT
echo "== starting $workers workers and a coordinator on loopback, routing with $router at ${skip} of layers skipped"
deploy/local-cluster.sh up --model "$model" --workers "$workers" --router "$router" -- --skip-rate "$skip" --http-listen "$http"

echo
echo "== radial generate --chat --greedy --show-depth \"$prompt\"   (gRPC)"
"$bin/radial" generate --chat --greedy --max-tokens 64 --show-depth "$prompt"

echo
echo "== the same question through the OpenAI-compatible HTTP API:"
body=$(python3 -c 'import json,sys; print(json.dumps({"model": "any", "messages": [{"role": "user", "content": sys.argv[1]}], "max_tokens": 64, "temperature": 0}))' "$prompt")
echo "curl -s http://$http/v1/chat/completions -H 'Content-Type: application/json' -d '$body'"
curl -sS "http://$http/v1/chat/completions" -H 'Content-Type: application/json' -d "$body" | python3 -c '
import json, sys
r = json.load(sys.stdin)
if "error" in r:
    sys.exit("HTTP API error: " + r["error"]["message"])
print("reply:", r["choices"][0]["message"]["content"])
u, x = r["usage"], r["radial"]
print("usage: %d prompt + %d generated tokens; radial: %.1f of %d layers skipped, %.2f hops per token" % (
    u["prompt_tokens"], u["completion_tokens"], x["layers_skipped_per_token"], x["model_layers"], x["hops_per_token"]))'

echo
echo "== radial status"
"$bin/radial" status
