#!/usr/bin/env python3
"""Chaos benchmark: a cluster of 3 layer ranges x 2 replicas on loopback serves 64 concurrent streams; mid-run one
replica is killed (-9) and restarted, then the coordinator is killed (-9) and restarted. Every stream is a
`radial generate` process (it waits for the coordinator and resumes a broken stream). Reports streams completed
and failed, whether every output equals the fault-free run, per-token latency p50/p99 and the longest stall.

    python3 bench/chaos_bench.py [--model M] [--streams 64] [--tokens 64] [--bin .build/release] [--json]
"""
import argparse, json, os, signal, statistics, subprocess, sys, tempfile, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(cmd, log):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
    line = p.stdout.readline()
    if not line.startswith("listening on "):
        raise SystemExit(f"{cmd[0]} did not start: {line!r} (see {log})")
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(REPO, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--bin", default=os.path.join(REPO, ".build/release"))
    ap.add_argument("--layers", default="0-9,10-19,20-29")
    ap.add_argument("--port", type=int, default=7400)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    run = tempfile.mkdtemp(prefix="radial-chaos-")
    ranges = a.layers.split(",")
    worker_args = {}
    workers = {}
    for i, r in enumerate(ranges * 2):  # two replicas per range
        port = a.port + 1 + i
        worker_args[port] = [f"{a.bin}/radial-worker", "--model", a.model, "--layers", r, "--listen", f"127.0.0.1:{port}", "--threads", "1"]
        workers[port] = start(worker_args[port], f"{run}/worker{port}.log")
    coordinator_args = [f"{a.bin}/radial-coordinator", "--model", a.model, "--listen", f"127.0.0.1:{a.port}", "--threads", "2",
                        "--workers", ",".join(f"127.0.0.1:{p}" for p in worker_args), "--max-sessions", str(a.streams),
                        "--failover-wait", "30", "--connect-timeout", "30"]
    coordinator = start(coordinator_args, f"{run}/coordinator.log")
    target = f"127.0.0.1:{a.port}"
    prompts = [[1, 504 + (i * 37) % 4000, 279, 3465 + (i * 11) % 900, 314] for i in range(a.streams)]

    def status(key):
        out = subprocess.run([f"{a.bin}/radial", "status", "--coordinator", target, "--json"], capture_output=True, text=True)
        try:
            return json.loads(out.stdout.strip().splitlines()[-1])[key]
        except Exception:
            return None

    def tokens_generated():
        return status("tokens_generated")

    fault_times = []

    def run_streams(faults):
        procs = []
        started = time.time()
        for p in prompts:
            procs.append(subprocess.Popen([f"{a.bin}/radial", "generate", "--coordinator", target, "--greedy", "--ignore-eos",
                                           "--max-tokens", str(a.tokens), "--prompt-ids", ",".join(map(str, p)), "--json",
                                           "--quiet", "--connect-timeout", "60"],
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        base = tokens_generated() or 0
        total = a.streams * a.tokens
        for at, action in faults:
            while True:
                g = tokens_generated()
                if g is not None and g - base >= at * total:
                    break
                if all(p.poll() is not None for p in procs):
                    break
                time.sleep(0.05)
            fault_times.append(time.time() - started)
            action()
            fault_times.append(time.time() - started)
        results = []
        for p in procs:
            out, _ = p.communicate()
            try:
                results.append(json.loads(out.strip().splitlines()[-1]) if p.returncode == 0 else None)
            except Exception:
                results.append(None)
        return results

    def kill_replica():
        port = a.port + 1  # the first replica of the first range
        workers[port].send_signal(signal.SIGKILL)
        workers[port].wait()
        time.sleep(1)
        workers[port] = start(worker_args[port], f"{run}/worker{port}.restart.log")

    def kill_coordinator():
        nonlocal coordinator
        coordinator.send_signal(signal.SIGKILL)
        coordinator.wait()
        coordinator = start(coordinator_args, f"{run}/coordinator.restart.log")

    try:
        clean = run_streams([])
        t0 = time.time()
        chaos = run_streams([(1 / 3, kill_replica), (2 / 3, kill_coordinator)])
        wall = time.time() - t0
        adopted = status("sessions_adopted")
    finally:
        for p in list(workers.values()) + [coordinator]:
            p.send_signal(signal.SIGTERM)
        for p in list(workers.values()) + [coordinator]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()

    done = [r for r in chaos if r is not None]
    same = sum(1 for c, r in zip(clean, chaos) if c is not None and r is not None and c["generated_ids"] == r["generated_ids"])
    gaps, stalls = [], {"replica": 0.0, "coordinator": 0.0}
    # fault_times: replica kill start/end (restarted), coordinator kill start/end; a gap is charged to the fault whose
    # window it overlaps (stream clocks start within a few ms of the run's).
    windows = {"replica": (fault_times[0] * 1000, fault_times[2] * 1000 if len(fault_times) > 2 else 1e12),
               "coordinator": (fault_times[2] * 1000 if len(fault_times) > 2 else 1e12, 1e12)}
    for r in done:
        ms = [t["ms"] for t in r["tokens"]]
        for a_, b in zip(ms, ms[1:]):
            gaps.append(b - a_)
            for k, (lo, hi) in windows.items():
                if b >= lo and a_ < hi:
                    stalls[k] = max(stalls[k], b - a_)
    gaps.sort()
    q = lambda f: gaps[min(len(gaps) - 1, int(f * len(gaps)))] if gaps else 0
    summary = {"streams": a.streams, "tokens_per_stream": a.tokens, "completed": len(done), "failed": a.streams - len(done),
               "identical_to_fault_free": same, "token_gap_p50_ms": q(0.5), "token_gap_p99_ms": q(0.99),
               "longest_stall_ms": gaps[-1] if gaps else 0,
               "longest_stall_replica_kill_ms": stalls["replica"], "longest_stall_coordinator_kill_ms": stalls["coordinator"],
               "sessions_adopted_after_restart": adopted,
               "fault_times_s": [round(t, 2) for t in fault_times], "wall_seconds": wall, "logs": run}
    if a.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            print(f"{k:26} {v:.1f}" if isinstance(v, float) else f"{k:26} {v}")


if __name__ == "__main__":
    main()
