#!/usr/bin/env python3
"""How fast a worker rebuilds lost sessions (failover), by its thread count: the compute behind the replica-kill
stall of bench/chaos_bench.py, measured alone on an otherwise idle machine.

Starts one radial-worker per thread count on the first third of the model's layers (as a replica in the chaos
bench holds), sends it one RestoreSession of SESSIONS sessions x ROWS positions packed into 64-row batches (the
coordinator's packing), the same request each time, and reports the best of REPEATS: rows per second and the time
for the whole request.

    python3 bench/restore_bench.py [--model M] [--sessions 16] [--rows 27] [--threads 1 2] [--repeats 3] [--json]
"""
import argparse, json, os, random, struct, subprocess, sys, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "Tests", "interop"))
from grpcio_peer import load_stubs, channel  # noqa: E402  (generated stubs, one channel helper)


def info(pb, pbg, addr):
    stub = pbg.WorkerStub(channel(addr))
    for _ in range(300):
        try:
            return stub.Info(pb.InfoRequest(handshake=pb.Handshake(protocol_version=3)), timeout=2)
        except Exception:
            time.sleep(0.1)
    sys.exit(f"worker {addr} never answered Info")


def request(pb, handshake, dim, sessions, rows, limit=64):
    """Every session's rows in order, sessions packed into batches of at most `limit` rows."""
    rng = random.Random(7)
    entries, hidden, groups, size = [], bytearray(), [], 0
    for s in range(sessions):
        if size + rows > limit:
            groups.append(size)
            size = 0
        for p in range(rows):
            entries.append(pb.TokenEntry(session_id=1000 + s, position=p, all_layers=True))
            hidden += struct.pack(f"<{dim}f", *(rng.gauss(0, 1) for _ in range(dim)))
        size += rows
    groups.append(size)
    tensor = pb.Tensor(dtype=pb.DTYPE_F32, shape=[len(entries), dim], data=bytes(hidden))
    return pb.RestoreSessionRequest(handshake=handshake, history=entries, hidden=tensor, group_sizes=groups)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(REPO, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--layers", default="0-9")
    ap.add_argument("--sessions", type=int, default=16)
    ap.add_argument("--rows", type=int, default=27)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(REPO, ".build/release"))
    ap.add_argument("--port", type=int, default=7490)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    pb, pbg = load_stubs()
    results = []
    for threads in args.threads:
        addr = f"127.0.0.1:{args.port}"
        worker = subprocess.Popen([os.path.join(args.bin, "radial-worker"), "--model", args.model, "--layers", args.layers,
                                   "--listen", addr, "--threads", str(threads)],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            worker.stdout.readline()
            i = info(pb, pbg, addr)
            req = request(pb, i.handshake, i.hidden_size, args.sessions, args.rows)
            stub = pbg.WorkerStub(channel(addr))
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                stub.RestoreSession(req, timeout=600)
                best = min(best, time.perf_counter() - t0)
            n = args.sessions * args.rows
            results.append({"threads": threads, "sessions": args.sessions, "rows": n, "seconds": best, "rows_per_s": n / best})
        finally:
            worker.terminate()
            worker.wait()
    if args.json:
        print(json.dumps(results))
        return
    print(f"{'threads':>8}{'sessions':>10}{'rows':>7}{'seconds':>10}{'rows/s':>9}")
    for r in results:
        print(f"{r['threads']:>8}{r['sessions']:>10}{r['rows']:>7}{r['seconds']:>10.3f}{r['rows_per_s']:>9.0f}")


if __name__ == "__main__":
    main()
