#!/usr/bin/env bash
# The loopback cluster against the in-process engine at one stream, alternating ROUNDS times so this noisy VM's
# slow spells hit both (one cluster_bench.sh run measures each once; its ratio swung 0.64-0.99 between runs).
#   bench/loopback_ratio.sh [MODEL] [THREADS] [MAX_TOKENS]      env: ROUNDS=5, COORDINATOR_ARGS="--lanes 2"
# Prints each round and the median of the per-round ratios. Needs `make release`.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${2:-2}
MAX_TOKENS=${3:-64}
ROUNDS=${ROUNDS:-5}
BIN=.build/release
export RADIAL_RUN_DIR="$(mktemp -d)/cluster"
trap 'deploy/local-cluster.sh down >/dev/null 2>&1 || true' EXIT
read -r -a extra <<<"${COORDINATOR_ARGS:-}"
deploy/local-cluster.sh up --model "$MODEL" --threads "$THREADS" --port 7300 -- "${extra[@]}" >&2
rate() { python3 -c "import json,sys; print('%.1f' % json.loads(sys.stdin.read().splitlines()[-1])['tokens_per_s'])"; }
ratios=()
for r in $(seq 1 "$ROUNDS"); do
  a=$("$BIN/radial" bench --model "$MODEL" --threads "$THREADS" --max-tokens "$MAX_TOKENS" --concurrency 1 --json 2>/dev/null | rate)
  b=$("$BIN/radial" bench --coordinator 127.0.0.1:7300 --max-tokens "$MAX_TOKENS" --concurrency 1 --json 2>/dev/null | rate)
  ratio=$(python3 -c "print('%.2f' % ($b / $a))")
  ratios+=("$ratio")
  echo "round $r: in-process $a tok/s, loopback cluster $b tok/s, ratio $ratio"
done
"$BIN/radial" status --coordinator 127.0.0.1:7300 >&2
python3 -c "import statistics, sys; r = [float(x) for x in sys.argv[1:]]; print('median ratio %.2f (range %.2f-%.2f, %d rounds; target >= 0.85)' % (statistics.median(r), min(r), max(r), len(r)))" "${ratios[@]}"
