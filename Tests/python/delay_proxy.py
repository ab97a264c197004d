"""A TCP proxy that delays every chunk by a fixed time in each direction, for tests of GPS over a
slow link (the kernel here has no netem). SIGUSR1 freezes it: nothing more is forwarded, and the
connections stay open, as across a cut link.

    python3 delay_proxy.py --target HOST:PORT --delay 0.1
prints `listening on 127.0.0.1:PORT pid PID` once ready (the pid: a launcher such as a pyenv shim
may run Python as its child, and the test stops the proxy itself).
"""

import argparse
import asyncio
import os
import signal
import sys

frozen = asyncio.Event()


async def pipe(reader, writer, delay):
    queue = asyncio.Queue()

    async def read():
        loop = asyncio.get_running_loop()
        while True:
            data = await reader.read(65536)
            await queue.put((loop.time() + delay, data))
            if not data:
                return

    async def write():
        loop = asyncio.get_running_loop()
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if frozen.is_set():
                await asyncio.Event().wait()  # forever: the link is cut
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    await asyncio.gather(read(), write(), return_exceptions=True)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--delay", type=float, default=0.1)
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, server_writer, args.delay),
            pipe(server_reader, client_writer, args.delay),
            return_exceptions=True,
        )

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, frozen.set)
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]} pid {os.getpid()}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
