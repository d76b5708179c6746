#!/usr/bin/env bash
# A Radial cluster on loopback: N workers (even layer slices) and a coordinator, as background processes.
#   deploy/local-cluster.sh up     [--model PATH] [--workers N | --ranges 0-13,14-16,17-27] [--port P] [--bin DIR]
#                                  [--threads T] [--router FILE] [-- COORDINATOR FLAGS...]
#       --ranges gives each worker its layers (one worker per range) instead of N even slices
#       --router gives every process the same router; flags after -- go to the coordinator (e.g. --skip-rate 0.1)
#   deploy/local-cluster.sh down   stop every process (SIGTERM, then SIGKILL after 20 s)
#   deploy/local-cluster.sh status pids, ports, and `radial status`
# The coordinator listens on 127.0.0.1:P (default 7100), worker i on P+1+i. State and logs: $RADIAL_RUN_DIR
# (default .cluster/). Processes run from --bin (default .build/release).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
run_dir="${RADIAL_RUN_DIR:-$root/.cluster}"
model="$root/models/SmolLM2-135M-Instruct.Q4_1.gguf"
workers=3
port=7100
bin="$root/.build/release"
threads="${RADIAL_THREADS:-}"
router=""
coordinator_args=()
ranges=()

die() { echo "local-cluster: $*" >&2; exit 1; }

cmd="${1:-}"; shift || true
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --ranges) IFS=, read -r -a ranges <<<"$2"; workers=${#ranges[@]}; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --router) router="$2"; shift 2 ;;
    --) shift; coordinator_args=("$@"); break ;;
    *) die "unknown option $1 (see the comment at the top of $0)" ;;
  esac
done

# Waits until a process's log says "listening on"; fails if it exits first.
wait_listening() {
  local name="$1" pid="$2" log="$3"
  for _ in $(seq 1 600); do
    if grep -q "^listening on " "$log" 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "local-cluster: $name exited before it was ready; its log ($log.err):" >&2
      tail -n 20 "$log.err" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  die "$name did not start within 60 s (log: $log.err)"
}

down() {
  [ -d "$run_dir" ] || return 0
  local pids=()
  for f in "$run_dir"/*.pid; do [ -e "$f" ] && pids+=("$(cat "$f")"); done
  [ ${#pids[@]} -eq 0 ] && return 0
  # Coordinator first, so no request is in flight when the workers go.
  if [ -e "$run_dir/coordinator.pid" ]; then
    local c; c="$(cat "$run_dir/coordinator.pid")"
    kill -TERM "$c" 2>/dev/null || true
    for _ in $(seq 1 200); do kill -0 "$c" 2>/dev/null || break; sleep 0.1; done
  fi
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 200); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null && echo "local-cluster: killed $p (did not stop on SIGTERM)" >&2; done
  rm -f "$run_dir"/*.pid
  echo "local-cluster: stopped"
}

up() {
  [ -f "$model" ] || die "model not found: $model (run scripts/setup.sh model)"
  for b in radial-worker radial-coordinator; do [ -x "$bin/$b" ] || die "$bin/$b not built (swift build -c release)"; done
  if ls "$run_dir"/*.pid >/dev/null 2>&1; then die "a cluster is already running from $run_dir (run: $0 down)"; fi
  mkdir -p "$run_dir"
  local thread_args=()
  [ -n "$threads" ] && thread_args=(--threads "$threads")
  local router_args=()
  if [ -n "$router" ]; then
    [ -f "$router" ] || die "router not found: $router (make one with: radial train-router)"
    router_args=(--router "$router")
  fi
  local addrs=()
  for i in $(seq 0 $((workers - 1))); do
    local p=$((port + 1 + i)) log="$run_dir/worker$i.log"
    local slice=(--shard "$i/$workers")
    [ ${#ranges[@]} -gt 0 ] && slice=(--layers "${ranges[$i]}")
    "$bin/radial-worker" --model "$model" "${slice[@]}" --listen "127.0.0.1:$p" "${thread_args[@]}" "${router_args[@]}" \
      >"$log" 2>"$log.err" &
    echo $! >"$run_dir/worker$i.pid"
    addrs+=("127.0.0.1:$p")
  done
  for i in $(seq 0 $((workers - 1))); do
    wait_listening "worker $i" "$(cat "$run_dir/worker$i.pid")" "$run_dir/worker$i.log" || { down; exit 1; }
  done
  local list; list="$(IFS=,; echo "${addrs[*]}")"
  "$bin/radial-coordinator" --model "$model" --workers "$list" --listen "127.0.0.1:$port" "${thread_args[@]}" "${router_args[@]}" "${coordinator_args[@]}" \
    >"$run_dir/coordinator.log" 2>"$run_dir/coordinator.log.err" &
  echo $! >"$run_dir/coordinator.pid"
  wait_listening coordinator "$(cat "$run_dir/coordinator.pid")" "$run_dir/coordinator.log" || { down; exit 1; }
  echo "local-cluster: coordinator 127.0.0.1:$port, workers $list (logs in $run_dir)"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  status)
    for f in "$run_dir"/*.pid; do [ -e "$f" ] && echo "$(basename "$f" .pid): pid $(cat "$f")"; done
    "$bin/radial" status --coordinator "127.0.0.1:$port" ;;
  *) die "usage: $0 up|down|status [options]" ;;
esac
