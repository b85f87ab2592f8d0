"""gateway/h2hpack.py: the HPACK encoder and decoder of our HTTP/2 connections.

Each is checked against the ``hpack`` package (the reference it replaces):
what ours encodes, hpack decodes to the same fields; what hpack encodes
(indexed, literal, Huffman-coded, never-indexed, table size updates), ours
decodes as hpack does, errors included. Then through h2 itself (``H2State``
both sides), a table size change the peer asked for.
"""

from __future__ import annotations

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import RequestReceived, ResponseReceived
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes
from hpack import Decoder, Encoder, HPACKDecodingError, NeverIndexedHeaderTuple
from hpack.exceptions import OversizedHeaderListError

from gateway.h2hpack import MEMO_ENTRIES, FieldDecoder, FieldEncoder
from gateway.h2state import H2State

RESPONSE = [(b":status", b"200"), (b"server", b"nginx"), (b"date", b"Thu, 03 Dec 2026 22:40:00 GMT"),
            (b"content-type", b"text/plain"), (b"x-request-id", b"5f0c6b2e"), (b"x-long", b"v" * 300),
            (b"x-custom-field-with-a-long-name", b"")]


def _requests(n: int) -> list[list[tuple[bytes, bytes]]]:
    return [[(b":method", b"POST" if i % 2 else b"GET"), (b":path", b"/p/%d" % i + b"x" * (i * 13)),
             (b":scheme", b"https"), (b":authority", b"api.example.com"), (b"user-agent", b"grpc-python/1.6"),
             (b"x-n", b"%d" % (i % 3)), (b"x-big-%d" % i, b"y" * (i * 40))] for i in range(n)]


def test_encoded_blocks_decode_as_sent_by_hpack():
    ours, reference = FieldEncoder(), Decoder()
    for _ in range(3):  # memoised fields encode the same
        assert reference.decode(ours.encode(RESPONSE), raw=True) == RESPONSE
    # The peer's decoder keeps an empty table: we never index.
    assert len(reference.header_table.dynamic_entries) == 0


def test_credentials_are_sent_never_indexed():
    ours, reference = FieldEncoder(), Decoder()
    fields = [(b"authorization", b"Bearer x"), (b"cookie", b"a=1"), NeverIndexedHeaderTuple(b"x-key", b"k"),
              (b"x-plain", b"p")]
    got = reference.decode(ours.encode(fields), raw=True)
    assert got == fields
    assert [type(f) is NeverIndexedHeaderTuple for f in got] == [True, True, True, False]


def test_table_size_change_is_acknowledged_with_a_size_update():
    ours, reference = FieldEncoder(), Decoder()
    ours.header_table_size = 0  # the peer's SETTINGS_HEADER_TABLE_SIZE changed
    block = ours.encode(RESPONSE)
    assert block[0] == 0x20  # dynamic table size update: 0, first in the block (RFC 7541 4.2)
    reference.max_allowed_table_size = 0
    assert reference.decode(block, raw=True) == RESPONSE
    assert ours.encode(RESPONSE)[0] != 0x20  # once


@pytest.mark.parametrize("huffman", [True, False])
def test_decodes_what_hpack_encodes(huffman):
    theirs, ours, reference = Encoder(), FieldDecoder(), Decoder()
    for fields in _requests(40) * 2:
        block = theirs.encode(fields, huffman=huffman)
        assert ours.decode(block, raw=True) == reference.decode(block, raw=True) == fields
    assert len(ours._huffman) <= MEMO_ENTRIES


def test_decodes_never_indexed_and_table_size_updates():
    theirs, ours = Encoder(), FieldDecoder()
    theirs.header_table_size = 256
    block = theirs.encode([NeverIndexedHeaderTuple(b"authorization", b"secret"), (b"x-a", b"1")])
    got = ours.decode(block, raw=True)
    assert got == [(b"authorization", b"secret"), (b"x-a", b"1")]
    assert type(got[0]) is NeverIndexedHeaderTuple
    assert ours.header_table_size == 256


@pytest.mark.parametrize("block", [
    b"\x80",  # indexed field 0
    b"\xbf\x7f",  # an index past the tables
    b"\x40\x05ab",  # a name shorter than its length
    b"\x0f",  # an integer cut short
    b"\x00\x7f",
    b"\x82\x20",  # a size update after a field
    b"\x3f\xe1\x7f",  # a size update past the allowed size
    b"\x1f" + b"\xff" * 14,  # an integer without end
    b"\x00\x81\xff",  # a Huffman string with EOS
])
def test_malformed_blocks_are_decoding_errors(block):
    with pytest.raises(HPACKDecodingError):
        Decoder().decode(block, raw=True)  # the reference agrees it is malformed
    with pytest.raises(HPACKDecodingError):
        FieldDecoder().decode(block, raw=True)


def test_header_list_size_is_enforced():
    ours = FieldDecoder(max_header_list_size=200)
    block = Encoder().encode([(b"x-a", b"v" * 100), (b"x-b", b"v" * 100)])
    with pytest.raises(OversizedHeaderListError):
        ours.decode(block, raw=True)


def test_through_h2_both_ways_with_a_table_size_change():
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    server = H2State(H2Configuration(client_side=False, header_encoding=None))
    client.initiate_connection()
    client.update_settings({SettingCodes.HEADER_TABLE_SIZE: 0})
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    for i, fields in enumerate(_requests(5)):
        sid = 2 * i + 1
        client.send_headers(sid, fields, end_stream=True)
        events = server.receive_data(client.data_to_send())
        assert [e.headers for e in events if isinstance(e, RequestReceived)] == [fields]
        server.send_headers(sid, RESPONSE, end_stream=True)
        events = client.receive_data(server.data_to_send())
        assert [e.headers for e in events if isinstance(e, ResponseReceived)] == [RESPONSE]


def test_h2_turns_a_decoding_error_into_a_connection_error():
    server = H2State(H2Configuration(client_side=False, header_encoding=None))
    server.initiate_connection()
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    server.receive_data(client.data_to_send())
    # HEADERS on stream 1, END_HEADERS, carrying indexed field 0.
    with pytest.raises(ProtocolError):
        server.receive_data(b"\x00\x00\x01\x01\x05\x00\x00\x00\x01\x80")


def test_a_repeated_block_decodes_the_same_while_the_table_holds():
    theirs, ours, reference = Encoder(), FieldDecoder(), Decoder()
    first = [(b":method", b"GET"), (b":path", b"/a"), (b"x-a", b"1")]
    second = [(b":method", b"GET"), (b":path", b"/b"), (b"x-a", b"1")]
    for fields in (first, first, first, second, first, second, second):
        block = theirs.encode(fields)
        got = ours.decode(block, raw=True)
        assert got == reference.decode(block, raw=True) == fields
        got.append((b"x-mutated", b"by the caller"))  # the memo hands out copies
    # The same bytes meaning other fields once the table changed (index 62: the newest entry).
    ours, reference = FieldDecoder(), Decoder()
    for fields in ([(b"x-a", b"1")], [(b"x-b", b"2")]):
        add = Encoder().encode(fields)  # literal with indexing: the entry becomes index 62
        assert ours.decode(add, raw=True) == reference.decode(add, raw=True) == fields
        assert ours.decode(b"\xbe", raw=True) == reference.decode(b"\xbe", raw=True) == fields


def test_a_repeated_block_still_needs_the_table_size_update_we_asked_for():
    ours = FieldDecoder()
    block = Encoder().encode([(b":method", b"GET")])
    ours.decode(block, raw=True)
    ours.max_allowed_table_size = 0  # our smaller SETTINGS_HEADER_TABLE_SIZE, acknowledged
    with pytest.raises(HPACKDecodingError):
        ours.decode(block, raw=True)  # the peer did not shrink its table
    assert ours.decode(b"\x20" + block, raw=True) == [(b":method", b"GET")]


def test_a_field_sent_never_indexed_after_the_same_field_plain_stays_never_indexed():
    ours, reference = FieldEncoder(), Decoder()
    plain = (b"x-key", b"k")
    reference.decode(ours.encode([plain]), raw=True)  # memoised as a plain literal
    got = reference.decode(ours.encode([NeverIndexedHeaderTuple(*plain)]), raw=True)
    assert got == [plain] and type(got[0]) is NeverIndexedHeaderTuple


def test_fields_added_to_a_table_of_size_0_leave_the_memo_valid():
    # nginx as an HTTP/2 server: a table size update to 0, then its head's fields
    # "with incremental indexing" (stored nowhere) and its trailers without indexing.
    theirs, reference = Encoder(), Decoder()
    theirs.header_table_size = 0
    head = theirs.encode([(b":status", b"200"), (b"server", b"nginx"), (b"content-type", b"application/grpc")],
                         huffman=True)
    trailers = theirs.encode([(b"grpc-status", b"0"), (b"grpc-message", b"OK")])
    assert head[:1] == b"\x20" and head[1:2] == b"\x88" and head[2] & 0xC0 == 0x40  # size update, indexed, literal with indexing
    ours = FieldDecoder()
    reference.header_table_size = 4096
    decoded = []
    calls = 0
    original = ours._decode

    def counting(data, limit):
        nonlocal calls
        calls += 1
        return original(data, limit)

    ours._decode = counting
    later_head = head[1:]  # the size update comes once
    for block in (head, trailers, later_head, trailers, later_head, trailers):
        got = ours.decode(block, raw=True)
        assert got == reference.decode(block, raw=True)
        decoded.append(got)
    assert len(ours.header_table.dynamic_entries) == 0 == len(reference.header_table.dynamic_entries)
    assert calls == 3  # the first head, the first trailers, the head without its size update: then memoised
    # A table with entries is still emptied by an entry too large for it, and the memo follows.
    ours = FieldDecoder()
    assert ours.decode(Encoder().encode([(b"x-a", b"1")]), raw=True) == [(b"x-a", b"1")]
    ours.header_table.maxsize = 40
    assert ours.decode(b"\xbe", raw=True) == [(b"x-a", b"1")]
    big = Encoder()
    big.header_table_size = 4096
    assert ours.decode(big.encode([(b"x-big", b"v" * 100)]), raw=True) == [(b"x-big", b"v" * 100)]
    assert len(ours.header_table.dynamic_entries) == 0
    with pytest.raises(HPACKDecodingError):
        ours.decode(b"\xbe", raw=True)
