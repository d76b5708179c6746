#!/usr/bin/env bash
# Dynamic depth, measured: quality against compute in-process, and hops and speed across processes.
#   bench/routing_bench.sh [MODEL] [ROUTER]      env: RATES="0.1 0.2 0.3" WORKERS=10 DELAY_MS=2 TOKENS=48 CONC="1 4"
#                                                     NETNS=1 EVAL_TOKENS=2048 OUT=out/routing HELDOUT=FILE
#                                                     BUDGETS="2 5" (quality budgets, percent: --max-quality-loss points)
#                                                     COMPARE="R2 ..." (more routers for the eval table) EVAL=0 skips it
#                                                     RANGES=0-13,14-16,17-27 (workers' layers instead of WORKERS even
#                                                     slices: a worker holding a router's run is a hop it can skip)
# 1. `radial eval` on held-out fortunes: dense, the router at each rate, static pruning at equal layers, the oracle
#    (perplexity, layers skipped, visits per token for WORKERS workers, greedy agreement, batch-1 tok/s), plus the
#    SVG curve in $OUT/curve.svg.
# 2. A WORKERS-worker cluster (the layers split evenly) on loopback, then across network namespaces with DELAY_MS
#    added one-way on every coordinator-worker link (root only): dense, then the router at each rate, each with
#    `radial bench` at CONC streams; hops per token from Status.
# Trains a router first (data/fortunes-train.txt, 4096 tokens) when ROUTER is not given. Needs `make release` and
# `scripts/setup.sh corpus`.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
OUT=${OUT:-out/routing}
ROUTER=${2:-$OUT/router.rdrt}
read -r -a RATES <<<"${RATES-0.1 0.2 0.3}"    # RATES="" for none
read -r -a CONC <<<"${CONC:-1 4}"
read -r -a BUDGETS <<<"${BUDGETS:-}"
read -r -a COMPARE <<<"${COMPARE:-}"
HELDOUT=${HELDOUT:-data/fortunes-heldout.txt}
RANGES=${RANGES:-}
if [ -n "$RANGES" ]; then WORKERS=$(awk -F, '{print NF}' <<<"$RANGES"); slices=(--ranges "$RANGES"); else WORKERS=${WORKERS:-10}; slices=(--workers "$WORKERS"); fi
DELAY_MS=${DELAY_MS:-2}
TOKENS=${TOKENS:-48}
EVAL_TOKENS=${EVAL_TOKENS:-2048}
BIN=.build/release
for b in radial radial-worker radial-coordinator; do [ -x "$BIN/$b" ] || { echo "build first: make release" >&2; exit 1; }; done
[ -s data/fortunes-heldout.txt ] || scripts/setup.sh corpus
mkdir -p "$OUT"
rm -f "$OUT/cluster.jsonl"

if [ ! -f "$ROUTER" ]; then
  echo "training a router -> $ROUTER" >&2
  "$BIN/radial" train-router --model "$MODEL" --text data/fortunes-train.txt --max-tokens 4096 --out "$ROUTER" >&2
fi

rates_csv=$(IFS=,; echo "${RATES[*]}")
if [ "${EVAL:-1}" = 1 ]; then
  echo "in-process evaluation on held-out text..." >&2
  extra=()
  for r in "${COMPARE[@]}"; do extra+=(--router "$r"); done
  [ ${#BUDGETS[@]} -gt 0 ] && extra+=(--max-quality-losses "$(IFS=,; echo "${BUDGETS[*]}")")
  "$BIN/radial" eval --model "$MODEL" --text "$HELDOUT" --max-tokens "$EVAL_TOKENS" --router "$ROUTER" "${extra[@]}" \
    --skip-rates "${rates_csv:-none}" --workers "$WORKERS" --plot "$OUT/curve.svg" --json | tee "$OUT/eval.txt" >&2
  tail -n 1 "$OUT/eval.txt" > "$OUT/eval.json"
else
  echo '{"points": [], "comparisons": []}' > "$OUT/eval.json"
fi

export RADIAL_RUN_DIR="$OUT/cluster-run"
cleanup() {
  deploy/local-cluster.sh down >/dev/null 2>&1 || true
  [ "${NETNS:-1}" = 1 ] && [ "$(id -u)" -eq 0 ] && RADIAL_RUN_DIR="$OUT/netns-run" deploy/netns-cluster.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT

run_point() {  # network label coordinator-address [client flags...]
  local net="$1" label="$2" addr="$3"; shift 3
  for c in "${CONC[@]}"; do
    "$BIN/radial" bench --coordinator "$addr" "$@" --max-tokens "$TOKENS" --concurrency "$c" --label "$label" --json \
      | python3 -c "
import json, sys
for line in sys.stdin:
    r = json.loads(line); r['network'] = '$net'; r['point'] = '$label'; print(json.dumps(r))" >> "$OUT/cluster.jsonl"
  done
  "$BIN/radial" status --coordinator "$addr" "$@" --json | python3 -c "
import json, sys
s = json.loads(sys.stdin.read().strip().splitlines()[-1])
print(json.dumps({'network': '$net', 'point': '$label', 'status': True, 'hops_per_token': s['hops_per_token'],
                  'hops_saved_per_token': s['hops_saved_per_token'], 'layer_skip_rate': s['layer_skip_rate']}))" >> "$OUT/cluster.jsonl"
}

points=("dense")
for r in "${RATES[@]}"; do points+=("$r"); done
for b in "${BUDGETS[@]}"; do points+=("q$b"); done
for p in "${points[@]}"; do
  case "$p" in
    dense) args=(); label=dense ;;
    q*) args=(--router "$ROUTER" -- --max-quality-loss "${p#q}"); label="router<=${p#q}%" ;;
    *) args=(--router "$ROUTER" -- --skip-rate "$p"); label="router@$p" ;;
  esac
  echo "loopback, $WORKERS workers, $label..." >&2
  deploy/local-cluster.sh up --model "$MODEL" "${slices[@]}" --port 7400 "${args[@]}" >&2
  run_point loopback "$label" 127.0.0.1:7400
  deploy/local-cluster.sh down >&2
  if [ "${NETNS:-1}" = 1 ] && [ "$(id -u)" -eq 0 ]; then
    echo "network namespaces, $WORKERS workers, +$DELAY_MS ms per link, $label..." >&2
    RADIAL_RUN_DIR="$OUT/netns-run" deploy/netns-cluster.sh up --model "$MODEL" "${slices[@]}" --delay-ms "$DELAY_MS" "${args[@]}" >&2
    # The namespace cluster listens beyond loopback, so it requires the token it wrote.
    run_point "netns+${DELAY_MS}ms" "$label" 10.77.250.2:7100 --auth-token-file "$OUT/netns-run/token"
    RADIAL_RUN_DIR="$OUT/netns-run" deploy/netns-cluster.sh down >&2
  fi
done

python3 - "$OUT/eval.json" "$OUT/cluster.jsonl" "$WORKERS" "$HELDOUT" <<'PY' | tee "$OUT/summary.md"
import json, os, sys
ev = json.load(open(sys.argv[1])); rows = [json.loads(l) for l in open(sys.argv[2])]
workers = sys.argv[3]
if ev["points"]:
    print("### Quality (in-process, %s, %d tokens, kv %s)\n" % (os.path.basename(sys.argv[4]), ev["tokens"], ev["kv_policy"]))
    print("| mode | perplexity | layers skipped | visits/token (%s workers) | greedy agreement | batch-1 tok/s |" % workers)
    print("|---|---|---|---|---|---|")
for p in ev["points"]:
    agree = "%.3f" % p["greedyAgreement"] if p.get("greedyAgreement") is not None else "-"
    tps = "%.1f" % p["decodeTokensPerSecond"] if p.get("decodeTokensPerSecond") is not None else "-"
    print(f"| {p['name']} | {p['perplexity']:.2f} | {p['skipRate']*100:.1f}% | {p['visitsPerToken']:.2f} | {agree} | {tps} |")
print()
for c in ev["comparisons"]:
    verdict = "router better" if c["router_better"] else "static better"
    print(f"- {c['router']}: {c['skip_rate']*100:.1f}% skipped, perplexity {c['router_perplexity']:.2f} vs static pruning "
          f"{c['static_perplexity_at_equal_layers']:.2f} at equal layers: {verdict}")
if "router_microseconds_per_token" in ev:
    print(f"- router cost: {ev['router_microseconds_per_token']:.1f} µs per token (every decision unit scored once)")
print("\n### Across processes (%s workers, greedy, end-of-generation ignored)\n" % workers)
print("| network | point | streams | tok/s | p50 ms/tok | hops/token | layers skipped (Status) | tok/s vs dense |")
print("|---|---|---|---|---|---|---|---|")
dense = {(r["network"], r["streams"]): r["tokens_per_s"] for r in rows if not r.get("status") and r["point"] == "dense"}
hops = {(r["network"], r["point"]): r["hops_per_token"] for r in rows if r.get("status")}
skips = {(r["network"], r["point"]): sum(r["layer_skip_rate"]) / max(len(r["layer_skip_rate"]), 1) for r in rows if r.get("status")}
for r in rows:
    if r.get("status"): continue
    base = dense.get((r["network"], r["streams"]))
    ratio = f"{r['tokens_per_s'] / base:.2f}x" if base else "-"
    print(f"| {r['network']} | {r['point']} | {r['streams']} | {r['tokens_per_s']:.1f} | {r['token_latency_p50_ms']:.1f} | "
          f"{hops.get((r['network'], r['point']), 0):.2f} | {skips.get((r['network'], r['point']), 0)*100:.1f}% | {ratio} |")
PY
