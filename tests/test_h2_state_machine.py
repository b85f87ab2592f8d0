"""gateway/h2state.py: h2's state machines looked up by value, and header blocks sent and
received without the passes our configuration turns off.

What must hold: the same transitions, frames, events and errors as h2's own
classes (4.1-4.4), and a connection that carries any number of streams in
bounded memory.
"""

from __future__ import annotations

import itertools

import pytest
from h2.config import H2Configuration
from h2.errors import ErrorCodes
from h2.connection import ConnectionInputs, ConnectionState, H2Connection, H2ConnectionStateMachine
from h2.events import RequestReceived
from h2.exceptions import ProtocolError
from h2.frame_buffer import FrameBuffer
from h2.settings import SettingCodes
from h2.stream import H2Stream, H2StreamStateMachine, StreamInputs, StreamState
from hyperframe.flags import Flags
from hyperframe.frame import (
    ContinuationFrame, DataFrame, HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame,
)

from gateway.h2frames import add_data, add_header_block, add_rst_stream, add_window_update
from gateway.h2hpack import FieldDecoder, FieldEncoder
from gateway.h2state import PRUNE_FLOOR, ConnectionMachine, Frames, H2State, Stream, StreamMachine

# As both sides of the gateway configure h2 (gateway/h2server.py, gateway/h2upstream.py).
OFF = dict(header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False,
           validate_inbound_headers=False, normalize_inbound_headers=False)
REQUEST = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a.example"), (b":path", b"/x"),
           (b"content-type", b"application/grpc"), (b"te", b"trailers")]
INTERIM = [(b":status", b"103"), (b"link", b"</s.css>; rel=preload")]
RESPONSE = [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"content-length", b"5")]
TRAILERS = [(b"grpc-status", b"0"), (b"grpc-message", b"OK")]


def _outcome(machine) -> tuple:
    return machine.state, {k: v for k, v in vars(machine).items() if k != "state"}


@pytest.mark.parametrize("client", [None, True, False])
def test_the_stream_machine_moves_as_h2s_for_every_state_and_input(client):
    for state, input_ in itertools.product(StreamState, StreamInputs):
        results = []
        for cls in (H2StreamStateMachine, StreamMachine):
            machine = cls(1)
            machine.state = state
            machine.client = client
            try:
                events = [(type(e).__name__, vars(e)) for e in machine.process_input(input_)]
            except ProtocolError as e:
                events = f"ProtocolError: {e}"
            results.append((events, _outcome(machine)))
        assert results[0] == results[1], (state, input_)


def test_the_connection_machine_moves_as_h2s_for_every_state_and_input():
    for state, input_ in itertools.product(ConnectionState, ConnectionInputs):
        results = []
        for cls in (H2ConnectionStateMachine, ConnectionMachine):
            machine = cls()
            machine.state = state
            try:
                events = machine.process_input(input_)
            except ProtocolError as e:
                events = f"ProtocolError: {e}"
            results.append((events, machine.state))
        assert results[0] == results[1], (state, input_)


def test_inputs_that_are_not_h2s_enums_are_refused_as_by_h2():
    with pytest.raises(ValueError):
        StreamMachine(1).process_input(3)
    with pytest.raises(ValueError):
        ConnectionMachine().process_input(3)


def test_a_stream_starts_as_h2s_does():
    config = H2Configuration(client_side=False, **OFF)
    ours, h2s = Stream(5, config, 1000, 2000), H2Stream(5, config, 1000, 2000)
    assert type(ours.state_machine) is StreamMachine
    mine = {k: v for k, v in vars(ours).items() if k not in ("state_machine", "_inbound_window_manager")}
    theirs = {k: v for k, v in vars(h2s).items() if k not in ("state_machine", "_inbound_window_manager")}
    assert mine == theirs
    assert vars(ours._inbound_window_manager) == vars(h2s._inbound_window_manager)
    assert vars(ours.state_machine) == vars(h2s.state_machine)


class _H2(H2Connection):
    """h2's own connection and streams with our HPACK codec (gateway/h2hpack.py): what ours must match byte for byte."""

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self.encoder = FieldEncoder()
        self.decoder = FieldDecoder(self.decoder.max_header_list_size)


def _exchange(cls, request: list, response: list, frame_size: int = 16384) -> list:
    """Frames and events of one request and response between a client and a server of ``cls``."""
    client, server = cls(H2Configuration(client_side=True, **OFF)), cls(H2Configuration(client_side=False, **OFF))
    client.initiate_connection()
    server.initiate_connection()
    server.update_settings({SettingCodes.MAX_FRAME_SIZE: frame_size})
    client.update_settings({SettingCodes.MAX_FRAME_SIZE: frame_size})
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    seen = []

    def move(src, dst):
        data = src.data_to_send()
        seen.append(bytes(data))
        seen.append([repr(e) for e in dst.receive_data(data)])

    client.send_headers(1, request)
    client.send_data(1, b"\0\0\0\0\0")
    client.send_headers(1, TRAILERS, end_stream=True)
    move(client, server)
    server.send_headers(1, INTERIM)
    server.send_headers(1, response)
    server.send_data(1, b"\0\0\0\0\0")
    server.send_headers(1, TRAILERS, end_stream=True)
    move(server, client)
    seen.append((client.streams[1]._authority, client.streams[1].request_method, server.streams[1].request_method))
    # A HEAD's response carries no body, whatever its Content-Length says.
    client.send_headers(3, [(b":method", b"HEAD")] + request[1:4], end_stream=True)
    move(client, server)
    server.send_headers(3, RESPONSE, end_stream=True)
    move(server, client)
    return seen


def test_header_blocks_are_sent_and_received_as_by_h2():
    assert _exchange(H2State, REQUEST, RESPONSE) == _exchange(_H2, REQUEST, RESPONSE)


def test_a_block_larger_than_a_frame_goes_on_in_continuation_frames_as_by_h2():
    big = REQUEST + [(b"x-big", b"v" * 40000)]
    ours = _exchange(H2State, big, RESPONSE + [(b"x-big", b"w" * 40000)])
    assert ours == _exchange(_H2, big, RESPONSE + [(b"x-big", b"w" * 40000)])
    continuations = ours[0].count(b"\x09\x00\x00\x00\x00\x01") + ours[0].count(b"\x09\x04\x00\x00\x00\x01")
    assert continuations == 2  # 40 kB in frames of 16 kB: HEADERS and two CONTINUATION


@pytest.mark.parametrize("cls", [H2State, _H2])
def test_sending_out_of_order_is_refused_as_by_h2(cls):
    client, server = cls(H2Configuration(client_side=True, **OFF)), cls(H2Configuration(client_side=False, **OFF))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.send_headers(1, REQUEST[:4], end_stream=True)
    server.receive_data(client.data_to_send())
    with pytest.raises(ProtocolError, match="informational"):
        server.send_headers(1, INTERIM, end_stream=True)
    client.send_headers(3, REQUEST[:4], end_stream=True)
    server.receive_data(client.data_to_send())
    server.send_headers(3, RESPONSE)
    with pytest.raises(ProtocolError, match="Trailers must have END_STREAM"):
        server.send_headers(3, TRAILERS)


def test_a_body_longer_than_its_content_length_is_still_refused():
    client, server = H2State(H2Configuration(client_side=True, **OFF)), H2State(H2Configuration(client_side=False, **OFF))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.send_headers(1, REQUEST[:4] + [(b"content-length", b"2")])
    client.send_data(1, b"abc", end_stream=True)
    with pytest.raises(ProtocolError, match="InvalidBodyLength|content-length|length"):
        server.receive_data(client.data_to_send())


def test_a_hundred_thousand_streams_on_one_connection_hold_bounded_memory():
    """100 streams in flight at a time (as h2load -m 100), 100,000 in all: h2 holds a bounded number."""
    client, server = H2State(H2Configuration(client_side=True, **OFF)), H2State(H2Configuration(client_side=False, **OFF))
    client.initiate_connection()
    server.initiate_connection()
    server.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 100})
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    held = 0
    for batch in range(1000):
        sids = range(1 + 200 * batch, 201 + 200 * batch, 2)
        for sid in sids:
            client.send_headers(sid, REQUEST[:4], end_stream=True)
        events = server.receive_data(client.data_to_send())
        assert sum(isinstance(e, RequestReceived) for e in events) == 100
        for sid in sids:
            server.send_headers(sid, RESPONSE[:1], end_stream=True)
        client.receive_data(server.data_to_send())
        held = max(held, len(server.streams), len(client.streams))
    assert server.highest_inbound_stream_id == 199_999
    assert held <= 2 * PRUNE_FLOOR
    assert len(server._closed_streams) <= H2State.MAX_CLOSED_STREAMS  # h2 forgets the oldest past this


def _fields(frame) -> tuple:
    """A frame field by field: its class and every attribute, its flags as their sets."""
    return type(frame), {k: (type(v), v._flags, v._valid_flags) if isinstance(v, Flags) else v
                         for k, v in vars(frame).items()}


def _frames_of(cls, data: bytes, pieces: int) -> list:
    """What a buffer of ``cls`` yields for ``data`` fed in ``pieces`` parts: frames, or the error that ended it."""
    buf = cls(server=False)
    buf.max_frame_size = 16384
    seen = []
    step = max(1, len(data) // pieces)
    try:
        for i in range(0, len(data), step):
            buf.add_data(data[i:i + step])
            seen.extend((repr(f), _fields(f)) for f in buf)
    except Exception as e:  # noqa: BLE001 - the kind of error is what is compared
        seen.append(f"{type(e).__name__}: {e}")
    return seen


def test_frames_are_read_as_h2s_buffer_reads_them():
    headers = HeadersFrame(1, data=b"\x82\x86", flags=["END_STREAM"])  # a block that goes on ...
    more = [ContinuationFrame(1, data=b"\x84"), ContinuationFrame(1, data=b"\x41\x01a", flags=["END_HEADERS"])]
    priority = HeadersFrame(3, data=b"\x82", flags=["END_HEADERS", "PRIORITY"], depends_on=1, stream_weight=7)
    data = DataFrame(1, data=b"x" * 100, flags=["END_STREAM"], pad_length=3)
    data.flags.add("PADDED")
    good = b"".join(f.serialize() for f in [headers, *more, priority, data, PingFrame(0, opaque_data=b"12345678")])
    for pieces in (1, 3, 17, len(good)):
        assert _frames_of(Frames, good, pieces) == _frames_of(FrameBuffer, good, pieces)
    broken = [
        headers.serialize() + DataFrame(1, data=b"x").serialize(),  # another frame inside a header block
        headers.serialize() + ContinuationFrame(3, data=b"\x84").serialize(),  # another stream's continuation
        headers.serialize() + ContinuationFrame(1, data=b"\x84").serialize() * 70,  # CVE-2024-27316
        b"\x00\x40\x01\x00\x00\x00\x00\x00\x01" + b"x" * 16385,  # over the frame size
    ]
    for stream in broken:
        ours = _frames_of(Frames, stream, 1)
        assert ours == _frames_of(FrameBuffer, stream, 1)
        assert "Error" in ours[-1]
    # A CONTINUATION outside a block is handed on (the connection refuses it), by both.
    naked = ContinuationFrame(1, data=b"\x84", flags=["END_HEADERS"]).serialize()
    assert _frames_of(Frames, naked, 1) == _frames_of(FrameBuffer, naked, 1)
    assert _frames_of(Frames, naked, 1)[0][0].startswith("ContinuationFrame")


def test_a_request_with_priority_is_received_as_by_h2():
    def received(cls):
        client, server = cls(H2Configuration(client_side=True, **OFF)), cls(H2Configuration(client_side=False, **OFF))
        client.initiate_connection()
        server.initiate_connection()
        server.receive_data(client.data_to_send())
        client.send_headers(1, REQUEST[:4], end_stream=True, priority_weight=200, priority_depends_on=0)
        return [(type(e).__name__, repr(e)) for e in server.receive_data(client.data_to_send())]

    ours = received(H2State)
    assert ours == received(_H2)
    assert [kind for kind, _ in ours] == ["RequestReceived", "StreamEnded", "PriorityUpdated"]


def _header(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    return length.to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big")


# Bodies to put behind every header: empty, a WINDOW_UPDATE's or RST_STREAM's 4 bytes (an
# increment of 0, 1, the largest, one past it), a padded and prioritised block, a too-long
# padding, a settings entry, a PING's 8 bytes.
BODIES = [b"", b"\0\0\0\0", b"\0\0\0\1", b"\x7f\xff\xff\xff", b"\xff\xff\xff\xff",
          b"\x02\x80\0\0\x03\x10abc\0\0", b"\x09abc", b"\0\x04\0\0\xff\xff", b"12345678", b"\0\0\0\1\0"]


def test_every_frame_header_and_body_is_read_field_for_field_as_by_hyperframe():
    """Every frame type (and unknown ones), every flag byte, stream 0, 1 and one with the reserved
    bit set, behind every body: the same frames, fields and flags, or the same error, whole or split."""
    for kind in [*range(0x0B), 0x20, 0xFF]:
        for flag_byte in range(256):
            for stream_id in (0, 1, 0x80000003):
                for body in BODIES:
                    frame = _header(len(body), kind, flag_byte, stream_id) + body
                    # END_HEADERS-less blocks stay buffered: close them so they are yielded.
                    closing = ContinuationFrame(stream_id & 0x7FFFFFFF or 1, flags=["END_HEADERS"]).serialize()
                    data = frame + closing + PingFrame(0, opaque_data=b"abcdefgh").serialize()
                    ours = _frames_of(Frames, data, 1)
                    assert ours == _frames_of(FrameBuffer, data, 1), (kind, flag_byte, stream_id, body)
    data = b"".join(_header(len(b), k, 0x05, 1) + b for k in (0, 1, 3, 8) for b in BODIES[:4])
    for pieces in (2, 7, len(data)):
        assert _frames_of(Frames, data, pieces) == _frames_of(FrameBuffer, data, pieces)


def test_an_oversized_frame_of_every_fast_type_is_refused_as_by_h2():
    for kind in (0, 1, 3, 8):
        data = _header(16385, kind, 0, 1) + b"x" * 16385
        ours = _frames_of(Frames, data, 1)
        assert ours == _frames_of(FrameBuffer, data, 1)
        assert ours[-1].startswith("FrameTooLargeError")


def test_frames_written_as_bytes_are_hyperframes_serialised():
    """gateway/h2frames.py's writers against hyperframe's ``serialize``, every variant they take."""
    block = bytes(range(256)) * 5
    for size in (1, 7, 16384):
        for n in (0, 1, 7, 8, 100, len(block)):
            for end in (False, True):
                out, part = bytearray(), block[:n]
                add_header_block(out, 0x7FFFFFFF, part, size, end)
                first = HeadersFrame(0x7FFFFFFF, data=part[:size])
                frames = [first] + [ContinuationFrame(0x7FFFFFFF, data=part[i:i + size]) for i in range(size, n, size)]
                frames[-1].flags.add("END_HEADERS")
                if end:
                    first.flags.add("END_STREAM")
                assert bytes(out) == b"".join(f.serialize() for f in frames), (size, n, end)
    for data in (b"", b"x", b"y" * 16384, memoryview(b"abcdef")[1:4]):
        for end in (False, True):
            out = bytearray()
            add_data(out, 3, data, end)
            assert bytes(out) == DataFrame(3, data=data, flags=["END_STREAM"] if end else []).serialize()
    for code in (0, 8, ErrorCodes.CANCEL, 0xFFFFFFFF):
        out = bytearray()
        add_rst_stream(out, 5, code)
        assert bytes(out) == RstStreamFrame(5, error_code=code).serialize()
    for sid, increment in ((0, 1), (7, 65535), (9, 0x7FFFFFFF)):
        out = bytearray()
        add_window_update(out, sid, increment)
        assert bytes(out) == WindowUpdateFrame(sid, window_increment=increment).serialize()


def _flows(cls) -> list:
    """Bytes and events of bodies, acknowledgements, ends and resets between a client and a server of ``cls``."""
    client, server = cls(H2Configuration(client_side=True, **OFF)), cls(H2Configuration(client_side=False, **OFF))
    seen = []

    def move(src, dst):
        data = src.data_to_send()
        seen.append(bytes(data))
        seen.append([repr(e) for e in dst.receive_data(data)])

    client.initiate_connection()
    server.initiate_connection()
    client.increment_flow_control_window(1 << 20)
    move(client, server)
    move(server, client)
    move(client, server)
    client.send_headers(1, REQUEST)
    client.send_data(1, memoryview(b"a" * 16384))
    client.send_data(1, b"b" * 16384)
    client.send_data(1, b"c" * 16384)
    client.send_headers(3, REQUEST)
    client.send_data(3, b"d" * 100, pad_length=10)  # flow control counts the padding: 111 bytes
    client.send_headers(5, REQUEST)
    move(client, server)
    # Acknowledged past half the window: a WINDOW_UPDATE for the connection and for stream 1.
    for _ in range(3):
        server.acknowledge_received_data(16384, 1)
    server.acknowledge_received_data(111, 3)
    server.send_headers(1, RESPONSE)
    server.send_data(1, b"\0" * 5)
    server.end_stream(1)
    server.reset_stream(3, ErrorCodes.CANCEL)
    server.acknowledge_received_data(0, 3)  # a reset stream: the connection's window only
    move(server, client)
    client.end_stream(5)
    client.reset_stream(1)  # closed already: h2's error
    move(client, server)
    for call in (lambda: server.acknowledge_received_data(1, 99), lambda: server.acknowledge_received_data(-1, 1),
                 lambda: server.acknowledge_received_data(1, 0), lambda: server.end_stream(1),
                 lambda: server.reset_stream(77), lambda: client.end_stream(5)):
        try:
            call()
            seen.append("ok")
        except Exception as e:  # noqa: BLE001 - the kind of error is what is compared
            seen.append(f"{type(e).__name__}: {e}")
    seen.append(bytes(server.data_to_send()))
    seen.append(bytes(client.data_to_send()))
    seen.append((server.local_flow_control_window(1), server._inbound_flow_control_window_manager.current_window_size,
                 client.local_flow_control_window(5), client.outbound_flow_control_window))
    try:
        server.local_flow_control_window(1001)
    except Exception as e:  # noqa: BLE001
        seen.append(f"{type(e).__name__}: {e}")
    return seen


def test_bodies_acknowledgements_ends_and_resets_go_out_as_by_h2():
    ours = _flows(H2State)
    assert ours == _flows(_H2)
    assert b"\x00\x00\x04\x08\x00\x00\x00\x00\x01" in ours[8]  # the stream's WINDOW_UPDATE went out
