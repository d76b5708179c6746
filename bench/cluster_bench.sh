#!/usr/bin/env bash
# Side by side in one run, same model, threads and workload (every stream generates MAX_TOKENS greedy tokens after
# its own short chat prompt, end-of-generation ignored):
#   Radial: in-process engine; 3-worker loopback cluster; 3-worker network-namespace cluster with DELAY_MS added
#   one-way on every coordinator-worker link (root only);
#   llama.cpp (commit 0c1e57098bba, built by bench/build_llamacpp.sh): llama-bench locally, through 3 rpc-servers on
#   loopback, and through 3 rpc-servers with DELAY_MS per link (the same delay proxy); llama-server with parallel
#   slots for the concurrent case.
#   bench/cluster_bench.sh [MODEL] [THREADS] [MAX_TOKENS]       env: CONC="1 4 16" DELAY_MS=1 LLAMACPP=1 NETNS=1
# Prints one markdown table and the ratios the distributed issue asks for. Needs `make release`.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${2:-2}
MAX_TOKENS=${3:-64}
read -r -a CONC <<<"${CONC:-1 4 16}"
DELAY_MS=${DELAY_MS:-1}
BIN=.build/release
for b in radial radial-worker radial-coordinator; do [ -x "$BIN/$b" ] || { echo "build first: make release" >&2; exit 1; }; done

out=$(mktemp -d)
export RADIAL_RUN_DIR="$out/cluster"
pids=()
cleanup() {
  deploy/local-cluster.sh down >/dev/null 2>&1 || true
  [ "${NETNS:-1}" = 1 ] && [ "$(id -u)" -eq 0 ] && RADIAL_RUN_DIR="$out/netns" deploy/netns-cluster.sh down >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
wait_port() { for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

echo "Radial in-process ($THREADS threads)..." >&2
"$BIN/radial" bench --model "$MODEL" --threads "$THREADS" --max-tokens "$MAX_TOKENS" --concurrency "${CONC[@]}" \
  --label radial-in-process --json >> "$out/all.jsonl"

echo "Radial, 3 workers on loopback..." >&2
deploy/local-cluster.sh up --model "$MODEL" --threads "$THREADS" --port 7300 >&2
"$BIN/radial" bench --coordinator 127.0.0.1:7300 --max-tokens "$MAX_TOKENS" --concurrency "${CONC[@]}" \
  --label radial-3-workers-loopback --json >> "$out/all.jsonl"
"$BIN/radial" status --coordinator 127.0.0.1:7300 >&2
deploy/local-cluster.sh down >&2

if [ "${NETNS:-1}" = 1 ] && [ "$(id -u)" -eq 0 ]; then
  echo "Radial, 3 workers in network namespaces, +$DELAY_MS ms per link..." >&2
  RADIAL_RUN_DIR="$out/netns" deploy/netns-cluster.sh up --model "$MODEL" --threads "$THREADS" --delay-ms "$DELAY_MS" >&2
  "$BIN/radial" bench --coordinator 10.77.250.2:7100 --max-tokens "$MAX_TOKENS" --concurrency "${CONC[@]}" \
    --label "radial-3-workers-netns-${DELAY_MS}ms" --json >> "$out/all.jsonl"
  "$BIN/radial" status --coordinator 10.77.250.2:7100 >&2
  RADIAL_RUN_DIR="$out/netns" deploy/netns-cluster.sh down >&2
fi

if [ "${LLAMACPP:-1}" = 1 ]; then
  LB="$(bench/build_llamacpp.sh)"
  export LD_LIBRARY_PATH="$LB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  tg() {  # label, extra llama-bench args...
    local label="$1"; shift
    "$LB/llama-bench" -m "$MODEL" -t "$THREADS" -p 0 -n "$MAX_TOKENS" -r 3 -o json "$@" 2>/dev/null | python3 -c "
import json, sys
r = json.load(sys.stdin)[0]
# llama-bench reports only a mean rate: the latency quantiles, TTFT, hops and bytes are not measured (null).
print(json.dumps({'target': '$label', 'streams': 1, 'tokens': $MAX_TOKENS, 'seconds': $MAX_TOKENS / r['avg_ts'],
  'tokens_per_s': r['avg_ts'], 'token_latency_p50_ms': None, 'token_latency_p99_ms': None,
  'first_token_p50_ms': None, 'hops_per_token': None, 'wire_bytes_per_token': None}))" >> "$out/all.jsonl"
  }
  echo "llama.cpp local..." >&2
  tg llama.cpp-local
  echo "llama.cpp RPC, 3 rpc-servers on loopback..." >&2
  for i in 0 1 2; do "$LB/ggml-rpc-server" -H 127.0.0.1 -p $((50052 + i)) -t "$THREADS" >/dev/null 2>&1 & pids+=($!); done
  for i in 0 1 2; do wait_port $((50052 + i)); done
  tg llama.cpp-rpc-3-servers-loopback -ngl 99 --rpc 127.0.0.1:50052,127.0.0.1:50053,127.0.0.1:50054
  echo "llama.cpp RPC, 3 rpc-servers, +$DELAY_MS ms per link..." >&2
  for i in 0 1 2; do
    python3 deploy/delay_proxy.py --listen 127.0.0.1:$((51052 + i)) --target 127.0.0.1:$((50052 + i)) --delay-ms "$DELAY_MS" >/dev/null & pids+=($!)
  done
  for i in 0 1 2; do wait_port $((51052 + i)); done
  tg "llama.cpp-rpc-3-servers-${DELAY_MS}ms" -ngl 99 --rpc 127.0.0.1:51052,127.0.0.1:51053,127.0.0.1:51054
  echo "llama-server, 16 parallel slots..." >&2
  "$LB/llama-server" -m "$MODEL" -t "$THREADS" -np 16 -c 8192 --host 127.0.0.1 --port 8090 >/dev/null 2>&1 & pids+=($!)
  for _ in $(seq 1 300); do curl -fs http://127.0.0.1:8090/health >/dev/null 2>&1 && break; sleep 0.2; done
  for c in "${CONC[@]}"; do
    python3 bench/llamaserver_load.py --url http://127.0.0.1:8090 --streams "$c" --max-tokens "$MAX_TOKENS" --label llama-server >> "$out/all.jsonl"
  done
fi

python3 - "$out/all.jsonl" "$DELAY_MS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
delay = sys.argv[2]
print("| target | streams | tok/s | p50 ms/tok | p99 ms/tok | TTFT p50 ms | hops/tok | Forward B/tok |")
print("|---|---|---|---|---|---|---|---|")
def cell(v, fmt):
    return "–" if v is None else format(v, fmt)  # a column a tool cannot measure shows "–", never 0
for r in rows:
    print(f"| {r['target']} | {r['streams']} | {r['tokens_per_s']:.1f} | {cell(r['token_latency_p50_ms'], '.1f')} | "
          f"{cell(r['token_latency_p99_ms'], '.1f')} | {cell(r['first_token_p50_ms'], '.0f')} | {cell(r['hops_per_token'], '.2f')} | "
          f"{cell(r['wire_bytes_per_token'], '.0f')} |")
by = {(r["target"], r["streams"]): r["tokens_per_s"] for r in rows}
def ratio(what, a, b, target):
    if a in by and b in by:
        print(f"{what}: {by[a] / by[b]:.2f} (target {target})")
print()
ratio("loopback cluster / in-process, 1 stream", ("radial-3-workers-loopback", 1), ("radial-in-process", 1), ">= 0.85")
ratio("loopback cluster 16 streams / 1 stream", ("radial-3-workers-loopback", 16), ("radial-3-workers-loopback", 1), ">= 4")
ratio("loopback cluster 16 streams / llama-server 16 streams", ("radial-3-workers-loopback", 16), ("llama-server", 16), "> 1")
ratio(f"netns cluster +{delay} ms / llama.cpp RPC +{delay} ms, 3 hosts", (f"radial-3-workers-netns-{delay}ms", 1),
      (f"llama.cpp-rpc-3-servers-{delay}ms", 1), "> 1")
PY
