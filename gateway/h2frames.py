"""HTTP/2 frames to and from bytes for the frame types every request has, without hyperframe's generic steps.

h2 (4.4) makes a hyperframe object for every frame it sends and calls its
``serialize``: a ``Flags`` set built for the frame, every flag the type defines
tested through ``Flags.__contains__`` (a Python call each), the body joined
from parts. A proxied h2c GET sends two frames (the response's HEADERS and
DATA), a gRPC call six. Here the frames h2's hooks in gateway/h2state.py send
(HEADERS with its CONTINUATIONs, DATA, an empty DATA that ends a stream,
RST_STREAM, WINDOW_UPDATE) are written straight into the connection's output
buffer: the 9-byte frame header (RFC 9113 section 4.1) and the payload, the
same bytes hyperframe's ``serialize`` produces.

Read the other way, ``read_frame`` makes the hyperframe object for a frame
header of the types received on every request (DATA, HEADERS, RST_STREAM,
WINDOW_UPDATE) without ``Frame.__init__`` and ``parse_flags`` (a ``Flags``
built from a generator, a Python ``add`` per flag set), and ``read_body``
fills an unpadded DATA or HEADERS frame without priority in place. Any other
frame, and any header hyperframe would refuse (a stream ID where the type
allows none, or none where it needs one), goes through hyperframe's own
parser, so its errors stay hyperframe's. tests/test_h2_state_machine.py
compares both directions with hyperframe's, field by field and byte by byte.
"""

from __future__ import annotations

import struct

from hyperframe.flags import Flags
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame, WindowUpdateFrame

# Frame types and flags (RFC 9113 section 6).
DATA = 0x0
HEADERS = 0x1
RST_STREAM = 0x3
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9
END_STREAM = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY = 0x20

# Length (24 bits, as 16 + 8), type, flags, stream ID: hyperframe's layout of the header.
_HEADER = struct.Struct(">HBBBL")
_U32 = struct.Struct(">L")
_pack_header = _HEADER.pack
_unpack_header = _HEADER.unpack_from
_pack_u32 = _U32.pack
_unpack_u32 = _U32.unpack_from


def frame_header(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    """The 9 bytes in front of every frame's payload."""
    return _pack_header(length >> 8, length & 0xFF, kind, flags, stream_id & 0x7FFFFFFF)


def add_header_block(out: bytearray, stream_id: int, block: bytes, size: int, end_stream: bool) -> None:
    """A header block as HEADERS and, past ``size`` bytes, CONTINUATION frames of ``size`` bytes at most."""
    n = len(block)
    first = END_STREAM if end_stream else 0
    if n <= size:
        out += _pack_header(n >> 8, n & 0xFF, HEADERS, first | END_HEADERS, stream_id & 0x7FFFFFFF)
        out += block
        return
    out += _pack_header(size >> 8, size & 0xFF, HEADERS, first, stream_id & 0x7FFFFFFF)
    out += block[:size]
    start = size
    while start < n:
        piece = block[start:start + size]
        start += size
        length = len(piece)
        out += _pack_header(length >> 8, length & 0xFF, CONTINUATION, END_HEADERS if start >= n else 0,
                            stream_id & 0x7FFFFFFF)
        out += piece


def add_data(out: bytearray, stream_id: int, data, end_stream: bool) -> None:
    """One DATA frame carrying ``data`` (bytes or a memoryview), unpadded."""
    n = len(data)
    out += _pack_header(n >> 8, n & 0xFF, DATA, END_STREAM if end_stream else 0, stream_id & 0x7FFFFFFF)
    out += data


def add_rst_stream(out: bytearray, stream_id: int, error_code: int) -> None:
    out += _pack_header(0, 4, RST_STREAM, 0, stream_id & 0x7FFFFFFF)
    out += _pack_u32(error_code)


def add_window_update(out: bytearray, stream_id: int, increment: int) -> None:
    out += _pack_header(0, 4, WINDOW_UPDATE, 0, stream_id & 0x7FFFFFFF)
    out += _pack_u32(increment & 0x7FFFFFFF)


# What a received frame's ``flags`` holds for each flag byte, per type: the names of
# the type's defined flags whose bit is set (hyperframe's ``parse_flags``), computed once.
def _names_by_byte(defined) -> tuple:
    return tuple(frozenset(name for name, bit in defined if byte & bit) for byte in range(256))


_DATA_NAMES = _names_by_byte(DataFrame.defined_flags)
_HEADERS_NAMES = _names_by_byte(HeadersFrame.defined_flags)
_DATA_VALID = frozenset(name for name, _ in DataFrame.defined_flags)
_HEADERS_VALID = frozenset(name for name, _ in HeadersFrame.defined_flags)
_NONE = frozenset()
_new = object.__new__


def _flags(valid: frozenset, names: frozenset) -> Flags:
    """The ``Flags`` hyperframe's ``Frame.__init__`` and ``parse_flags`` leave: sets of their own."""
    flags = _new(Flags)
    flags._valid_flags = set(valid)
    flags._flags = set(names)
    return flags


def read_frame(data: bytearray) -> tuple:
    """``(frame, length)`` for the frame header at the start of ``data``: the frame
    object as hyperframe's ``parse_frame_header`` makes it for a type received on
    every request, else None (hyperframe must make it), and the payload's length.

    The attributes are set in the order hyperframe's constructors set them
    (instances of a class then share one key table)."""
    high, low, kind, flag_byte, stream_id = _unpack_header(data)
    length = (high << 8) + low
    stream_id &= 0x7FFFFFFF
    if kind == DATA:
        if not stream_id:
            return None, length  # hyperframe refuses it: its error, its words
        frame = _new(DataFrame)
        frame.stream_id = stream_id
        frame.flags = _flags(_DATA_VALID, _DATA_NAMES[flag_byte])
        frame.body_len = 0
        frame.pad_length = 0
        frame.data = b""
        return frame, length
    if kind == HEADERS:
        if not stream_id:
            return None, length
        frame = _new(HeadersFrame)
        frame.stream_id = stream_id
        frame.flags = _flags(_HEADERS_VALID, _HEADERS_NAMES[flag_byte])
        frame.body_len = 0
        frame.depends_on = 0
        frame.stream_weight = 0
        frame.exclusive = False
        frame.pad_length = 0
        frame.data = b""
        return frame, length
    if kind == WINDOW_UPDATE:
        frame = _new(WindowUpdateFrame)
        frame.stream_id = stream_id
        frame.flags = _flags(_NONE, _NONE)
        frame.body_len = 0
        frame.window_increment = 0
        return frame, length
    if kind == RST_STREAM:
        if not stream_id:
            return None, length
        frame = _new(RstStreamFrame)
        frame.stream_id = stream_id
        frame.flags = _flags(_NONE, _NONE)
        frame.body_len = 0
        frame.error_code = 0
        return frame, length
    return None, length


def read_body(frame, data: bytearray, length: int) -> bool:
    """Fill a frame made by ``read_frame`` from ``data[9:9 + length]`` as hyperframe's
    ``parse_body`` would; False where hyperframe must: padding, priority, a body of
    the wrong size, an increment out of range (its errors, its words)."""
    kind = data[3]
    if kind <= HEADERS:
        if data[4] & (PADDED | PRIORITY):
            return False
        # A view's slice copied once; both views are gone before the caller shortens ``data``.
        frame.data = memoryview(data)[9:9 + length].tobytes()
        frame.body_len = length
        return True
    if length != 4:
        return False
    value = _unpack_u32(data, 9)[0]
    if kind == WINDOW_UPDATE:
        if not 1 <= value <= 0x7FFFFFFF:
            return False
        frame.window_increment = value
    else:
        frame.error_code = value
    frame.body_len = 4
    return True
