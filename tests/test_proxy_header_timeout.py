"""The header timeout runs from accept: a connection that never sends a request
is closed after --header-timeout, not kept until --idle-timeout.

Between keep-alive requests the idle timeout applies; once the first byte of
the next request arrives, the header timeout applies again. The plain listener's
rules are checked bytes in, bytes out (tests/protoharness.py: time moves by
``expire``); the TLS listener and the real process over loopback.
"""

from __future__ import annotations

import asyncio
import json
import time

from gateway.config import Limits
from gateway.tls import CertificateStore
from gatewayproc import GatewayProcess
from protoharness import Gateway
from proxyharness import free_port, route, table
from tlsharness import CA, start_tls_proxy, tls_client, tls_secret

LIMITS = Limits(header_timeout=0.5, idle_timeout=60.0)


async def _closed_silently(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True when the peer closes within ``timeout`` without writing a byte."""
    try:
        data = await asyncio.wait_for(reader.read(65536), timeout)
    except asyncio.TimeoutError:
        return False
    except (ConnectionError, OSError):
        return True
    assert data == b"", f"a connection that sent nothing gets no answer, got {data[:80]!r}"
    return True


async def test_a_silent_connection_is_closed_after_the_header_timeout_and_a_kept_alive_one_is_not():
    async with Gateway(None, limits=LIMITS) as gw:
        b = gw.backend("b")
        gw.server.swap(table([route()], {"ns/svc:80": (b.endpoint,)}))
        silent, kept = gw.client(), gw.client(peer=("127.0.0.1", 40001))
        kept.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await kept.response()).status == 200
        gw.advance(0.4)
        assert not silent.transport.closing, "closed before the header timeout"
        gw.advance(0.2)
        assert await silent.closed(), "a silent connection must not wait for the idle timeout"
        assert silent.written == b"", "a connection that sent nothing gets no answer"
        # Idle between requests: the idle timeout (60 s) applies, the connection stays.
        gw.advance(30)
        assert not kept.transport.closing
        kept.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await kept.response()).status == 200
        # The first byte of the next request starts its header timeout.
        kept.send(b"G")
        gw.advance(0.6)
        r = await kept.response()
        assert r.status == 408 and await kept.closed()
        assert len(b.seen) == 2


async def test_the_first_request_head_is_due_a_header_timeout_after_accept():
    async with Gateway(table([route()], {"ns/svc:80": ()}), limits=Limits(header_timeout=2.0, idle_timeout=60.0)) as gw:
        c = gw.client()
        gw.advance(1.5)  # a slow client: connected, then the head in part
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\n")
        gw.advance(0.4)
        assert c.written == b"", "not due yet"
        # 2 s after accept, not 2 s after the first byte (3.5 s).
        gw.advance(0.2)
        r = await c.response()
        assert r.status == 408


async def test_a_silent_tls_connection_is_closed_after_the_header_timeout():
    ca = CA()
    store = CertificateStore()
    store.update({"*": ca.issue("gw.test").bundle()})
    srv = await start_tls_proxy(table([route()], {"ns/svc:80": ()}), store, limits=LIMITS)
    try:
        async with tls_client(srv, "gw.test", ca.client_context()) as c:  # the handshake completes
            assert await _closed_silently(c.reader, 10.0), "a silent TLS connection must not wait for the idle timeout"
    finally:
        await srv.close()


async def test_the_real_process_closes_silent_connections_after_the_header_timeout(tmp_path):
    # The real process runs on uvloop, whose TLS transport connects the protocol
    # once the handshake is done: both listeners are checked.
    ca = CA()
    (tmp_path / "fallback.json").write_text(json.dumps(tls_secret("infra", "fallback", ca.issue("gw.test"))))
    tls_listen = free_port()
    gw = GatewayProcess(tmp_path, "--header-timeout", "1", "--idle-timeout", "60",
                        "--listen-tls", f"127.0.0.1:{tls_listen}", "--default-certificate", "infra/fallback")
    writers = []
    try:
        await asyncio.get_running_loop().run_in_executor(None, gw.wait_ready)
        readers = []
        for i in range(20):
            tls = {"ssl": ca.client_context(), "server_hostname": "gw.test"} if i % 2 else {}
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", tls_listen if tls else gw.port, **tls), 5)
            readers.append(reader)
            writers.append(writer)
        t0 = time.monotonic()
        closed = await asyncio.gather(*(_closed_silently(r, 20.0) for r in readers))
        assert all(closed), f"{closed.count(False)} of 20 silent connections still open after 20 s"
        assert time.monotonic() - t0 < 20.0, "closed well before the 60 s idle timeout"
    finally:
        for w in writers:
            w.close()
        gw.close()
