"""https backends: verified against the system CAs plus --upstream-ca-file, SNI = the url's host."""

from __future__ import annotations

import ssl

from aiohttp import web

from gateway.routing import Endpoint, EndpointSet
from proxyharness import free_port, proxy_port, request, route, start_proxy, table
from tlsharness import CA


async def _tls_backend(ca: CA, tmp_path, names: list):
    issued = ca.issue("localhost", "127.0.0.1")
    (tmp_path / "b.crt").write_bytes(issued.cert_pem)
    (tmp_path / "b.key").write_bytes(issued.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "b.crt", tmp_path / "b.key")
    ctx.sni_callback = lambda obj, name, c: names.append(name)

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"secure": request.secure, "host": request.host})

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    return runner, port


async def test_custom_ca_makes_an_https_backend_trusted(tmp_path):
    ca = CA()
    names: list = []
    runner, port = await _tls_backend(ca, tmp_path, names)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.pem)
    key = f"https://localhost:{port}"
    eps = {key: EndpointSet(key, (Endpoint("localhost", port, tls=True),), host_header=f"localhost:{port}")}
    routes = [route("ns/r", "/", backends=(key,))]
    trusting = await start_proxy(table(routes, eps), upstream_ca_file=str(ca_file))
    untrusting = await start_proxy(table(routes, eps))
    try:
        r = await request(proxy_port(trusting), "GET", "/x")
        assert r.status == 200, r.body
        assert r.json()["secure"] is True
        assert names and names[-1] == "localhost"  # SNI: the url's host
        # Without the CA the backend's certificate is not trusted: the gateway refuses to talk to it.
        r = await request(proxy_port(untrusting), "GET", "/x")
        assert r.status == 502
    finally:
        await trusting.close()
        await untrusting.close()
        await runner.cleanup()


def test_cli_refuses_an_unreadable_ca_file(tmp_path):
    import pytest

    from crdgate.cli import build_config, build_parser

    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    args = build_parser().parse_args(["run", "--manifests", str(tmp_path), "--upstream-ca-file", str(bad)])
    with pytest.raises(ValueError) as e:  # the CLI makes it a usage error naming the flag
        build_config(args)
    assert "--upstream-ca-file" in str(e.value)
