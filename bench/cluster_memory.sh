#!/usr/bin/env bash
# Memory of a local cluster: each worker's RSS beside its layers' bytes in the file and its K/V in use, after a
# generation, from `radial status --json`. A worker should hold about its share of the file (no fp32 copies).
#   bench/cluster_memory.sh [MODEL] [WORKERS] [TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf}
WORKERS=${2:-3}
TOKENS=${3:-64}
[ -x .build/release/radial ] || swift build -c release
export RADIAL_RUN_DIR; RADIAL_RUN_DIR=$(mktemp -d)
deploy/local-cluster.sh up --model "$MODEL" --workers "$WORKERS" --port 7300 >/dev/null
trap 'deploy/local-cluster.sh down >/dev/null' EXIT
.build/release/radial generate --coordinator 127.0.0.1:7300 --greedy --ignore-eos --max-tokens "$TOKENS" --quiet \
  "def quicksort(items):"
.build/release/radial status --coordinator 127.0.0.1:7300 --json | tail -1 > "$RADIAL_RUN_DIR/status.json"
python3 - "$RADIAL_RUN_DIR/status.json" "$MODEL" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
mib = lambda b: b / 1048576
print(f"model {sys.argv[2]}; {len(s['workers'])} workers; after one generation")
print(f"{'worker':18}{'layers':>8}{'weights MiB':>13}{'K/V MiB':>9}{'RSS MiB':>9}{'RSS / (weights + K/V)':>23}")
for w in s["workers"]:
    wb, kv, rss = w["weight_bytes"], w["kv_used_bytes"], w["rss_bytes"]
    print(f"{w['address']:18}{w['layers']:>8}{mib(wb):13.0f}{mib(kv):9.1f}{mib(rss):9.0f}{rss / max(wb + kv, 1):23.2f}")
print(f"coordinator: weights {mib(s['coordinator_weight_bytes']):.0f} MiB, RSS {mib(s['coordinator_rss_bytes']):.0f} MiB")
PY
