"""One HTTP/2 request over a real socket (h2c, prior knowledge), for end-to-end tests.

curl and grpcio cannot send everything HTTP/2 allows (request trailers, a body
held back until a 100 arrives); this client, the h2 package over a blocking
socket, can. Run it in a thread from an async test.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events


@dataclass
class Outcome:
    status: int = 0
    interim: list = field(default_factory=list)  # :status of each informational (1xx) head
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    reset: int | None = None  # RST_STREAM's error code, if the stream was reset


def h2_request(port: int, path: str, method: str = "POST", headers=(), body: bytes | None = None, trailers=(),
               body_after_100: bool = False) -> Outcome:
    """Send one request and read its response until the stream ends or is reset.

    ``trailers``: fields after the body. ``body_after_100``: send the head alone and
    the body only once an informational 100 has arrived (``Expect: 100-continue``).
    """
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    out = Outcome()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        conn.initiate_connection()
        conn.send_headers(1, [(b":method", method.encode()), (b":scheme", b"http"), (b":authority", b"gw.test"),
                              (b":path", path.encode()), *headers], end_stream=body is None and not trailers)

        def send_body():
            if body is not None:
                conn.send_data(1, body, end_stream=not trailers)
            if trailers:
                conn.send_headers(1, list(trailers), end_stream=True)

        if not body_after_100:
            send_body()
        s.sendall(conn.data_to_send())
        body_parts = []
        while True:
            data = s.recv(65536)
            if not data:
                raise AssertionError("the gateway closed the connection")
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.InformationalResponseReceived):
                    out.interim.append(int(dict(ev.headers)[b":status"]))
                    if body_after_100:
                        send_body()
                elif isinstance(ev, h2.events.ResponseReceived):
                    out.headers = {k.decode(): v.decode() for k, v in ev.headers}
                    out.status = int(out.headers[":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    body_parts.append(ev.data)
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    out.body = b"".join(body_parts)
                    if isinstance(ev, h2.events.StreamReset):
                        out.reset = ev.error_code
                    return out
            s.sendall(conn.data_to_send())
