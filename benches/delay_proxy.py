#!/usr/bin/env python3
"""A TCP proxy that delays every byte by a fixed time in each direction.

benches/run.sh puts one in front of each cluster (BENCH_RTT_MS) so that the tools meet a
link with a round-trip time, as between a host and a managed service, while both servers
stay on this machine. Each direction keeps its order and its throughput: bytes are
queued with the time they arrived and written once that time plus the delay has come.

    delay_proxy.py LISTEN_PORT TARGET_PORT ONE_WAY_DELAY_MS

Listens on 127.0.0.1 only, and forwards to 127.0.0.1:TARGET_PORT. It runs until it is
killed; benches/run.sh stops it at the end of the run.
"""

import asyncio
import sys
import time


async def pump(reader, writer, delay):
    queue = asyncio.Queue()

    async def receive():
        while True:
            data = await reader.read(65536)
            await queue.put((time.monotonic() + delay, data))
            if not data:
                return

    async def send():
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(receive(), send())
    except (ConnectionError, asyncio.IncompleteReadError):
        writer.close()


async def main(listen_port, target_port, delay):
    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, server_writer, delay),
            pump(server_reader, client_writer, delay),
            return_exceptions=True,
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000.0))
