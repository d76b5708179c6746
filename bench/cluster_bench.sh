#!/usr/bin/env bash
# Side by side in one run: the in-process engine and a 3-worker loopback cluster on the same model, threads and
# workload (`radial bench`: every stream generates MAX_TOKENS greedy tokens, end-of-generation ignored).
#   bench/cluster_bench.sh [MODEL] [THREADS] [MAX_TOKENS] [CONCURRENCY...]
# Prints one table and the ratios the distributed issue asks for. Needs a release build (make release).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${2:-2}
MAX_TOKENS=${3:-64}
shift $(( $# > 3 ? 3 : $# )) || true
CONC=("$@"); [ ${#CONC[@]} -eq 0 ] && CONC=(1 4 16)
BIN=.build/release
for b in radial radial-worker radial-coordinator; do [ -x "$BIN/$b" ] || { echo "build first: make release" >&2; exit 1; }; done

out=$(mktemp -d)
export RADIAL_RUN_DIR="$out/cluster"
trap 'deploy/local-cluster.sh down >/dev/null 2>&1 || true' EXIT

echo "in-process engine ($THREADS threads)..." >&2
"$BIN/radial" bench --model "$MODEL" --threads "$THREADS" --max-tokens "$MAX_TOKENS" --concurrency "${CONC[@]}" \
  --label in-process --json > "$out/inproc.jsonl"
echo "3-worker loopback cluster ($THREADS threads per process)..." >&2
deploy/local-cluster.sh up --model "$MODEL" --threads "$THREADS" --port 7300 >&2
"$BIN/radial" bench --coordinator 127.0.0.1:7300 --max-tokens "$MAX_TOKENS" --concurrency "${CONC[@]}" \
  --label loopback-3-workers --json > "$out/cluster.jsonl"
"$BIN/radial" status --coordinator 127.0.0.1:7300 >&2
deploy/local-cluster.sh down >&2

python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
rows = [json.loads(l) for f in ("inproc.jsonl", "cluster.jsonl") for l in open(f"{d}/{f}")]
print(f"| target | streams | tok/s | p50 ms/tok | p99 ms/tok | TTFT p50 ms | hops/tok | wire B/tok |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['target']} | {r['streams']} | {r['tokens_per_s']:.1f} | {r['token_latency_p50_ms']:.1f} | "
          f"{r['token_latency_p99_ms']:.1f} | {r['first_token_p50_ms']:.0f} | {r['hops_per_token']:.2f} | {r['wire_bytes_per_token']:.0f} |")
by = {(r["target"], r["streams"]): r["tokens_per_s"] for r in rows}
c1, i1 = by.get(("loopback-3-workers", 1)), by.get(("in-process", 1))
if c1 and i1:
    print(f"\ncluster / in-process at 1 stream: {c1 / i1:.2f}x (target >= 0.85)")
c16 = by.get(("loopback-3-workers", 16))
if c16 and c1:
    print(f"cluster 16-stream aggregate / 1 stream: {c16 / c1:.2f}x (target >= 4)")
PY
