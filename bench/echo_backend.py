"""A tiny identity-echoing HTTP/1.1 backend, used only when nginx is missing.

``python -m bench.echo_backend PORT [PORT ...]``: the server on the i-th port
answers every request with ``200 "backend-<i> <request-target>"``, keep-alive,
exactly as the nginx backend (bench/nginx.py) does. It assumes bodiless
requests (the benchmark sends only GETs). Slower than nginx, so the "direct"
baseline of the same run shows its ceiling.
"""

from __future__ import annotations

import asyncio
import sys


class _Echo(asyncio.Protocol):
    def __init__(self, ident: int):
        self.ident = ident
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out = []
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end == -1:
                break
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            line = head.split(b"\r\n", 1)[0].split(b" ")
            target = line[1] if len(line) > 1 else b"/"
            body = b"backend-%d %s\n" % (self.ident, target)
            out.append(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
        if out:
            self.transport.write(b"".join(out))


async def _serve(ports: list[int]) -> None:
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(lambda i=i: _Echo(i), "127.0.0.1", port, backlog=4096)
        for i, port in enumerate(ports)
    ]
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main() -> None:
    ports = [int(p) for p in sys.argv[1:]]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(ports))


if __name__ == "__main__":
    main()
