#!/usr/bin/env bash
# Radial's Swift runtime against raw gRPC C core, sequential unary Echo, alternating ROUNDS times so this noisy
# VM's slow and fast spells hit every pairing (in an order that rotates) (one rpc_bench.sh run measures each once; its 2 KiB ratio swung
# 1.07-1.44x between runs). Each round runs, one after the other at each size:
#   C client -> C server, Swift client -> Swift server, C client -> Swift server, Swift client -> C server.
#   bench/rpc_ratio.sh          env: ROUNDS=8, CALLS=1000, SIZES="2048 262144"
# Prints each round's p50s and, per size, the median p50 of each pairing and the median of the per-round
# Swift/C ratios (the issue's bar: Swift -> Swift within 1.1x of C -> C). Needs `make release` and gcc.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-8}
CALLS=${CALLS:-1000}
SIZES=${SIZES:-2048 262144}
mkdir -p .build/bench
gcc -O2 -o .build/bench/c_core_echo bench/c_core_echo.c -lgrpc -lgpr
radial=.build/release/radial
pids=()
tmp=$(mktemp -d)
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT
.build/bench/c_core_echo server 0 > "$tmp/c" 2>/dev/null & pids+=($!)
$radial serve-echo > "$tmp/s" 2>/dev/null & pids+=($!)
addr() { for _ in $(seq 1 100); do a=$(sed -n 's/listening on //p' "$1"); [ -n "$a" ] && { echo "$a"; return; }; sleep 0.1; done; echo "no address in $1" >&2; exit 1; }
c_addr=$(addr "$tmp/c"); s_addr=$(addr "$tmp/s")
p50() { python3 -c "import json,sys; print('%.1f' % json.loads(sys.stdin.read().splitlines()[-1])['p50_us'])"; }
c_client() { .build/bench/c_core_echo client "$1" "$2" "$CALLS" | p50; }
swift_client() { $radial rpc-bench "$1" --sizes "$2" --concurrency 1 --calls "$CALLS" --json | p50; }
for size in $SIZES; do
  : > "$tmp/rounds-$size"
  for r in $(seq 1 "$ROUNDS"); do
    # The order rotates each round, so no pairing always follows (or precedes) the same one.
    for k in $(seq 0 3); do
      case $(( (k + r) % 4 )) in
        0) cc=$(c_client "$c_addr" "$size") ;;
        1) ss=$(swift_client "$s_addr" "$size") ;;
        2) cs=$(c_client "$s_addr" "$size") ;;
        3) sc=$(swift_client "$c_addr" "$size") ;;
      esac
    done
    echo "$cc $ss $cs $sc" >> "$tmp/rounds-$size"
    echo "$size bytes, round $r: C->C $cc us, Swift->Swift $ss us, C->Swift $cs us, Swift->C $sc us"
  done
  python3 - "$size" "$tmp/rounds-$size" <<'EOF'
import statistics, sys
size, rows = sys.argv[1], [list(map(float, l.split())) for l in open(sys.argv[2])]
med = [statistics.median(col) for col in zip(*rows)]
ratio = [r[1] / r[0] for r in rows]
print(f"{size} bytes, median p50 over {len(rows)} rounds: C->C {med[0]:.0f} us, Swift->Swift {med[1]:.0f} us, "
      f"C->Swift {med[2]:.0f} us, Swift->C {med[3]:.0f} us")
print(f"{size} bytes, Swift->Swift / C->C per round: median {statistics.median(ratio):.2f}x "
      f"(range {min(ratio):.2f}-{max(ratio):.2f}x; target <= 1.10x)")
EOF
done
