#!/usr/bin/env python3
"""A gRPC peer nobody here wrote the transport of: Python grpcio, for interop tests and the transport benchmark.

  grpcio_peer.py serve [--port 0]                 radial.Diagnostics + grpc.health.v1 server; prints 'listening on 127.0.0.1:PORT'
  grpcio_peer.py health ADDR [--service S]        Health.Check; prints the status name
  grpcio_peer.py echo ADDR --size N [--token T]   one Echo call; prints a JSON object (bytes back, status)
  grpcio_peer.py call-raw ADDR METHOD HEX          sends raw bytes to a method; prints the status code name
  grpcio_peer.py bench ADDR --sizes 2048 262144 --concurrency 1 16 --calls N   same output as `radial rpc-bench --json`

Python stubs are generated from Protos/ with grpc_tools.protoc into a cache folder on first use.
Needs: pip install grpcio grpcio-tools grpcio-health-checking
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import signal
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTOS = os.path.join(ROOT, "Protos")


def load_stubs():
    from grpc_tools import protoc
    digest = hashlib.sha256(open(os.path.join(PROTOS, "radial.proto"), "rb").read()).hexdigest()[:12]
    out = os.path.join(tempfile.gettempdir(), f"radial-py-stubs-{digest}")
    if not os.path.exists(os.path.join(out, "radial_pb2_grpc.py")):
        os.makedirs(out, exist_ok=True)
        rc = protoc.main(["protoc", f"-I{PROTOS}", f"--python_out={out}", f"--grpc_python_out={out}", "radial.proto"])
        if rc != 0:
            sys.exit(f"grpc_tools.protoc failed ({rc})")
    sys.path.insert(0, out)
    import radial_pb2, radial_pb2_grpc
    return radial_pb2, radial_pb2_grpc


def serve(args):
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    pb, pbg = load_stubs()

    class Diagnostics(pbg.DiagnosticsServicer):
        def Echo(self, request, context):
            if request.delay_ms:
                time.sleep(request.delay_ms / 1000)
            payload = b"\x5a" * request.reply_bytes if request.reply_bytes else request.payload
            return pb.EchoReply(payload=payload)

        def EchoStream(self, request, context):
            for i in range(request.stream_count):
                yield pb.EchoReply(payload=request.payload, index=i)

    opts = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=16), options=opts)
    pbg.add_DiagnosticsServicer_to_server(Diagnostics(), server)
    h = health.HealthServicer()
    h.set("", health_pb2.HealthCheckResponse.SERVING)
    h.set("radial.Diagnostics", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(h, server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


def channel(addr):
    import grpc
    return grpc.insecure_channel(addr, options=[("grpc.max_receive_message_length", 64 << 20),
                                                ("grpc.max_send_message_length", 64 << 20)])


def health_check(args):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    stub = health_pb2_grpc.HealthStub(channel(args.addr))
    try:
        r = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=10, wait_for_ready=True)
        print(health_pb2.HealthCheckResponse.ServingStatus.Name(r.status))
    except grpc.RpcError as e:
        print(e.code().name)


def echo(args):
    import grpc
    pb, pbg = load_stubs()
    stub = pbg.DiagnosticsStub(channel(args.addr))
    md = [("authorization", f"Bearer {args.token}")] if args.token else None
    payload = bytes(range(256)) * (args.size // 256) + bytes(args.size % 256)
    try:
        r = stub.Echo(pb.EchoRequest(payload=payload), timeout=10, metadata=md, wait_for_ready=True)
        print(json.dumps({"status": "OK", "bytes": len(r.payload), "equal": r.payload == payload}))
    except grpc.RpcError as e:
        print(json.dumps({"status": e.code().name, "details": e.details()}))


def call_raw(args):
    import grpc
    ch = channel(args.addr)
    fn = ch.unary_unary(args.method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        fn(bytes.fromhex(args.hex), timeout=10, wait_for_ready=True)
        print("OK")
    except grpc.RpcError as e:
        print(e.code().name, e.details(), sep="\t")


def bench(args):
    pb, pbg = load_stubs()
    stub = pbg.DiagnosticsStub(channel(args.addr))
    for size in args.sizes:
        for inflight in args.concurrency:
            req = pb.EchoRequest(payload=b"\x07" * size)

            def run(n, out):
                for _ in range(n):
                    t0 = time.perf_counter()
                    stub.Echo(req)
                    out.append(time.perf_counter() - t0)

            def measure(calls):
                lat, threads = [], []
                t0 = time.perf_counter()
                for w in range(inflight):
                    n = calls // inflight + (1 if w < calls % inflight else 0)
                    t = threading.Thread(target=run, args=(n, lat))
                    t.start()
                    threads.append(t)
                for t in threads:
                    t.join()
                return sorted(lat), time.perf_counter() - t0

            measure(max(20, args.calls // 10))
            lat, secs = measure(args.calls)
            print(json.dumps({"impl": "python-grpcio", "size_bytes": size, "in_flight": inflight, "calls": args.calls,
                              "p50_us": lat[len(lat) // 2] * 1e6, "p99_us": lat[min(len(lat) - 1, len(lat) * 99 // 100)] * 1e6,
                              "calls_per_s": args.calls / secs}), flush=True)


def main():
    # A parent that ignores or blocks SIGTERM (a test runner may) passes that on through exec: restore the default,
    # so `serve` dies when its test stops it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve"); s.add_argument("--port", type=int, default=0); s.set_defaults(fn=serve)
    s = sub.add_parser("health"); s.add_argument("addr"); s.add_argument("--service", default=""); s.set_defaults(fn=health_check)
    s = sub.add_parser("echo"); s.add_argument("addr"); s.add_argument("--size", type=int, default=2048)
    s.add_argument("--token"); s.set_defaults(fn=echo)
    s = sub.add_parser("call-raw"); s.add_argument("addr"); s.add_argument("method"); s.add_argument("hex"); s.set_defaults(fn=call_raw)
    s = sub.add_parser("bench"); s.add_argument("addr"); s.add_argument("--sizes", type=int, nargs="+", default=[2048, 262144])
    s.add_argument("--concurrency", type=int, nargs="+", default=[1, 16]); s.add_argument("--calls", type=int, default=2000)
    s.set_defaults(fn=bench)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
