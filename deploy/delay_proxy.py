#!/usr/bin/env python3
"""A TCP proxy that adds a fixed one-way delay to each direction, preserving byte order.

This kernel has no netem, so link latency between network namespaces is emulated here: every chunk read from one
side is written to the other DELAY ms later. gRPC's HTTP/2 passes through unchanged.

  delay_proxy.py --listen 127.0.0.1:9000 --target 10.77.0.2:7101 --delay-ms 1
Prints 'listening on HOST:PORT' once bound; exits on SIGTERM.
"""
import argparse
import asyncio
import os
import signal
import time


async def pump(reader, writer, delay):
    queue = asyncio.Queue()

    async def send():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            queue.put_nowait((time.monotonic() + delay, data))
    except ConnectionError:
        pass
    queue.put_nowait((0, None))
    try:
        await sender
    except ConnectionError:
        pass


async def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--delay-ms", type=float, default=1.0)
    a = p.parse_args()
    lhost, lport = a.listen.rsplit(":", 1)
    thost, tport = a.target.rsplit(":", 1)
    delay = a.delay_ms / 1000

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(thost, int(tport))
        except OSError:
            client_writer.close()
            return
        for w in (client_writer, server_writer):
            sock = w.get_extra_info("socket")
            if sock is not None:
                import socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pump(client_reader, server_writer, delay), pump(server_reader, client_writer, delay))

    server = await asyncio.start_server(handle, lhost, int(lport))
    port = server.sockets[0].getsockname()[1]
    print(f"listening on {lhost}:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    # A proxy has nothing to drain: exit at once on SIGTERM/SIGINT, whatever connections or tasks are open (and
    # whatever signal disposition the parent passed through exec).
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: os._exit(0))
    asyncio.run(main())
