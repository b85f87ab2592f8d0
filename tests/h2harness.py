"""An HTTP/2 client for socket-free tests: the h2 package's state machine on a protoharness client.

``H2Client`` opens a connection to a protoharness ``Gateway`` with the HTTP/2
preface (prior knowledge on the plain listener) and speaks HTTP/2 with the h2
package in client mode, so tests send real frames, valid or hostile, and read
what the gateway framed back. What the gateway writes is parsed as it comes
and kept per stream (``Answer``); what the client sends reaches the gateway on
``send`` (never from inside the gateway's own write, which would re-enter it).

``auto_ack`` (on by default) gives back the client's windows as data arrives;
off, a test plays a client that never reads. ``streams_after_goaway`` keeps
reading streams after a graceful GOAWAY, as real clients do.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated, DataReceived, InformationalResponseReceived, RemoteSettingsChanged, ResponseReceived,
    StreamEnded, StreamReset, TrailersReceived,
)
from hyperframe.frame import Frame

from polling import eventually


@dataclass
class Answer:
    """What the gateway sent on one stream."""

    headers: dict = field(default_factory=dict)  # str -> str (the first of a repeated name)
    raw_headers: list = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: dict = field(default_factory=dict)
    interim: list = field(default_factory=list)  # the :status of each informational (1xx) head
    ended: bool = False
    reset: int | None = None  # the RST_STREAM error code

    @property
    def status(self) -> int:
        return int(self.headers[":status"])


class H2Client:
    def __init__(self, gateway, auto_ack: bool = True, settings: dict | None = None, peer=("127.0.0.1", 40000),
                 streams_after_goaway: bool = False):
        self.streams_after_goaway = streams_after_goaway
        self.client = gateway.client(peer=peer)
        self.client.transport.on_write = self._incoming
        self.client.transport.on_close = self._closed
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        if settings:
            self.h2.local_settings.update(settings)
        self.h2.initiate_connection()
        self.auto_ack = auto_ack
        self.answers: dict[int, Answer] = {}
        self.uploads: dict[int, tuple[bytes, bool]] = {}
        self.request_trailers: dict[int, list] = {}  # sent (with END_STREAM) once the stream's body is out
        self.goaway: ConnectionTerminated | None = None
        self.remote_settings_seen = False
        self.closed = False
        self.received = 0  # bytes the gateway wrote
        self.send()

    # -- sending

    def send(self) -> None:
        """Push what the client has to send: frames h2 queued, and request bodies as windows allow."""
        for sid, (body, end) in list(self.uploads.items()):
            while body:
                room = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                if room <= 0:
                    break
                self.h2.send_data(sid, body[:room], end_stream=end and len(body) <= room)
                body = body[room:]
            if body:
                self.uploads[sid] = (body, end)
            else:
                del self.uploads[sid]
                if sid in self.request_trailers:
                    self.h2.send_headers(sid, self.request_trailers.pop(sid), end_stream=True)
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.client.send(data)

    def send_raw(self, data: bytes) -> None:
        self.client.send(data)

    def request(self, path: str = "/", method: str = "GET", headers=(), body: bytes | None = None,
                end: bool = True, authority: str = "gw.test", trailers=None) -> int:
        """A request; ``trailers``: fields sent after the body, in a HEADERS frame that ends the stream."""
        sid = self.h2.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path)]
        fields += list(headers)
        self.h2.send_headers(sid, fields, end_stream=end and not body and not trailers)
        if trailers:
            self.request_trailers[sid] = list(trailers)
        if body or trailers:
            self.uploads[sid] = (body or b"", end and not trailers)  # sent by ``send`` as the gateway's windows allow
        self.answers[sid] = Answer()
        self.send()
        return sid

    # -- receiving

    def _incoming(self, data: bytes) -> None:
        self.received += len(data)
        if self.streams_after_goaway and len(data) >= 17 and data[3] == 0x7 and len(data) == 9 + int.from_bytes(data[:3], "big"):
            # A GOAWAY on its own (a drain's, while streams finish): recorded here, as h2's
            # client state machine would take nothing after it, unlike real clients
            # (nghttp2, browsers, gRPC), which finish the streams it leaves open.
            frame, length = Frame.parse_frame_header(memoryview(data[:9]))
            frame.parse_body(memoryview(data[9:]))
            self.goaway = ConnectionTerminated()
            self.goaway.last_stream_id = frame.last_stream_id
            self.goaway.error_code = frame.error_code
            return
        for event in self.h2.receive_data(data):
            kind = type(event)
            if kind in (ResponseReceived, TrailersReceived):
                ans = self.answers.setdefault(event.stream_id, Answer())
                target = ans.headers if kind is ResponseReceived else ans.trailers
                for name, value in event.headers:
                    if kind is ResponseReceived:
                        ans.raw_headers.append((name.decode(), value.decode()))
                    target.setdefault(name.decode(), value.decode())
            elif kind is InformationalResponseReceived:
                self.answers.setdefault(event.stream_id, Answer()).interim.append(dict(event.headers)[b":status"].decode())
            elif kind is DataReceived:
                self.answers.setdefault(event.stream_id, Answer()).body += event.data
                if self.auto_ack and event.flow_controlled_length:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif kind is StreamEnded:
                self.answers.setdefault(event.stream_id, Answer()).ended = True
            elif kind is StreamReset:
                self.answers.setdefault(event.stream_id, Answer()).reset = event.error_code
            elif kind is ConnectionTerminated:
                self.goaway = event
            elif kind is RemoteSettingsChanged:
                self.remote_settings_seen = True
        # What the client owes (SETTINGS ACK, PING ACK, WINDOW_UPDATE) goes on the next turn.
        asyncio.get_running_loop().call_soon(self.send)

    def _closed(self) -> None:
        self.closed = True

    async def answer(self, sid: int, timeout: float = 5.0) -> Answer:
        """The stream's answer once it ended or was reset."""
        await eventually(lambda: self.answers[sid].ended or self.answers[sid].reset is not None or self.closed,
                         timeout=timeout)
        return self.answers[sid]

    async def wait_closed(self, timeout: float = 5.0) -> None:
        await eventually(lambda: self.closed, timeout=timeout)
