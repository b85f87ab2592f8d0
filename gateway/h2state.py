"""h2's connection state machine, counting open streams in constant time, without its idle steps.

Both sides of the proxy's HTTP/2 (gateway/h2server.py toward clients,
gateway/h2upstream.py toward backends) drive an ``H2State``: the ``h2``
package's ``H2Connection`` with one change. Before opening a stream h2 checks
the peer's (or our) ``SETTINGS_MAX_CONCURRENT_STREAMS`` by counting the open
streams, a walk over every stream it holds, which also drops the closed ones
(h2 keeps a stream's state until that walk). With 100 streams in flight that
walk cost more than the rest of opening the stream; with 200 on an upstream
connection, twice that.

Here the count is ``len(streams)`` (an upper bound: closed streams not yet
dropped are in it) while that is below both the limit and ``_prune_at``, so
the check passes exactly when h2's would; at either bound h2's own walk counts
exactly and drops the closed streams, and ``_prune_at`` moves to twice what
remains. The walk is thus paid once per many new streams, not once per stream,
and h2 holds at most ``max(PRUNE_FLOOR, 2 x open)`` streams of a connection.

Header blocks are coded by gateway/h2hpack.py instead of the ``hpack``
package's encoder and decoder (same interface, a fraction of the cost).

And each frame received is handled without the ``repr(frame)`` that h2 builds
for its trace logger before every frame, whether that logger is on or not
(about 2 us a frame; a proxied gRPC call receives six).

Streams are h2's ``H2Stream`` as ``Stream``: its header blocks are sent and
received without the steps that only feed checks and normalisations we turn
off (gateway/h2fields.py does the checking), and both state machines,
connection and stream, look their transitions up by the enums' integer values
(an ``Enum`` member hashes in Python). Same table, same transitions, same
errors: tests/test_h2_state_machine.py compares them with h2's for every state
and input, and the frames and events of whole exchanges byte for byte. Header blocks
and frames also go out without h2's debug-line calls (made with logging off)
and per-call generators, and frames are read by ``Frames``, h2's buffer with
the header-block step only for frames that take part in one. Together a
quarter of an HTTP/2 request's instructions (bench/HISTORY.md, 2026-12-04).

Frames go out as bytes: where h2 builds a hyperframe object per frame and
serialises it (``send_headers``, ``send_data``, ``end_stream``, ``reset_stream``,
``acknowledge_received_data``), the stream's state moves as in h2 and
gateway/h2frames.py writes the frame into the output buffer; and the frames of
every request are read by it into hyperframe's objects without hyperframe's
generic steps (a fifth to a quarter of an HTTP/2 request's instructions).

These are overrides of h2 4.4's hooks (``_receive_frame``, ``_begin_new_stream``, ``send_headers``,
``send_data``, ``end_stream``, ``reset_stream``, ``acknowledge_received_data``,
``local_flow_control_window``, ``_receive_headers_frame``, ``_receive_data_frame``,
``H2Stream.__init__`` and its header and data methods, ``FrameBuffer.__next__``, the two
``process_input``), each doing what
h2's does in our configuration and nothing else; they reach into h2's internals,
so pyproject.toml pins h2 to 4.4.x. This module is compiled with the glue
(gateway/_native.py), so they run as C. tests/test_h2_state_machine.py runs the
installed h2's classes beside them: a change of h2's behaviour fails it.
"""

from __future__ import annotations

import h2.stream
from h2.connection import AllowedStreamIDs, ConnectionInputs, ConnectionState, H2Connection, H2ConnectionStateMachine
from h2.errors import ErrorCodes
from h2.events import TrailersReceived
from h2.exceptions import (
    DenialOfServiceError, FlowControlError, FrameDataMissingError, FrameTooLargeError, ProtocolError,
    StreamClosedError, StreamIDTooLowError, TooManyStreamsError,
)
from h2.frame_buffer import FrameBuffer
from h2.stream import H2Stream, H2StreamStateMachine, StreamInputs, StreamState
from h2.utilities import authority_from_headers
from h2.windows import WindowManager
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hyperframe.exceptions import InvalidDataError, InvalidFrameError
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, HeadersFrame, PushPromiseFrame, RstStreamFrame

from gateway.h2frames import (
    END_HEADERS, HEADERS, add_data, add_header_block, add_rst_stream, add_window_update, read_body, read_frame,
)
from gateway.h2hpack import FieldDecoder, FieldEncoder

# Closed streams h2 may hold before they are dropped (each a few hundred bytes).
PRUNE_FLOOR = 256


def _by_values(transitions: dict) -> dict:
    """h2's transition table keyed by the integer values of its enums instead of the members."""
    return {(state._value_, input_._value_): move for (state, input_), move in transitions.items()}


# h2 looks up each transition by a (state, input) pair of enum members, and an
# Enum member's hash is a Python function: two calls per lookup, ~11 per
# proxied h2c request. Keyed by their integer values, the same table hashes in C.
_STREAM_MOVES = _by_values(h2.stream._transitions)
_CONNECTION_MOVES = _by_values(H2ConnectionStateMachine._transitions)


def _informational(fields) -> bool:
    """h2's ``is_informational_response`` for fields of bytes: a :status of 1xx among the pseudo-header fields."""
    for name, value in fields:
        if name[:1] != b":":
            return False
        if name == b":status":
            return value[:1] == b"1"
    return False


def _method(fields):
    """h2's ``extract_method_header`` for fields of bytes."""
    for name, value in fields:
        if name == b":method":
            return value
    return None


class ConnectionMachine(H2ConnectionStateMachine):
    """h2's connection state machine (4.4), its transitions looked up by value."""

    def process_input(self, input_: ConnectionInputs) -> list:
        if not isinstance(input_, ConnectionInputs):
            raise ValueError("Input must be an instance of ConnectionInputs")
        try:
            func, target_state = _CONNECTION_MOVES[self.state._value_, input_._value_]
        except KeyError as e:
            old_state = self.state
            self.state = ConnectionState.CLOSED
            raise ProtocolError(f"Invalid input {input_} in state {old_state}") from e
        self.state = target_state
        if func is not None:
            return func()
        return []


class StreamMachine(H2StreamStateMachine):
    """h2's stream state machine (4.4), its transitions looked up by value."""

    def process_input(self, input_: StreamInputs) -> list:
        if not isinstance(input_, StreamInputs):
            raise ValueError("Input must be an instance of StreamInputs")
        try:
            func, target_state = _STREAM_MOVES[self.state._value_, input_._value_]
        except KeyError as err:
            old_state = self.state
            self.state = StreamState.CLOSED
            raise ProtocolError(f"Invalid input {input_} in state {old_state}") from err
        previous_state = self.state
        self.state = target_state
        if func is not None:
            try:
                return func(self, previous_state)
            except ProtocolError:
                self.state = StreamState.CLOSED
                raise
            except AssertionError as err:
                self.state = StreamState.CLOSED
                raise ProtocolError(err) from err
        return []


class Stream(H2Stream):
    """h2's stream with the state machine above, sending and receiving header blocks
    without the passes our configuration has turned off.

    h2 runs every header block it sends through ``utf8_encode_headers`` (a new
    tuple per field, whatever they already are) and builds validation flags for
    the outbound checks, and every block it receives through the flags for the
    inbound ones, even with those checks and normalisations off. Both sides of
    our HTTP/2 turn them off (the fields are bytes, built and checked by us:
    gateway/h2fields.py), so here those steps are skipped. ``H2State`` makes
    its streams of this class only on a connection configured so (``lean``);
    on any other, h2's own ``H2Stream``.
    """

    def __init__(self, stream_id: int, config, inbound_window_size: int, outbound_window_size: int) -> None:
        # h2's H2Stream.__init__ (4.4) with our state machine; tests/test_h2_state_machine.py
        # checks that it sets what h2's does.
        self.state_machine = StreamMachine(stream_id)
        self.stream_id = stream_id
        self.max_outbound_frame_size = None
        self.request_method = None
        self.outbound_flow_control_window = outbound_window_size
        self._inbound_window_manager = WindowManager(inbound_window_size)
        self._expected_content_length = None
        self._actual_content_length = 0
        self._authority = None
        self.config = config

    def _header_block(self, headers, encoder, end_stream: bool) -> bytes:
        """h2's ``H2Stream.send_headers`` up to its frames: the state moves and checks, the block coded."""
        machine = self.state_machine
        input_ = StreamInputs.SEND_HEADERS
        if not machine.client and _informational(headers):
            if end_stream:
                raise ProtocolError("Cannot set END_STREAM on informational responses.")
            input_ = StreamInputs.SEND_INFORMATIONAL_HEADERS
        # The state moves before the block is coded: coding changes the HPACK context for good.
        machine.process_input(input_)
        block = encoder.encode(headers)
        if end_stream:
            machine.process_input(StreamInputs.SEND_END_STREAM)
        if machine.trailers_sent and not end_stream:
            raise ProtocolError("Trailers must have END_STREAM set.")
        if machine.client and self._authority is None:
            self._authority = authority_from_headers(headers)
        self.request_method = _method(headers)  # a HEAD's response has no body
        return block

    def send_headers(self, headers, encoder, end_stream: bool = False) -> list:
        """h2's ``H2Stream.send_headers``; ``headers``: a list of (name, value) pairs of bytes.
        Only h2's own ``send_headers`` (with priority) takes these frames: ours writes bytes."""
        block = self._header_block(headers, encoder, end_stream)
        size = self.max_outbound_frame_size
        first = HeadersFrame(self.stream_id)
        first.data = block[:size]
        frames = [first]
        for start in range(size, len(block), size):
            more = ContinuationFrame(self.stream_id)
            more.data = block[start:start + size]
            frames.append(more)
        frames[-1].flags.add("END_HEADERS")
        if end_stream:
            first.flags.add("END_STREAM")
        return frames

    def write_headers(self, out: bytearray, headers, encoder, end_stream: bool) -> None:
        """``send_headers`` with its frames written into ``out`` as bytes (gateway/h2frames.py)."""
        block = self._header_block(headers, encoder, end_stream)
        add_header_block(out, self.stream_id, block, self.max_outbound_frame_size, end_stream)

    def write_data(self, out: bytearray, data, end_stream: bool) -> None:
        """``send_data`` unpadded, its DATA frame written into ``out``."""
        machine = self.state_machine
        machine.process_input(StreamInputs.SEND_DATA)
        if end_stream:
            machine.process_input(StreamInputs.SEND_END_STREAM)
        size = len(data)
        self.outbound_flow_control_window -= size
        assert self.outbound_flow_control_window >= 0 or size == 0
        add_data(out, self.stream_id, data, end_stream)

    def write_end_stream(self, out: bytearray) -> None:
        """h2's ``H2Stream.end_stream``: an empty DATA frame with END_STREAM, written into ``out``."""
        self.state_machine.process_input(StreamInputs.SEND_END_STREAM)
        add_data(out, self.stream_id, b"", True)

    def write_reset(self, out: bytearray, error_code) -> None:
        """h2's ``H2Stream.reset_stream``, its RST_STREAM written into ``out``."""
        self.state_machine.process_input(StreamInputs.SEND_RST_STREAM)
        add_rst_stream(out, self.stream_id, error_code)

    def write_acknowledgement(self, out: bytearray, size: int) -> None:
        """h2's ``H2Stream.acknowledge_received_data``: a WINDOW_UPDATE into ``out`` when the window wants one."""
        increment = self._inbound_window_manager.process_bytes(size)
        if increment:
            add_window_update(out, self.stream_id, increment)

    def send_data(self, data, end_stream: bool = False, pad_length=None) -> list:
        """h2's ``H2Stream.send_data``, less its debug line (a call per frame, logger on or off)."""
        if pad_length is not None:
            return super().send_data(data, end_stream, pad_length)
        machine = self.state_machine
        machine.process_input(StreamInputs.SEND_DATA)
        frame = DataFrame(self.stream_id)
        frame.data = data.tobytes() if isinstance(data, memoryview) else data
        if end_stream:
            machine.process_input(StreamInputs.SEND_END_STREAM)
            frame.flags.add("END_STREAM")
        self.outbound_flow_control_window -= frame.flow_controlled_length
        assert self.outbound_flow_control_window >= 0 or frame.flow_controlled_length == 0
        return [frame]

    def receive_data(self, data: bytes, end_stream: bool, flow_control_len: int) -> tuple[list, list]:
        """h2's ``H2Stream.receive_data``, less its debug line."""
        machine = self.state_machine
        events = machine.process_input(StreamInputs.RECV_DATA)
        data_event = events[0]
        self._inbound_window_manager.window_consumed(flow_control_len)
        self._track_content_length(len(data), end_stream)
        if end_stream:
            ended = machine.process_input(StreamInputs.RECV_END_STREAM)
            data_event.stream_ended = ended[0]
            events.extend(ended)
        data_event.data = data
        data_event.flow_controlled_length = flow_control_len
        return [], events

    def receive_headers(self, headers, end_stream: bool, header_encoding) -> tuple[list, list]:
        """h2's ``H2Stream.receive_headers``, without the validation flags (nothing reads them)."""
        if _informational(headers):
            if end_stream:
                raise ProtocolError("Cannot set END_STREAM on informational responses")
            input_ = StreamInputs.RECV_INFORMATIONAL_HEADERS
        else:
            input_ = StreamInputs.RECV_HEADERS
        machine = self.state_machine
        events = machine.process_input(input_)
        headers_event = events[0]
        if end_stream:
            ended = machine.process_input(StreamInputs.RECV_END_STREAM)
            headers_event.stream_ended = ended[0]
            events += ended
        self._initialize_content_length(headers)
        if isinstance(headers_event, TrailersReceived) and not end_stream:
            raise ProtocolError("Trailers must have END_STREAM set")
        headers_event.headers = list(headers)  # a list of its own (the decoder may hand out a memoised one)
        return [], events


class Frames(FrameBuffer):
    """h2's ``FrameBuffer`` (4.4): the same frames, limits and errors, its ``__next__``
    compiled with ours, the frame types of every request made by gateway/h2frames.py, and the
    header-block step skipped for a frame that has no part in one."""

    def __next__(self):
        data = self._data
        while True:
            if len(data) < 9:
                raise StopIteration
            frame, length = read_frame(data)  # the frame types of every request, made directly
            fast = frame is not None
            if not fast:
                try:
                    frame, length = Frame.parse_frame_header(memoryview(data[:9]))
                except (InvalidDataError, InvalidFrameError) as err:
                    raise ProtocolError(f"Received frame with invalid header: {err!s}") from err
            if len(data) < length + 9:
                raise StopIteration
            if length > self.max_frame_size:  # h2's _validate_frame_length
                raise FrameTooLargeError(f"Received overlong frame: length {length}, max {self.max_frame_size}")
            if not fast or not read_body(frame, data, length):
                try:
                    frame.parse_body(memoryview(data[9:9 + length]))
                except InvalidDataError as err:
                    raise ProtocolError("Received frame with non-compliant data") from err
                except InvalidFrameError as err:
                    raise FrameDataMissingError("Frame data missing or invalid") from err
            # A whole header block in one HEADERS frame outside a block: h2's header-block step would hand it on.
            whole = fast and data[3] == HEADERS and data[4] & END_HEADERS
            del data[:9 + length]  # in place: h2 counts on bytearray's cheap deletes from the front
            if whole and not self._headers_buffer:
                return frame
            kind = type(frame)
            if self._headers_buffer or kind is HeadersFrame or kind is PushPromiseFrame or kind is ContinuationFrame:
                frame = self._update_header_buffer(frame)
                if frame is None:
                    continue  # a header block goes on: the next frame
            return frame


class H2State(H2Connection):
    """``h2.connection.H2Connection`` with the open-stream count and the leaner steps of the module docstring."""

    _prune_at = PRUNE_FLOOR

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self.encoder = FieldEncoder()
        self.decoder = FieldDecoder(self.decoder.max_header_list_size)
        machine = ConnectionMachine()
        machine.state = self.state_machine.state
        self.state_machine = machine
        config = self.config
        # Streams of our class only where the steps it leaves out have nothing to do (see Stream).
        self.lean = not (config.normalize_outbound_headers or config.validate_outbound_headers
                         or config.normalize_inbound_headers or config.validate_inbound_headers
                         or isinstance(config.header_encoding, str))
        self._own_ids = AllowedStreamIDs(config.client_side)
        self._peer_ids = AllowedStreamIDs(not config.client_side)
        if self.lean:
            self.incoming_buffer = Frames(server=not config.client_side)

    def send_headers(self, stream_id: int, headers, end_stream: bool = False, priority_weight=None,
                     priority_depends_on=None, priority_exclusive=None) -> None:
        """h2's ``send_headers`` (4.4), less its debug line and, as we never prioritise, the priority branch."""
        if not self.lean or priority_weight is not None or priority_depends_on is not None \
                or priority_exclusive is not None:
            return super().send_headers(stream_id, headers, end_stream, priority_weight, priority_depends_on,
                                        priority_exclusive)
        stream = self.streams.get(stream_id)
        if stream is None:
            limit = self.remote_settings.max_concurrent_streams
            count = self.open_outbound_streams
            if count + 1 > limit:
                raise TooManyStreamsError(f"Max outbound streams is {limit}, {count} open")
        self.state_machine.process_input(ConnectionInputs.SEND_HEADERS)
        if stream is None:
            stream = self._begin_new_stream(stream_id, self._own_ids)
        # Frames of at most the stream's max_outbound_frame_size: h2 keeps it equal to the
        # connection's (what h2's _prepare_for_sending asserts on).
        stream.write_headers(self._data_to_send, headers, self.encoder, end_stream)

    def send_data(self, stream_id: int, data, end_stream: bool = False, pad_length=None) -> None:
        """h2's ``send_data`` (4.4), less its three debug lines."""
        if pad_length is not None or not self.lean:
            return super().send_data(stream_id, data, end_stream, pad_length)
        size = len(data)
        if size > 0:
            window = self.local_flow_control_window(stream_id)
            if size > window:
                raise FlowControlError(f"Cannot send {size} bytes, flow control window is {window}")
        if size > self.max_outbound_frame_size:
            raise FrameTooLargeError(f"Cannot send frame size {size}, max frame size is {self.max_outbound_frame_size}")
        self.state_machine.process_input(ConnectionInputs.SEND_DATA)
        self.streams[stream_id].write_data(self._data_to_send, data, end_stream)
        self.outbound_flow_control_window -= size
        assert self.outbound_flow_control_window >= 0 or size == 0

    def end_stream(self, stream_id: int) -> None:
        """h2's ``end_stream`` (4.4), less its debug lines, the frame written as bytes."""
        if not self.lean:
            return super().end_stream(stream_id)
        self.state_machine.process_input(ConnectionInputs.SEND_DATA)
        self._get_stream_by_id(stream_id).write_end_stream(self._data_to_send)

    def reset_stream(self, stream_id: int, error_code=0) -> None:
        """h2's ``reset_stream`` (4.4), less its debug lines, the frame written as bytes."""
        if not self.lean:
            return super().reset_stream(stream_id, error_code)
        self.state_machine.process_input(ConnectionInputs.SEND_RST_STREAM)
        self._get_stream_by_id(stream_id).write_reset(self._data_to_send, error_code)

    def acknowledge_received_data(self, acknowledged_size: int, stream_id: int) -> None:
        """h2's ``acknowledge_received_data`` (4.4), less its debug lines, the frames written as bytes."""
        if not self.lean:
            return super().acknowledge_received_data(acknowledged_size, stream_id)
        if stream_id <= 0:
            raise ValueError(f"Stream ID {stream_id} is not valid for acknowledge_received_data")
        if acknowledged_size < 0:
            raise ValueError("Cannot acknowledge negative data")
        conn_increment = self._inbound_flow_control_window_manager.process_bytes(acknowledged_size)
        try:
            stream = self._get_stream_by_id(stream_id)
        except StreamClosedError:
            stream = None
        # Written once the stream is known: where h2 raises (no such stream), nothing goes out, as in h2.
        out = self._data_to_send
        if conn_increment:
            add_window_update(out, 0, conn_increment)
        if stream is not None and stream.open:
            stream.write_acknowledgement(out, acknowledged_size)

    def _prepare_for_sending(self, frames: list) -> None:
        """h2's, serialising frame by frame into the buffer (no generator and joined copy per call)."""
        limit = self.max_outbound_frame_size
        out = self._data_to_send
        for frame in frames:
            out += frame.serialize()
        for frame in frames:
            assert frame.body_len <= limit

    @property
    def open_inbound_streams(self) -> int:
        """The open streams the peer started; exact from the limit on, an upper bound below it."""
        held = len(self.streams)
        if held < self.local_settings.max_concurrent_streams and held < self._prune_at:
            return held  # h2 asks whether one more fits: it does, as it would by the exact count
        return self._pruned(super().open_inbound_streams)

    @property
    def open_outbound_streams(self) -> int:
        """The open streams we started; exact from the limit on, an upper bound below it."""
        held = len(self.streams)
        if held < self.remote_settings.max_concurrent_streams and held < self._prune_at:
            return held
        return self._pruned(super().open_outbound_streams)

    def _pruned(self, count: int) -> int:
        """After h2's walk (which dropped the closed streams): the next walk when twice as many are held."""
        self._prune_at = max(PRUNE_FLOOR, 2 * len(self.streams))
        return count

    def _begin_new_stream(self, stream_id: int, allowed_ids) -> Stream:
        """h2's ``H2Connection._begin_new_stream`` (4.4), making a ``Stream``, less its debug lines."""
        outbound = self._stream_id_is_outbound(stream_id)
        highest = self.highest_outbound_stream_id if outbound else self.highest_inbound_stream_id
        if stream_id <= highest:
            raise StreamIDTooLowError(stream_id, highest)
        if stream_id % 2 != int(allowed_ids):
            raise ProtocolError("Invalid stream ID for peer.")
        stream = (Stream if self.lean else H2Stream)(stream_id, self.config, self.local_settings.initial_window_size,
                                                    self.remote_settings.initial_window_size)
        stream.max_outbound_frame_size = self.max_outbound_frame_size
        self.streams[stream_id] = stream
        if outbound:
            self.highest_outbound_stream_id = stream_id
        else:
            self.highest_inbound_stream_id = stream_id
        return stream

    def _receive_headers_frame(self, frame):
        """h2's ``_receive_headers_frame`` (4.4), with the HPACK errors translated as h2 does."""
        if not self.lean:
            return super()._receive_headers_frame(frame)
        stream_id = frame.stream_id
        stream = self.streams.get(stream_id)
        if stream is None:
            limit = self.local_settings.max_concurrent_streams
            count = self.open_inbound_streams
            if count + 1 > limit:
                raise TooManyStreamsError(f"Max inbound streams is {limit}, {count} open")
        try:
            headers = self.decoder.decode(frame.data, raw=True)
        except OversizedHeaderListError as e:
            raise DenialOfServiceError(f"Oversized header block: {e}") from e
        except (HPACKError, IndexError, TypeError, UnicodeDecodeError) as e:
            raise ProtocolError(f"Error decoding header block: {e}") from e
        events = self.state_machine.process_input(ConnectionInputs.RECV_HEADERS)
        if stream is None:
            stream = self._begin_new_stream(stream_id, self._peer_ids)
        flags = frame.flags
        frames, stream_events = stream.receive_headers(headers, "END_STREAM" in flags, None)  # Stream's ignores it
        if "PRIORITY" in flags:
            p_frames, p_events = self._receive_priority_frame(frame)
            stream_events[0].priority_updated = p_events[0]
            stream_events.extend(p_events)
        return frames, events + stream_events

    def _receive_data_frame(self, frame):
        """h2's ``_receive_data_frame`` (4.4) as C, its flow-controlled length counted here."""
        flags = frame.flags
        data = frame.data
        length = len(data) + frame.pad_length + 1 if "PADDED" in flags else len(data)
        events = self.state_machine.process_input(ConnectionInputs.RECV_DATA)
        self._inbound_flow_control_window_manager.window_consumed(length)
        try:
            stream = self._get_stream_by_id(frame.stream_id)
            frames, stream_events = stream.receive_data(data, "END_STREAM" in flags, length)
        except StreamClosedError as e:
            return self._handle_data_on_closed_stream(events, e, frame)
        return frames, events + stream_events

    def local_flow_control_window(self, stream_id: int) -> int:
        """h2's (4.4): what may be sent on the stream now; h2's errors for a stream it does not hold."""
        stream = self.streams.get(stream_id)
        if stream is None:
            stream = self._get_stream_by_id(stream_id)
        return min(self.outbound_flow_control_window, stream.outbound_flow_control_window)

    def _receive_frame(self, frame):
        """h2's ``H2Connection._receive_frame`` (h2 4.1-4.4), less its trace line's ``repr(frame)``."""
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as e:
            # Closed by RST_STREAM: a stream error, answered with RST_STREAM; else a connection error.
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = e.error_code
                self._prepare_for_sending([f])
                events = e._events
            else:
                raise
        except StreamIDTooLowError as e:
            # A stream closed by RST_STREAM: a stream error; by END_STREAM or implicitly: a connection error.
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events
