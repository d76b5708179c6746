#!/usr/bin/env bash
# Side by side on the same GGUF and thread count: Radial's in-process engine vs llama.cpp (llama-cpp-python for
# prefill and batch-1 decode, llama-server -np 8 for 8 sequences). Alternates the engines ROUNDS times and
# reports medians and ratios (this machine is noisy). Both engines' decode figures are the mean over all their
# timed tokens; prefill is the best of 3 after a warm-up in both.
#   bench/engine_vs_llamacpp.sh [MODEL] [THREADS] [ROUNDS]        env: SERVER=0 skips llama-server
# RADIAL_ACTIVATIONS=q8 measures Radial's int8-activation arithmetic (llama.cpp's) instead of f32.
# llama.cpp is built once from llama-cpp-python 0.3.36's sources (bench/build_llamacpp.sh); the Python binding
# is installed without a second build and loads those libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
THREADS=${2:-2}
ROUNDS=${3:-3}

# llama.cpp's own build only when something needs it: llama-server, or a binding without its libraries.
LB=""
if [ "${SERVER:-1}" = 1 ] || ! python3 -c "import llama_cpp" 2>/dev/null; then LB=$(bench/build_llamacpp.sh); fi
if ! python3 -c "import llama_cpp" 2>/dev/null; then
  if ! LLAMA_CPP_LIB_PATH=$LB python3 -c "import llama_cpp" 2>/dev/null; then
    echo "installing llama-cpp-python 0.3.36 without its own llama.cpp build" >&2
    CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" python3 -m pip install --quiet llama-cpp-python==0.3.36
  fi
  export LLAMA_CPP_LIB_PATH=$LB
fi
[ -x .build/release/radial ] || swift build -c release --product radial

out=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; true' EXIT
if [ "${SERVER:-1}" = 1 ]; then
  "$LB/llama-server" -m "$MODEL" -t "$THREADS" -tb "$THREADS" -np 8 -c 4096 --host 127.0.0.1 --port 8091 >"$out/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 120); do curl -sf http://127.0.0.1:8091/health >/dev/null 2>&1 && break; sleep 1; done
  curl -sf http://127.0.0.1:8091/health >/dev/null || { echo "llama-server did not start: $(tail -3 "$out/server.log")" >&2; exit 1; }
fi
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  .build/release/radial engine-bench --model "$MODEL" --threads "$THREADS" --json | tail -1 > "$out/radial.$r.json"
  python3 bench/llamacpp_bench.py --model "$MODEL" --threads "$THREADS" --json 2>/dev/null | tail -1 > "$out/llama.$r.json"
  if [ -n "$server" ]; then
    python3 bench/llamaserver_batch.py --url http://127.0.0.1:8091 --sequences 8 | tail -1 > "$out/server.$r.json"
  else
    echo '{"batch_aggregate_tokens_per_s": null}' > "$out/server.$r.json"
  fi
done

python3 - "$out" "$ROUNDS" <<'PY'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
R = [json.load(open(f"{d}/radial.{i}.json")) for i in range(1, n + 1)]
L = [json.load(open(f"{d}/llama.{i}.json")) for i in range(1, n + 1)]
S = [json.load(open(f"{d}/server.{i}.json")) for i in range(1, n + 1)]
med = lambda rows, k: statistics.median(r[k] for r in rows)
rd, ld = med(R, "decode_tokens_per_s"), med(L, "decode_tokens_per_s")
rp, lp = med(R, "prefill_tokens_per_s"), med(L, "prefill_tokens_per_s")
rb = med(R, "batch_aggregate_tokens_per_s")
sb = med(S, "batch_aggregate_tokens_per_s") if S[0]["batch_aggregate_tokens_per_s"] is not None else None
print(f"threads {R[0]['threads']}, radial activations {R[0].get('activations', 'f32')}, {n} alternating rounds, medians (tokens/s)")
print(f"{'':34}{'radial':>10}{'llama.cpp':>11}{'ratio':>8}  target")
print(f"{'decode, batch 1, 128 tokens':34}{rd:10.1f}{ld:11.1f}{rd/ld:8.2f}  >= 1.0")
print(f"{'prefill, 180-token prompt':34}{rp:10.1f}{lp:11.1f}{rp/lp:8.2f}  >= 1.0")
if sb is not None:
    print(f"{'decode, 8 sequences, aggregate':34}{rb:10.1f}{sb:11.1f}{rb/sb:8.2f}  >= 1.0 (llama-server -np 8)")
else:
    print(f"{'decode, 8 sequences, aggregate':34}{rb:10.1f}{'–':>11}")
print(f"{'  (llama.cpp decode, best run)':34}{'':10}{med(L, 'decode_best_tokens_per_s'):11.1f}")
print(f"{'peak RSS (MB)':34}{med(R, 'peak_rss_mb'):10.0f}{med(L, 'peak_rss_mb'):11.0f}")
print(json.dumps({"radial_decode": rd, "llama_decode": ld, "radial_prefill": rp, "llama_prefill": lp,
                  "radial_batch8": rb, "llama_server_batch8": sb, "decode_ratio": rd / ld, "prefill_ratio": rp / lp,
                  "batch8_ratio": rb / sb if sb else None, "batch8_speedup": rb / rd}))
PY
