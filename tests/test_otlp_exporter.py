"""OtlpHttpExporter: one POST per batch on a keep-alive connection, one retry, failures raised."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway import otlp
from proxyharness import free_port


class Collector:
    """An OTLP/HTTP endpoint answering the given statuses in turn (then 200)."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.posts = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.posts.append((self.path, self.headers["content-type"], body, self.client_address[1]))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/v1/traces" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_batches_go_out_on_one_kept_alive_connection():
    c = Collector()
    try:
        e = otlp.OtlpHttpExporter(c.url, timeout=5)
        e.export(b"one")
        e.export(b"two")
        e.shutdown()
        assert [(p, t, b) for p, t, b, _ in c.posts] == [("/v1/traces", "application/x-protobuf", b"one"),
                                                         ("/v1/traces", "application/x-protobuf", b"two")]
        assert c.posts[0][3] == c.posts[1][3]  # the same client port: one connection
    finally:
        c.close()


def test_a_busy_collector_is_tried_once_more_and_a_refusal_is_an_error():
    c = Collector([503, 400])
    try:
        e = otlp.OtlpHttpExporter(c.url, timeout=5)
        e.export(b"x")  # 503, then the retry gets 400
    except otlp.ExportFailed as exc:
        assert "400" in str(exc)
    else:
        pytest.fail("a 400 must fail the export")
    finally:
        c.close()
    assert len(c.posts) == 2
    c = Collector([503])
    try:
        otlp.OtlpHttpExporter(c.url, timeout=5).export(b"x")
        assert len(c.posts) == 2
    finally:
        c.close()


def test_an_unreachable_collector_raises_export_failed():
    e = otlp.OtlpHttpExporter("http://127.0.0.1:%d/v1/traces" % free_port(), timeout=2)
    with pytest.raises(otlp.ExportFailed):
        e.export(b"x")


def test_only_http_urls():
    with pytest.raises(ValueError):
        otlp.OtlpHttpExporter("grpc://collector:4317", timeout=1)
