#!/usr/bin/env bash
# A Radial cluster across Linux network namespaces, as if each process had its own host: the coordinator in
# radial-c, worker i in radial-w<i>, one veth pair per coordinator-worker link (10.77.<i>.1 <-> 10.77.<i>.2) and
# one from this namespace to the coordinator (10.77.250.1 -> 10.77.250.2) for clients. Needs root.
#   deploy/netns-cluster.sh up   [--model PATH] [--workers N | --ranges 0-13,14-16,17-27] [--delay-ms D] [--rate-mbit R]
#                                [--bin DIR] [--threads T] [--router FILE] [-- COORDINATOR FLAGS...]
# --ranges gives each worker its layers (one worker per range) instead of N even slices.
#   deploy/netns-cluster.sh down
# --delay-ms adds D ms one-way on every coordinator-worker link (this kernel has no netem: a userspace proxy,
# deploy/delay_proxy.py, runs in the coordinator's namespace per link). --rate-mbit limits each link with tc tbf.
# Clients then use: radial generate --coordinator 10.77.250.2:7100 ...
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
run_dir="${RADIAL_RUN_DIR:-$root/.cluster-netns}"
model="$root/models/SmolLM2-135M-Instruct.Q4_1.gguf"
workers=3; ranges=(); delay=0; rate=""; bin="$root/.build/release"; threads="${RADIAL_THREADS:-2}"; router=""
coordinator_args=()
die() { echo "netns-cluster: $*" >&2; exit 1; }

cmd="${1:-}"; shift || true
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --ranges) IFS=, read -r -a ranges <<<"$2"; workers=${#ranges[@]}; shift 2 ;;
    --delay-ms) delay="$2"; shift 2 ;;
    --rate-mbit) rate="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --router) router="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2 ;;
    --) shift; coordinator_args=("$@"); break ;;
    *) die "unknown option $1" ;;
  esac
done

wait_listening() {  # name pid log
  for _ in $(seq 1 600); do
    grep -q "^listening on " "$3" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "netns-cluster: $1 exited; log:" >&2; tail -n 20 "$3.err" >&2 || true; return 1; }
    sleep 0.1
  done
  die "$1 did not start within 60 s"
}

link() {  # ns_a ns_b dev_a dev_b addr_a addr_b (ns "" = this namespace)
  ip link add "$3" type veth peer name "$4"
  [ -n "$1" ] && ip link set "$3" netns "$1"
  ip link set "$4" netns "$2"
  local ea=() eb=(ip netns exec "$2")
  [ -n "$1" ] && ea=(ip netns exec "$1")
  "${ea[@]}" ip addr add "$5/24" dev "$3"; "${ea[@]}" ip link set "$3" up
  "${eb[@]}" ip addr add "$6/24" dev "$4"; "${eb[@]}" ip link set "$4" up
  if [ -n "$rate" ]; then
    "${ea[@]}" tc qdisc add dev "$3" root tbf rate "${rate}mbit" burst 256kb latency 50ms
    "${eb[@]}" tc qdisc add dev "$4" root tbf rate "${rate}mbit" burst 256kb latency 50ms
  fi
}

down() {
  if [ -d "$run_dir" ]; then
    # Coordinator first (it lets running generations finish), then everything else at once.
    stop_pids() {
      for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
      for _ in $(seq 1 200); do
        local alive=0
        for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive -eq 0 ] && return 0
        sleep 0.1
      done
      for p in "$@"; do kill -KILL "$p" 2>/dev/null && echo "netns-cluster: killed $p (did not stop on SIGTERM)" >&2; done
      return 0
    }
    [ -e "$run_dir/coordinator.pid" ] && stop_pids "$(cat "$run_dir/coordinator.pid")"
    rm -f "$run_dir/coordinator.pid"
    local rest=()
    for f in "$run_dir"/*.pid; do [ -e "$f" ] && rest+=("$(cat "$f")"); done
    [ ${#rest[@]} -gt 0 ] && stop_pids "${rest[@]}"
    rm -f "$run_dir"/*.pid
  fi
  for ns in $(ip netns list | awk '{print $1}' | grep '^radial-' || true); do ip netns del "$ns"; done
  ip link del rc-host 2>/dev/null || true
  echo "netns-cluster: stopped"
}

up() {
  [ "$(id -u)" -eq 0 ] || die "needs root (ip netns)"
  [ -f "$model" ] || die "model not found: $model"
  ip netns list | grep -q '^radial-' && die "namespaces radial-* exist already (run: $0 down)"
  mkdir -p "$run_dir"
  ip netns add radial-c
  ip netns exec radial-c ip link set lo up
  link "" radial-c rc-host rc-coord 10.77.250.1 10.77.250.2
  local targets=() router_args=()
  if [ -n "$router" ]; then
    [ -f "$router" ] || die "router not found: $router"
    router_args=(--router "$router")
  fi
  # The processes listen on namespace addresses, not loopback: they require a bearer token. One is made for this
  # cluster (or RADIAL_AUTH_TOKEN is used) and kept in $run_dir/token for clients.
  local token="${RADIAL_AUTH_TOKEN:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
  (umask 077; printf '%s\n' "$token" >"$run_dir/token")
  for i in $(seq 0 $((workers - 1))); do
    ip netns add "radial-w$i"
    ip netns exec "radial-w$i" ip link set lo up
    link radial-c "radial-w$i" "rc-w$i" "rw$i-c" "10.77.$i.1" "10.77.$i.2"
    local log="$run_dir/worker$i.log"
    local slice=(--shard "$i/$workers")
    [ ${#ranges[@]} -gt 0 ] && slice=(--layers "${ranges[$i]}")
    ip netns exec "radial-w$i" "$bin/radial-worker" --model "$model" "${slice[@]}" --listen "10.77.$i.2:7101" \
      --auth-token-file "$run_dir/token" \
      --threads "$threads" "${router_args[@]}" >"$log" 2>"$log.err" &
    echo $! >"$run_dir/worker$i.pid"
  done
  for i in $(seq 0 $((workers - 1))); do
    wait_listening "worker $i" "$(cat "$run_dir/worker$i.pid")" "$run_dir/worker$i.log" || { down; exit 1; }
    if [ "$delay" != "0" ]; then
      local log="$run_dir/proxy$i.log"
      ip netns exec radial-c python3 "$root/deploy/delay_proxy.py" --listen "127.0.0.1:$((9000 + i))" \
        --target "10.77.$i.2:7101" --delay-ms "$delay" >"$log" 2>"$log.err" &
      echo $! >"$run_dir/proxy$i.pid"
      wait_listening "proxy $i" "$(cat "$run_dir/proxy$i.pid")" "$log" || { down; exit 1; }
      targets+=("127.0.0.1:$((9000 + i))")
    else
      targets+=("10.77.$i.2:7101")
    fi
  done
  local list; list="$(IFS=,; echo "${targets[*]}")"
  ip netns exec radial-c "$bin/radial-coordinator" --model "$model" --workers "$list" --listen 10.77.250.2:7100 \
    --auth-token-file "$run_dir/token" --worker-auth-token-file "$run_dir/token" \
    --threads "$threads" "${router_args[@]}" "${coordinator_args[@]}" >"$run_dir/coordinator.log" 2>"$run_dir/coordinator.log.err" &
  echo $! >"$run_dir/coordinator.pid"
  wait_listening coordinator "$(cat "$run_dir/coordinator.pid")" "$run_dir/coordinator.log" || { down; exit 1; }
  echo "netns-cluster: coordinator 10.77.250.2:7100 in netns radial-c; $workers workers; +${delay} ms per link${rate:+, ${rate} Mbit/s}; token in $run_dir/token (radial generate --auth-token-file $run_dir/token)"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  *) die "usage: $0 up|down [options]" ;;
esac
