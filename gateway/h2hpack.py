"""HPACK for the proxy's HTTP/2 connections, at a fraction of the ``hpack`` package's cost.

h2 compresses header blocks with the ``hpack`` package: pure Python that,
per field, searches the dynamic table linearly, Huffman-codes byte by byte and
logs each integer at debug level (the logger call is made even with the level
off). Per proxied gRPC call that was a quarter of the gateway's instructions.
``H2State`` (gateway/h2state.py) puts these two in its place, on both sides of
the proxy.

``FieldEncoder``: what we send, as nginx sends it. No field is added to the
dynamic table: each is a literal without indexing (RFC 7541 6.2.2), its name
by static-table index where it has one, its value as raw octets (no Huffman).
Encoding is then a pure function of the field, so each field's bytes are
memoised per connection (a response repeats most of the last one's fields).
The cost on the wire is the few bytes a dynamic-table reference would have
saved; the peer's decoder keeps an empty table. Credentials
(``authorization``, ``cookie``...) and ``NeverIndexedHeaderTuple`` fields are
sent never-indexed (RFC 7541 7.1.3), so intermediaries do not index them either.
After the peer changes SETTINGS_HEADER_TABLE_SIZE the next block opens with a
dynamic table size update to 0 (RFC 7541 4.2), what a decoder that lowered the
setting waits for.

``FieldDecoder``: what we receive, decoded by one loop: hpack's table,
integer and Huffman code, none of its per-field calls and logging, and the
Huffman-coded strings of this connection memoised (a peer that never indexes,
like nginx as a gRPC backend, sends the same coded values in every response).
A block that left the dynamic table as it was (indexed fields and literals
without indexing: a client repeating its request, a backend its response; also
literals "with indexing" into a table of size 0, which nginx sends) is
memoised whole, keyed by its bytes, valid while the table does not change.
The same errors as hpack's decoder, which h2 turns into a connection error.
Memos are per connection: nothing one peer sent can be timed by another.
"""

from __future__ import annotations

from hpack import Decoder
from hpack.exceptions import HPACKDecodingError, InvalidTableSizeError, OversizedHeaderListError
from hpack.hpack import decode_integer
from hpack.huffman_table import decode_huffman
from hpack.struct import HeaderTuple, NeverIndexedHeaderTuple
from hpack.table import HeaderTable

# Fields an encoder should never let a compression context keep (RFC 7541 7.1.3).
SENSITIVE = frozenset((b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"))
# Memo entries per connection and direction; past it the memo starts again. A
# response or gRPC reply repeats about a dozen fields, so a peer sending new
# values on every block costs a clear every few blocks, nothing more.
MEMO_ENTRIES = 64
# Longer strings are not memoised (a memo bounded in bytes, not only entries).
MEMO_LENGTH = 128
# Whole header blocks memoised per connection, and the longest memoised. With the
# above: at most ~70 KB of memos per connection, whatever the peer sends.
MEMO_BLOCKS = 8
MEMO_BLOCK_LENGTH = 1024

_STATIC = HeaderTable.STATIC_TABLE
_STATIC_LENGTH = len(_STATIC)
_NAME_INDEX: dict[bytes, int] = {}
for _i, (_name, _value) in enumerate(_STATIC, 1):
    _NAME_INDEX.setdefault(_name, _i)
# Entry overhead counted against the header list size (RFC 7541 4.1), as hpack counts it.
_ENTRY_OVERHEAD = 32


def _integer(value: int, prefix_bits: int, flags: int) -> bytes:
    """RFC 7541 5.1: ``value`` in a prefix of ``prefix_bits`` bits, ``flags`` in the first byte's others."""
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes((flags | value,))
    out = bytearray((flags | top,))
    value -= top
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_field(name: bytes, value: bytes, never_indexed: bool) -> bytes:
    """One field as a literal without indexing (or never indexed), its value in raw octets."""
    flags = 0x10 if never_indexed else 0x00
    index = _NAME_INDEX.get(name)
    if index is not None:
        head = _integer(index, 4, flags)
    else:
        head = bytes((flags,)) + _integer(len(name), 7, 0) + name
    return head + _integer(len(value), 7, 0) + value


class FieldEncoder:
    """An HPACK encoder that never indexes (see the module docstring). h2's ``Encoder`` interface."""

    def __init__(self) -> None:
        self._table_size = 4096  # the peer's SETTINGS_HEADER_TABLE_SIZE, as h2 reports it
        self._size_update = False
        self._memo: dict = {}

    @property
    def header_table_size(self) -> int:
        return self._table_size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        # Our table stays empty at any size; a size update tells the peer so (RFC 7541 4.2).
        self._table_size = value
        self._size_update = True

    def encode(self, headers, huffman: bool = True) -> bytes:
        """A header block for ``headers``: (name, value) pairs of bytes, names lower-case."""
        memo = self._memo
        blocks = []
        if self._size_update:
            self._size_update = False
            blocks.append(b"\x20")  # dynamic table size update: 0
        for field in headers:
            if type(field) is not tuple:
                # A HeaderTuple (h2 keeps the class it was given): equal to the plain
                # tuple, so the memo would lose its never-indexed flag; not memoised.
                name, value = field
                blocks.append(encode_field(name, value, name in SENSITIVE or not field.indexable))
                continue
            block = memo.get(field)
            if block is None:
                name, value = field
                never = name in SENSITIVE
                block = encode_field(name, value, never)
                if not never and len(value) <= MEMO_LENGTH:
                    if len(memo) >= MEMO_ENTRIES:
                        memo.clear()
                    memo[field] = block
            blocks.append(block)
        return b"".join(blocks)


class FieldDecoder(Decoder):
    """hpack's ``Decoder`` with the one-loop ``decode`` of the module docstring."""

    def __init__(self, max_header_list_size: int = 2**16) -> None:
        self._generation = 0  # changes with every change to the dynamic table
        self._list_size = 0
        super().__init__(max_header_list_size=max_header_list_size)
        self._huffman: dict[bytes, bytes] = {}
        self._blocks: dict[bytes, tuple] = {}  # block -> (table generation, fields, list size)

    @property
    def header_table_size(self) -> int:
        return self.header_table.maxsize

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._generation += 1
        self.header_table.maxsize = value

    def _string(self, data: bytes, i: int, end: int) -> tuple[bytes, int]:
        """The string literal at ``i`` (RFC 7541 5.2) and where the next field starts."""
        if i >= end:
            raise HPACKDecodingError("Truncated header block")
        first = data[i]
        length = first & 0x7F
        if length == 0x7F:
            length, used = decode_integer(data[i:i + 12], 7)
            i += used
        else:
            i += 1
        stop = i + length
        if stop > end:
            raise HPACKDecodingError("Truncated header block")
        s = data[i:stop]
        if first & 0x80:
            memo = self._huffman
            plain = memo.get(s)
            if plain is None:
                plain = decode_huffman(s)
                if length <= MEMO_LENGTH:
                    if len(memo) >= MEMO_ENTRIES:
                        memo.clear()
                    memo[s] = plain
            s = plain
        return s, stop

    def _name(self, index: int) -> bytes:
        if index <= _STATIC_LENGTH:
            return _STATIC[index - 1][0]
        return self.header_table.get_by_index(index)[0]

    def decode(self, data: bytes, raw: bool = False):
        if not raw:
            return super().decode(data, raw)
        data = bytes(data)
        limit = self.max_header_list_size
        seen = self._blocks.get(data)
        if (seen is not None and seen[0] == self._generation and seen[2] <= limit
                and self.header_table.maxsize <= self.max_allowed_table_size):
            return list(seen[1])
        generation = self._generation
        headers = self._decode(data, limit)
        if generation == self._generation and len(data) <= MEMO_BLOCK_LENGTH:
            blocks = self._blocks
            if len(blocks) >= MEMO_BLOCKS:
                blocks.clear()
            blocks[data] = (generation, tuple(headers), self._list_size)
        return headers

    def _decode(self, data: bytes, limit: int) -> list:
        table = self.header_table
        headers: list = []
        size = 0
        i = 0
        end = len(data)
        while i < end:
            first = data[i]
            if first & 0x80:  # indexed field (6.1)
                index = first & 0x7F
                if index == 0x7F:
                    index, used = decode_integer(data[i:i + 12], 7)
                    i += used
                else:
                    i += 1
                if index == 0:
                    raise HPACKDecodingError("Indexed field with index 0")
                if index <= _STATIC_LENGTH:
                    name, value = _STATIC[index - 1]
                else:
                    name, value = table.get_by_index(index)
                header = HeaderTuple(name, value)
            elif first & 0x40:  # literal with incremental indexing (6.2.1)
                index = first & 0x3F
                if index == 0x3F:
                    index, used = decode_integer(data[i:i + 12], 6)
                    i += used
                else:
                    i += 1
                if index:
                    name = self._name(index)
                else:
                    name, i = self._string(data, i, end)
                value, i = self._string(data, i, end)
                # An entry larger than the table empties it (RFC 7541 4.4): into an empty
                # one (nginx sets its size to 0, then still sends every field "with
                # indexing") nothing changes, and the memoised blocks stay valid.
                if table.dynamic_entries or _ENTRY_OVERHEAD + len(name) + len(value) <= table.maxsize:
                    table.add(name, value)
                    self._generation += 1
                header = HeaderTuple(name, value)
            elif first & 0x20:  # dynamic table size update (6.3)
                if headers:
                    raise HPACKDecodingError("Table size update not at the start of the block")
                new_size, used = decode_integer(data[i:i + 12], 5)
                i += used
                if new_size > self.max_allowed_table_size:
                    raise InvalidTableSizeError("Encoder exceeded max allowable table size")
                self.header_table_size = new_size
                continue
            else:  # literal without indexing (6.2.2) or never indexed (6.2.3)
                index = first & 0x0F
                if index == 0x0F:
                    index, used = decode_integer(data[i:i + 12], 4)
                    i += used
                else:
                    i += 1
                if index:
                    name = self._name(index)
                else:
                    name, i = self._string(data, i, end)
                value, i = self._string(data, i, end)
                header = NeverIndexedHeaderTuple(name, value) if first & 0x10 else HeaderTuple(name, value)
            headers.append(header)
            size += _ENTRY_OVERHEAD + len(name) + len(value)
            if size > limit:
                raise OversizedHeaderListError(f"A header list larger than {limit} has been received")
        if self.header_table_size > self.max_allowed_table_size:
            raise InvalidTableSizeError("Encoder did not shrink table size to within the max")
        self._list_size = size
        return headers
