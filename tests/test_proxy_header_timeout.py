"""The header timeout runs from accept: a connection that never sends a request
is closed after --header-timeout, not kept until --idle-timeout.

Between keep-alive requests the idle timeout applies; once the first byte of
the next request arrives, the header timeout applies again.
"""

from __future__ import annotations

import asyncio
import json
import time

from gateway.config import Limits
from gateway.tls import CertificateStore
from gatewayproc import GatewayProcess
from proxyharness import RawClient, free_port, proxy_port, route, start_backend, start_proxy, table
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
    b = await start_backend("b")
    srv = await start_proxy(table([route()], {"ns/svc:80": (b.endpoint,)}), limits=LIMITS)
    port = proxy_port(srv)
    try:
        async with RawClient(port) as silent, RawClient(port) as kept:
            await kept.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await kept.response()).status == 200
            t0 = time.monotonic()
            assert await _closed_silently(silent.reader, 10.0), "a silent connection must not wait for the idle timeout"
            assert time.monotonic() - t0 < 5.0
            # Idle between requests: the idle timeout (60 s) applies, the connection stays.
            assert not await kept.closed(timeout=1.0)
            await kept.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert (await kept.response()).status == 200
            # The first byte of the next request starts its header timeout.
            await kept.send(b"G")
            r = await kept.response(timeout=5.0)
            assert r.status == 408 and await kept.closed()
        assert len(b.seen) == 2
    finally:
        await srv.close()
        await b.runner.cleanup()


async def test_the_first_request_head_is_due_a_header_timeout_after_accept():
    srv = await start_proxy(table([route()], {"ns/svc:80": ()}), limits=Limits(header_timeout=2.0, idle_timeout=60.0))
    try:
        async with RawClient(proxy_port(srv)) as c:
            t0 = time.monotonic()
            await asyncio.sleep(1.5)  # a slow client: connected, then the head in part
            await c.send(b"GET / HTTP/1.1\r\nHost: a\r\n")
            r = await c.response(timeout=10.0)
            assert r.status == 408
            # 2 s after accept, not 2 s after the first byte (3.5 s).
            assert time.monotonic() - t0 < 3.0
    finally:
        await srv.close()


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
