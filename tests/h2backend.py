"""A small HTTP/2 backend for tests: cleartext with prior knowledge (h2c), on the h2 package.

It runs in the test's event loop and records what it saw (connections, each
stream's request headers, body and trailers). Its answer is chosen by the request path:

- ``.../echo``: 200, the request body streamed back chunk by chunk as it arrives,
  then trailers ``grpc-status: 0`` and ``x-trailer: done``;
- ``.../big/<n>``: 200 with ``n`` bytes of body (flow-controlled by the client);
- ``.../malformed-head``, ``.../malformed-trailers``: a field that RFC 9113
  forbids (CR LF in a value) in the response head or its trailers;
- ``.../reset-midway``, ``.../close-midway``: a gRPC response head and one message
  (``MIDWAY_MESSAGE``), then the stream reset (RST_STREAM INTERNAL_ERROR) or the
  connection closed, the response never finished; in the same write, or (``.../reset-later``,
  ``.../close-later``) 0.2 s after the message;
- anything else: 200 with a JSON description of the request.

Knobs: ``max_streams`` (SETTINGS_MAX_CONCURRENT_STREAMS), ``refuse`` (how many
streams to reset with REFUSED_STREAM first), ``goaway_after`` (send GOAWAY
naming the last stream processed once that many streams have begun, leaving
later streams unprocessed; first connection only), ``hold_window`` (do not acknowledge request body
bytes until ``release()``: a slow reader), ``delay`` (seconds before answering),
``ssl`` (serve TLS with this context; it should offer ALPN ``h2``).
"""

from __future__ import annotations

import asyncio
import json

import h2.config
import h2.connection
import h2.events
import h2.settings
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

# The one gRPC message (length-prefixed) a ``.../reset-midway`` or ``.../close-midway`` answer sends.
MIDWAY_MESSAGE = b"\x00\x00\x00\x00\x05first"


class H2Backend:
    def __init__(self, max_streams: int = 100, refuse: int = 0, goaway_after: int = 0,
                 hold_window: bool = False, delay: float = 0.0, ssl=None):
        self.max_streams = max_streams
        self.refuse = refuse
        self.goaway_after = goaway_after
        self.hold_window = hold_window
        self.delay = delay
        self.ssl = ssl  # a server SSLContext (it should offer ALPN h2), or None: h2c
        self.connections = 0
        self.requests: list[dict] = []  # per stream: headers (dict), body bytes, connection number
        self.received_body = 0  # request body bytes received so far (all streams)
        self.max_open = 0  # most streams open at once on one connection
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self._held: list = []
        self._all: list = []

    async def start(self) -> "H2Backend":
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Conn(self), "127.0.0.1", 0, ssl=self.ssl)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self.server.close()
        for c in list(self._conns()):
            c.transport.close()
        await self.server.wait_closed()

    def _conns(self):
        return [c for c in self._all if c.transport is not None]

    def release(self) -> None:
        """Acknowledge the request body bytes held so far (``hold_window``)."""
        self.hold_window = False
        for conn, n, sid in self._held:
            conn.ack(n, sid)
        self._held.clear()


class _Conn(asyncio.Protocol):
    def __init__(self, backend: H2Backend):
        self.b = backend
        backend._all.append(self)
        self.transport = None
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.streams: dict[int, dict] = {}
        self.number = 0
        self.begun = 0
        self.pending: dict[int, bytearray] = {}  # response bytes waiting for the client's window

    def connection_made(self, transport):
        self.transport = transport
        self.b.connections += 1
        self.number = self.b.connections
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.b.max_streams})
        self.h2.initiate_connection()
        self.flush()

    def flush(self):
        data = self.h2.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def ack(self, n, sid):
        try:
            self.h2.acknowledge_received_data(n, sid)
        except h2.exceptions.StreamClosedError:
            pass
        self.flush()

    def data_received(self, data):
        for ev in self.h2.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                self.begin(ev.stream_id, ev.headers, ev.stream_ended is not None)
            elif isinstance(ev, h2.events.DataReceived):
                st = self.streams.get(ev.stream_id)
                self.b.received_body += len(ev.data)
                if st is not None:
                    st["body"] += ev.data
                    st["data_frames"].append((len(ev.data), ev.stream_ended is not None))
                    if st["path"].endswith(b"/echo") and ev.data:
                        self.send(ev.stream_id, ev.data, end=False)
                if self.b.hold_window:
                    self.b._held.append((self, ev.flow_controlled_length, ev.stream_id))
                else:
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                st = self.streams.get(ev.stream_id)
                if st is not None:
                    st["request_trailers"] = list(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                st = self.streams.get(ev.stream_id)
                if st is not None:
                    asyncio.get_running_loop().call_later(self.b.delay, self.answer, ev.stream_id)
            elif isinstance(ev, h2.events.WindowUpdated):
                for sid in list(self.pending):
                    self.send(sid, b"", end=False)
            elif isinstance(ev, h2.events.StreamReset):
                self.streams.pop(ev.stream_id, None)
                self.pending.pop(ev.stream_id, None)
        self.flush()

    def begin(self, sid, headers, ended):
        self.begun += 1
        self.b.max_open = max(self.b.max_open, len(self.streams) + 1)
        if self.b.refuse > 0:
            self.b.refuse -= 1
            self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        goaway = self.b.goaway_after if self.number == 1 else 0
        if goaway and self.begun > goaway:
            return  # past the GOAWAY: never processed
        hd = {k.decode(): v.decode() for k, v in headers}
        st = {"headers": hd, "raw": list(headers), "body": bytearray(), "data_frames": [], "path": hd[":path"].encode(),
              "connection": self.number, "responded": False}
        self.streams[sid] = st
        self.b.requests.append(st)
        if goaway and self.begun == goaway:
            # A graceful GOAWAY (streams up to ``sid`` still answered): h2's state
            # machine closes on any GOAWAY it sends, so the frame is written beside it.
            self.flush()
            self.transport.write(GoAwayFrame(0, last_stream_id=sid, error_code=0).serialize())
        if st["path"].endswith(b"/echo"):
            self.h2.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/grpc")])
            st["responded"] = True

    def answer(self, sid):
        st = self.streams.get(sid)
        if st is None or self.transport.is_closing():
            return
        path = st["path"]
        if path.endswith(b"/echo"):
            self.send(sid, b"", end=True, trailers=[(b"grpc-status", b"0"), (b"x-trailer", b"done")])
        elif path.endswith(b"/malformed-head") or path.endswith(b"/malformed-trailers"):
            bad = [(b"x-bad", b"a\r\nset-cookie: injected=1")]
            self.h2.config.validate_outbound_headers = False  # a server that sends it anyway
            head = path.endswith(b"/malformed-head")
            self.h2.send_headers(sid, [(b":status", b"200")] + (bad if head else []), end_stream=False)
            self.h2.send_data(sid, b"body")
            self.h2.send_headers(sid, bad if not head else [(b"x-ok", b"1")], end_stream=True)
            self.h2.config.validate_outbound_headers = True
            self.streams.pop(sid, None)
        elif path.rsplit(b"/", 1)[1] in (b"reset-midway", b"close-midway", b"reset-later", b"close-later"):
            self.h2.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/grpc")])
            self.h2.send_data(sid, MIDWAY_MESSAGE)
            if path.endswith(b"-later"):
                self.flush()
                asyncio.get_running_loop().call_later(0.2, self.break_off, sid, path)
            else:
                self.break_off(sid, path)
            return
        elif b"/big/" in path:
            self.h2.send_headers(sid, [(b":status", b"200")])
            self.send(sid, b"x" * int(path.rsplit(b"/", 1)[1]), end=True)
        else:
            body = json.dumps({"headers": st["headers"], "body_bytes": len(st["body"]),
                               "connection": st["connection"]}).encode()
            self.h2.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/json"),
                                       (b"content-length", str(len(body)).encode())])
            self.send(sid, body, end=True)
        self.flush()

    def break_off(self, sid, path):
        """Leave a response unfinished: reset its stream or close the connection."""
        if self.transport is None or self.transport.is_closing():
            return
        if b"/reset-" in path:
            self.h2.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
            self.streams.pop(sid, None)
            self.flush()
        else:
            self.flush()
            self.transport.close()

    def send(self, sid, data, end, trailers=None):
        """Send what the client's windows allow; the rest when they open."""
        buf = self.pending.setdefault(sid, bytearray())
        buf += data
        st = self.streams.get(sid)
        if st is not None and end:
            st["end"] = True
            st["trailers"] = trailers
        while buf:
            n = min(len(buf), self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            if n <= 0:
                break
            self.h2.send_data(sid, bytes(buf[:n]))
            del buf[:n]
        if not buf and st is not None and st.get("end"):
            self.pending.pop(sid, None)
            if st.get("trailers"):
                self.h2.send_headers(sid, st["trailers"], end_stream=True)
            else:
                self.h2.end_stream(sid)
            self.streams.pop(sid, None)
        self.flush()

    def connection_lost(self, exc):
        self.transport = None
