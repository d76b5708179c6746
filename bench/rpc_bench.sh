#!/usr/bin/env bash
# Transport benchmark, side by side in one run: unary Echo round trips at 2 KiB and 256 KiB, 1 and 16 in flight,
# for raw gRPC C core (bench/c_core_echo.c, sequential only), Radial's Swift runtime, and Python grpcio.
# Needs: make release (or swift build -c release --product radial), gcc, pip install grpcio grpcio-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${CALLS:-2000}
mkdir -p .build/bench
gcc -O2 -o .build/bench/c_core_echo bench/c_core_echo.c -lgrpc -lgpr
radial=.build/release/radial
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
tmp=$(mktemp -d)
# Servers start here, not inside $(...): a background child there would hold the substitution open, and its pid
# would not reach this shell's cleanup.
.build/bench/c_core_echo server 0 > "$tmp/c" 2>/dev/null & pids+=($!)
$radial serve-echo > "$tmp/s" 2>/dev/null & pids+=($!)
python3 Tests/interop/grpcio_peer.py serve > "$tmp/p" 2>/dev/null & pids+=($!)
addr() { for _ in $(seq 1 100); do a=$(sed -n 's/listening on //p' "$1"); [ -n "$a" ] && { echo "$a"; return; }; sleep 0.1; done; echo "no address in $1" >&2; exit 1; }
c_addr=$(addr "$tmp/c"); s_addr=$(addr "$tmp/s"); p_addr=$(addr "$tmp/p")
for size in 2048 262144; do
  echo "== $size bytes, 1 in flight"
  echo "c-core   -> c-core : $(.build/bench/c_core_echo client "$c_addr" $size $calls)"
  echo "swift    -> swift  : $($radial rpc-bench "$s_addr" --sizes $size --concurrency 1 --calls $calls --json)"
  echo "grpcio   -> grpcio : $(python3 Tests/interop/grpcio_peer.py bench "$p_addr" --sizes $size --concurrency 1 --calls $calls)"
  echo "== $size bytes, 16 in flight"
  echo "swift    -> swift  : $($radial rpc-bench "$s_addr" --sizes $size --concurrency 16 --calls $calls --json)"
  echo "grpcio   -> grpcio : $(python3 Tests/interop/grpcio_peer.py bench "$p_addr" --sizes $size --concurrency 16 --calls $calls)"
done
