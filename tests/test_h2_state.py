"""gateway/h2state.py: h2's state machine with a constant-time open-stream count.

The count may be an upper bound below the limit, so what must hold is h2's
own behaviour at the limit (the stream past it refused, whatever closed
streams it still holds) and a bound on what it holds.
"""

from __future__ import annotations

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import RequestReceived, ResponseReceived
from h2.errors import ErrorCodes
from h2.exceptions import TooManyStreamsError
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame, Frame, HeadersFrame

from gateway.h2state import PRUNE_FLOOR, H2State

REQUEST = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"a")]
RESPONSE = [(b":status", b"200")]


def _pair(server_limit: int, client_cls=H2Connection, server_cls=H2State):
    client = client_cls(H2Configuration(client_side=True, header_encoding=None))
    server = server_cls(H2Configuration(client_side=False, header_encoding=None))
    client.initiate_connection()
    server.initiate_connection()
    server.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: server_limit})
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


def _ignore_limit(client) -> None:
    """A client that opens streams past the server's limit (as a hostile one would)."""
    client.remote_settings[SettingCodes.MAX_CONCURRENT_STREAMS] = 2**31 - 1
    client.remote_settings.acknowledge()


def _request(client, server, sid: int) -> list:
    client.send_headers(sid, REQUEST, end_stream=True)
    return server.receive_data(client.data_to_send())


def _respond(client, server, sid: int) -> None:
    server.send_headers(sid, RESPONSE, end_stream=True)
    client.receive_data(server.data_to_send())


def test_the_stream_past_the_limit_is_refused_as_by_h2():
    client, server = _pair(4)
    _ignore_limit(client)
    for sid in (1, 3, 5, 7):
        assert isinstance(_request(client, server, sid)[0], RequestReceived)
    client.send_headers(9, REQUEST, end_stream=True)
    with pytest.raises(TooManyStreamsError):
        server.receive_data(client.data_to_send())


def test_closed_streams_free_their_place_at_the_limit():
    client, server = _pair(4)
    _ignore_limit(client)
    for sid in (1, 3, 5, 7):
        _request(client, server, sid)
    _respond(client, server, 1)  # closed, still held by h2
    assert 1 in server.streams
    assert server.open_inbound_streams == 3  # at the limit: the exact count
    assert isinstance(_request(client, server, 9)[0], RequestReceived)
    assert 1 not in server.streams


def test_closed_streams_held_stay_bounded():
    client, server = _pair(1000)
    sid = 1
    for _ in range(5 * PRUNE_FLOOR):
        _request(client, server, sid)
        _respond(client, server, sid)
        sid += 2
        assert len(server.streams) <= PRUNE_FLOOR + 1


def test_client_side_counts_outbound_streams_against_the_servers_limit():
    client, server = _pair(3, client_cls=H2State, server_cls=H2Connection)
    for sid in (1, 3, 5):
        _request(client, server, sid)
    with pytest.raises(TooManyStreamsError):
        client.send_headers(7, REQUEST, end_stream=True)
    _respond(client, server, 1)
    client.send_headers(7, REQUEST, end_stream=True)
    assert isinstance(server.receive_data(client.data_to_send())[0], RequestReceived)
    _respond(client, server, 3)
    for event in client.receive_data(b""):
        assert not isinstance(event, ResponseReceived)


def test_opening_a_stream_does_not_walk_every_stream():
    client, server = _pair(1000)
    walks = []
    walk = server._open_streams
    server._open_streams = lambda remainder: walks.append(remainder) or walk(remainder)
    sid = 1
    for _ in range(100):  # 100 in flight, as h2load -m 100 keeps them
        _request(client, server, sid)
        sid += 2
    for _ in range(4 * PRUNE_FLOOR):
        _respond(client, server, sid - 200)
        _request(client, server, sid)
        sid += 2
    assert len(walks) <= 4 * PRUNE_FLOOR // 100


def test_frames_are_handled_without_building_their_repr(monkeypatch):
    client, server = _pair(100)

    def no_repr(frame):
        raise AssertionError("repr(frame) built on the receive path")

    monkeypatch.setattr(Frame, "__repr__", no_repr)
    assert isinstance(_request(client, server, 1)[0], RequestReceived)


def _late_frames(cls) -> list:
    """What a server of class ``cls`` makes of frames on streams it closed: (events or error, bytes sent)."""
    client, server = _pair(100, server_cls=cls)
    client.send_headers(1, REQUEST)
    server.receive_data(client.data_to_send())
    server.reset_stream(1, ErrorCodes.CANCEL)  # closed by RST_STREAM
    client.send_headers(3, REQUEST, end_stream=True)
    server.receive_data(client.data_to_send())
    server.send_headers(3, RESPONSE, end_stream=True)  # closed by END_STREAM both ways
    server.data_to_send()
    seen = []
    for frame in (DataFrame(1, data=b"late"), HeadersFrame(1, data=b"\x82", flags=["END_HEADERS"]),
                  DataFrame(3, data=b"late")):
        try:
            outcome = [type(e).__name__ for e in server.receive_data(frame.serialize())]
        except Exception as e:  # noqa: BLE001 - the kind of error is what is compared
            outcome = type(e).__name__
        seen.append((outcome, bytes(server.data_to_send())))
    return seen


def test_frames_on_closed_streams_are_answered_as_by_h2():
    """After RST_STREAM: a stream error (RST_STREAM back); after END_STREAM: a connection error."""
    ours = _late_frames(H2State)
    assert ours == _late_frames(H2Connection)
    assert ours[0][1][3] == 0x3  # RST_STREAM
