#!/usr/bin/env bash
# Side by side on the same GGUF and thread count: Radial's in-process engine vs llama.cpp (llama-cpp-python).
# Alternates the two engines ROUNDS times and reports medians and ratios (this machine is noisy).
#   bench/engine_vs_llamacpp.sh [MODEL] [THREADS] [ROUNDS]
# RADIAL_ACTIVATIONS=q8 measures Radial's int8-activation arithmetic (llama.cpp's) instead of f32.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${2:-2}
ROUNDS=${3:-3}

python3 -c "import llama_cpp" 2>/dev/null || {
  echo "installing llama-cpp-python 0.3.36 (builds llama.cpp from source, ~5-9 minutes)" >&2
  CMAKE_BUILD_PARALLEL_LEVEL=2 python3 -m pip install --quiet llama-cpp-python==0.3.36
}
[ -x .build/release/radial ] || swift build -c release --product radial

out=$(mktemp -d)
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  .build/release/radial engine-bench --model "$MODEL" --threads "$THREADS" --json | tail -1 > "$out/radial.$r.json"
  python3 bench/llamacpp_bench.py --model "$MODEL" --threads "$THREADS" --json 2>/dev/null | tail -1 > "$out/llama.$r.json"
done

python3 - "$out" "$ROUNDS" <<'PY'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
R = [json.load(open(f"{d}/radial.{i}.json")) for i in range(1, n + 1)]
L = [json.load(open(f"{d}/llama.{i}.json")) for i in range(1, n + 1)]
med = lambda rows, k: statistics.median(r[k] for r in rows)
rd, ld = med(R, "decode_tokens_per_s"), med(L, "decode_tokens_per_s")
rp, lp = med(R, "prefill_tokens_per_s"), med(L, "prefill_tokens_per_s")
rb = med(R, "batch_aggregate_tokens_per_s")
print(f"threads {R[0]['threads']}, radial activations {R[0].get('activations', 'f32')}, {n} alternating rounds, medians (tokens/s)")
print(f"{'':34}{'radial':>10}{'llama.cpp':>11}{'ratio':>8}  target")
print(f"{'decode, batch 1, 128 tokens':34}{rd:10.1f}{ld:11.1f}{rd/ld:8.2f}  >= 0.5")
print(f"{'prefill, 180-token prompt':34}{rp:10.1f}{lp:11.1f}{rp/lp:8.2f}  >= 1.0")
print(f"{'decode, 8 sequences, aggregate':34}{rb:10.1f}{'':>11}{rb/rd:8.2f}  >= 2.5 (vs radial batch 1)")
print(f"{'peak RSS (MB)':34}{med(R, 'peak_rss_mb'):10.0f}{med(L, 'peak_rss_mb'):11.0f}")
print(json.dumps({"radial_decode": rd, "llama_decode": ld, "radial_prefill": rp, "llama_prefill": lp,
                  "radial_batch8": rb, "decode_ratio": rd / ld, "prefill_ratio": rp / lp, "batch8_speedup": rb / rd}))
PY
