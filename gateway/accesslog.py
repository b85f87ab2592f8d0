"""The access log: one line per request, formatted and written by the event loop.

Cost is the point of this module. It is compiled with the proxy core
(gateway/_native.py; types in accesslog.pxd), so the Exchange's fields are
read as C struct fields. A JSON line cost about 13,400 instructions (callgrind,
one line of a proxied request), 7,700 after a first pass, 3,400 after a second,
about 2,100 now. What it takes:

- the runs of a line that repeat from request to request are kept with the
  values they were made of, and made again only when one of those changes:
  route, method and host; protocol and status; consumer, client and user
  agent (a value is checked by identity first, then by equality: the Host and
  User-Agent are new bytes each request). Made again, each value comes from a
  memo of escaped values (``QUOTED_LIMIT`` entries, then it starts over); the
  endpoint by identity, since its ``address`` is formatted on each read;
- the request id and the path, new each time, are checked by a C loop over
  their characters (``_plain``, ``_json_bytes_inner``) and put between the
  line's own quotes as they are when they need no escaping; the rest goes
  through the C escaper ``encode_basestring_ascii`` (quotes, backslashes,
  control characters, non-ASCII as ``\\uXXXX``);
- durations are C integers (microseconds) written as ``ms.fff``, integers below
  1000 come from tables (``_SMALL``, ``_DOT_MS3``, and the field name with its
  value: ``_BYTES_OUT``...), so a small integer is one piece of the line;
- the wall clock is read once a second (the line's time is the monotonic
  clock of the request's end plus an offset read again each second), the
  date and time formatted then, and the head up to the milliseconds shared by
  the lines of one millisecond;
- a JSON line is not joined into a str: its pieces are copied one by one into
  the event loop's writer's batch, which is bytes (``LineBuffer``, a ``memcpy``
  a piece), so no object is made per line and the batch needs no join or
  encode; the request id the gateway made is copied as it is (only a client's
  is checked). For another writer (the writer thread) the line is made the same
  way in a buffer of its own, then handed over as a str. The text format is one
  f-string (a single join) handed to the writer.

Bytes from the wire are decoded as UTF-8 with ``backslashreplace`` first, so
invalid UTF-8 shows as ``\\xff`` text and a line is always valid JSON (pure
ASCII, so the writer's encode is a copy). Measured against the alternatives
(docs/metrics.md, "Access log"): a dict through orjson or ``json.dumps`` costs
more than the line itself.

Formats: ``json`` (one object per line) and ``text`` (a combined-log-like line:
``client - consumer [time] "METHOD path PROTO" status bytes_out "-" "agent"``
then key=value extras). Sampling: ``sample_2xx`` below 1 keeps that share of
the 2xx lines, chosen by a deterministic accumulator (no RNG: exactly the
share, evenly spread); every other status is always logged.

The writer (gateway/loopwriter.py; the writer thread of gateway/logwriter.py
where stdout cannot be written without waiting) never blocks: a full buffer
drops the line and counts it (``crdgate_access_log_dropped_total``).
"""

from __future__ import annotations

import logging
import sys
import time
from json.encoder import encode_basestring_ascii as _quote

from gateway import metrics
from gateway.logwriter import MAX_BUFFER, LogWriter, stream_fd
from gateway.loopwriter import LineBuffer, LoopLogWriter, open_target

log = logging.getLogger("crdgate.server")

FORMATS = ("json", "text")

_NO_AGENT = '"-"'
_NO_ROUTE = '"-"'  # answered before a route matched (404, 400...)
QUOTED_LIMIT = 512  # distinct repeated values (hosts, routes, agents...) kept escaped; then the memo starts over
_wall_clock = time.time  # bound once: no attribute lookup per line
_mono_clock = time.monotonic


_MS3 = tuple(f"{i:03d}" for i in range(1000))  # milliseconds (and the fraction of a millisecond) as three digits
_DOT_MS3 = tuple(f".{i:03d}" for i in range(1000))  # the same after the decimal point: one piece of the line less
_SMALL = tuple(str(i) for i in range(1000))  # integers below 1000 (byte counts, whole milliseconds) as text


def _prefixed(prefix: str) -> tuple:
    """A field's name and the integers below 1000 after it: the line's piece for a small value."""
    return tuple(prefix + text for text in _SMALL)


# A JSON line's integer fields with their names: one piece of the line each (not two) below 1000.
_BYTES_OUT = _prefixed(',"bytes_out":')
_DURATION_MS = _prefixed(',"duration_ms":')
_UPSTREAM_MS = _prefixed(',"upstream_ms":')


def _int(n: int) -> str:
    """A non-negative integer as text: from a table below 1000 (no new object)."""
    if n < 1000:
        return _SMALL[n]
    return str(n)


def _field_int(table: tuple, n: int) -> str:
    """A field (name and value) from a ``_prefixed`` table: the name taken from entry 0 above 999."""
    if n < 1000:
        return table[n]
    return table[0][:-1] + str(n)


def _plain(value: str) -> bool:
    """Printable ASCII without a quote or a backslash: a JSON string as it is, between quotes.

    A loop over C characters when compiled (``str.isprintable`` would be a Python
    method call, which costs more than the whole scan of a path or an id)."""
    for ch in value:
        if ch < " " or ch > "~" or ch == '"' or ch == "\\":
            return False
    return True


def _json(value: str) -> str:
    """A str as a JSON string: the common case is one concatenation, the rest goes through the C escaper."""
    if _plain(value):
        return f'"{value}"'
    return _quote(value)


def _json_inner(value: str) -> str:
    """A str as the inside of a JSON string (the quotes are the line's): itself when it needs no escaping."""
    if _plain(value):
        return value
    return _quote(value)[1:-1]


def _json_bytes(value: bytes | None) -> str:
    """Wire bytes as a JSON string: invalid UTF-8 becomes ``\\xNN`` text, never an invalid line."""
    if value is None:
        return "null"
    return f'"{_json_bytes_inner(value)}"'


def _plain_bytes(value: bytes) -> bool:
    """Printable ASCII without a quote or a backslash: wire bytes that go into a JSON string as they are."""
    for c in value:
        if c < 32 or c > 126 or c == 34 or c == 92:  # control, non-ASCII, '"', '\\'
            return False
    return True


def _json_bytes_inner(value: bytes) -> str:
    """Wire bytes as the inside of a JSON string; invalid UTF-8 becomes ``\\xNN`` text.

    The common case (printable ASCII: an id the gateway made, a plain Host or
    User-Agent) is a C loop over the bytes and an ASCII decode."""
    for c in value:
        if c < 32 or c > 126 or c == 34 or c == 92:  # control, non-ASCII, '"', '\\'
            return _quote(value.decode("utf-8", "backslashreplace"))[1:-1]
    return value.decode("ascii")


def _text_str(value: str | None) -> str:
    """A text-format field: '-' when absent, quoted and escaped (as JSON strings) when it needs it."""
    if value is None or value == "":
        return "-"
    if _plain(value) and " " not in value:
        return value
    return _quote(value)


def _text_bytes(value: bytes | None) -> str:
    """Wire bytes as a text-format field (see ``_text_str``); invalid UTF-8 becomes ``\\xNN`` text."""
    if value is None:
        return "-"
    if value:
        for c in value:
            if c <= 32 or c > 126 or c == 34 or c == 92:  # control, space, non-ASCII, '"', '\\'
                return _text_str(value.decode("utf-8", "backslashreplace"))
        return value.decode("ascii")
    return "-"


class AccessLog:
    """One line per request through a log writer; ``write`` is the request path's whole cost."""

    def __init__(self, writer=None, max_buffer: int = MAX_BUFFER,
                 format: str = "json", sample_2xx: float = 1.0):
        if format not in FORMATS:
            raise ValueError(f"access log format must be one of {', '.join(FORMATS)}, not {format!r}")
        if not 0.0 <= sample_2xx <= 1.0:
            raise ValueError(f"access log 2xx sample rate must be within 0..1, not {sample_2xx!r}")
        if writer is None:
            writer = stdout_writer(max_buffer)
        self.writer = writer
        self.format = format
        self.sample_2xx = sample_2xx
        self._add = writer.write
        # The event loop's writer is called as a C method when compiled (no Python call per line).
        self._loop_writer = writer if isinstance(writer, LoopLogWriter) else None
        self._scratch = LineBuffer(1024)  # a JSON line made for another writer, which takes str
        self._json = format == "json"
        self._credit = 0.0  # 2xx sampling: a share of a line owed; a line is written each time it reaches 1
        self._second = -1
        self._next_second = 0.0  # the monotonic clock's value when the wall clock's second ends
        self._wall_offset = 0.0  # wall clock minus monotonic clock, read again each second
        self._time_head = ""
        self._clf_stamp = ""
        self._t = ""  # a JSON line's head to the millisecond: the lines of one millisecond share it
        self._t_ms = -1
        # The line's runs that repeat from request to request, each kept with the values it was
        # made of (a new value only makes it again): route, method and host; protocol and status;
        # consumer, client and user agent.
        self._a = self._b = self._c = ""
        self._a_route = None
        self._a_method = None
        self._a_host = None
        self._b_proto = None
        self._b_status = -1
        self._c_consumer = None
        self._c_peer = None
        self._c_agent = None
        self._quoted = {}  # value as received -> its escaped form, for the values that repeat
        self._upstreams = {}  # id(endpoint) -> (endpoint, "host:port" escaped): see _upstream
        self._last_ep = None
        self._last_ep_q = ""
        metrics.LOG_DROPS.access = writer

    def write(self, ex, now: float) -> None:
        if self.sample_2xx < 1.0 and 200 <= ex.status < 300:
            credit = self._credit + self.sample_2xx
            if credit < 1.0:
                self._credit = credit
                return
            self._credit = credit - 1.0
        if not self._json:
            line = self._text_line(ex, now)
            if self._loop_writer is not None:
                self._loop_writer.write(line)
            else:
                self._add(line)
        elif self._loop_writer is not None:
            # The line's pieces go straight into the writer's batch (bytes, in place).
            self._json_line(ex, now, self._loop_writer.start_line())
            self._loop_writer.end_line()
        else:
            buf = self._scratch
            buf.clear()
            self._json_line(ex, now, buf)
            self._add(buf.text(0))

    def _ms(self, now: float) -> int:
        """The wall clock's milliseconds at ``now`` (the monotonic clock); the date and time to the
        second are formatted once a second.

        The wall clock is the monotonic one plus an offset read again each
        second, with the formatting: a wall clock stepped (NTP) shows in the
        lines within a second, and a line costs no clock call of its own.
        """
        if now >= self._next_second:
            self._wall_offset = _wall_clock() - _mono_clock()
            wall = now + self._wall_offset
            second = int(wall)
            self._next_second = now + (second + 1 - wall)
            if second != self._second:
                self._second = second
                self._t_ms = -1
                gm = time.gmtime(second)
                self._time_head = '{"time":"' + time.strftime("%Y-%m-%dT%H:%M:%S", gm) + "."
                self._clf_stamp = time.strftime("%d/%b/%Y:%H:%M:%S", gm)
        ms = int((now + self._wall_offset - self._second) * 1000.0)
        return 0 if ms < 0 else 999 if ms > 999 else ms

    def _q(self, value) -> str:
        """A value that repeats from request to request (host, route, client, agent...), escaped once.

        Keyed by the value itself (str or wire bytes), in the line's format;
        bounded: a client cycling through hosts or agents only starts the memo over.
        """
        if value is None:
            return "null" if self._json else "-"
        q = self._quoted.get(value)
        if q is None:
            if len(self._quoted) >= QUOTED_LIMIT:
                self._quoted.clear()
            if self._json:
                q = _json_bytes(value) if isinstance(value, bytes) else _json(value)
            else:
                q = _text_bytes(value) if isinstance(value, bytes) else _text_str(value)
            self._quoted[value] = q
        return q

    def _upstream(self, ep) -> str:
        """The endpoint tried last, ``host:port`` escaped (in JSON with its field's name before it),
        memoized by the Endpoint object.

        Its ``address`` is formatted on each read, and a frozen dataclass hashes
        through Python code, so the memo is keyed by ``id``: safe, because the
        memo holds the endpoint (its id cannot be reused while it is a key) and
        the entry is checked to be that very object.
        """
        if ep is self._last_ep:  # one endpoint serves most requests in a row
            return self._last_ep_q
        key = id(ep)
        entry = self._upstreams.get(key)
        if entry is not None and entry[0] is ep:
            q = entry[1]
        else:
            if len(self._upstreams) >= QUOTED_LIMIT:
                self._upstreams.clear()
            q = ',"upstream":' + _json(ep.address) if self._json else _text_str(ep.address)
            self._upstreams[key] = (ep, q)
        self._last_ep = ep
        self._last_ep_q = q
        return q

    def _json_line(self, ex, now: float, buf) -> None:
        """Append the request's JSON line (without its newline) to ``buf``, piece by piece."""
        ms = self._ms(now)
        if ms != self._t_ms:
            self._t = f'{self._time_head}{_MS3[ms]}Z","request_id":"'
            self._t_ms = ms
        route = ex.route
        method = ex.method
        host = ex.host
        proto = ex.proto
        ep = ex.upstream_ep
        path = ex.path
        rid = ex.request_id
        # The runs that repeat (see __init__), checked against the values they were made of:
        # the same objects (a connection's peer, the parser's method) or equal bytes (a Host
        # parsed again for each request).
        if route is not self._a_route or method != self._a_method or host != self._a_host:
            self._a = (f'","route":{self._q(route.name) if route is not None else _NO_ROUTE},'
                       f'"method":{self._q(method)},"host":{self._q(host or None)},"path":"')
            self._a_route = route
            self._a_method = method
            self._a_host = host
        protocol = "HTTP/1.0" if ex.http10 else proto.http_version
        status = ex.status
        if status != self._b_status or protocol != self._b_proto:
            self._b = f'","protocol":"{protocol}","status":{status},"bytes_in":'
            self._b_proto = protocol
            self._b_status = status
        consumer = ex.consumer
        peer = proto.peer
        agent = ex.user_agent
        # (``is`` first: a rich comparison costs more than the values that are the same object)
        if ((consumer is not self._c_consumer and consumer != self._c_consumer)
                or (peer is not self._c_peer and peer != self._c_peer) or agent != self._c_agent):
            self._c = (f',"consumer":{self._q(consumer)},"client":{self._q(peer)},'
                       f'"user_agent":{self._q(agent)}}}')
            self._c_consumer = consumer
            self._c_peer = peer
            self._c_agent = agent
        # The request id and the path, new each request, go between the quotes that end the
        # runs before them and begin the runs after them (``_t`` ends with one, ``_a`` starts
        # and ends with one, ``_b`` starts with one); absent, they are null, without the quotes.
        # An id the gateway made is printable ASCII: its bytes go in as they are; a client's is
        # checked first.
        if rid is not None:
            buf.put(self._t)
            if ex.request_id_made or _plain_bytes(rid):
                buf.put_bytes(rid)
            else:
                buf.put(_json_bytes_inner(rid))
            buf.put(self._a)
        else:
            buf.put(self._t[:-1])
            buf.put("null")
            buf.put(self._a[1:])
        if path:
            buf.put(_json_inner(path))
            buf.put(self._b)
        else:
            buf.cut(buf.length - 1)  # the quote that would have begun it
            buf.put("null")
            buf.put(self._b[1:])
        # Durations in integer microseconds, written as milliseconds with three decimals
        # (float formatting costs more); byte counts as C integers when compiled.
        total = int((now - ex.start) * 1e6 + 0.5)
        bytes_in = ex.req_bytes
        bytes_out = ex.resp_bytes
        buf.put(_int(bytes_in))
        buf.put(_field_int(_BYTES_OUT, bytes_out))
        buf.put(_field_int(_DURATION_MS, total // 1000))
        buf.put(_DOT_MS3[total % 1000])
        up = ex.upstream_time
        if up:
            up_us = int(up * 1e6 + 0.5)
            buf.put(_field_int(_UPSTREAM_MS, up_us // 1000))
            buf.put(_DOT_MS3[up_us % 1000])
        else:
            buf.put(',"upstream_ms":null')
        buf.put(self._upstream(ep) if ep is not None else ',"upstream":null')
        buf.put(self._c)

    def _text_line(self, ex, now: float) -> str:
        ms = self._ms(now)
        if ms != self._t_ms:
            self._t = f'{self._clf_stamp}.{_MS3[ms]} +0000] "'
            self._t_ms = ms
        route = ex.route
        method = ex.method
        host = ex.host
        proto = ex.proto
        ep = ex.upstream_ep
        agent = ex.user_agent
        # The text line's repeated runs, kept as the JSON line's are (the same slots: a log has
        # one format): client and consumer; protocol and status; agent, host and route.
        consumer = ex.consumer
        peer = proto.peer
        if ((consumer is not self._c_consumer and consumer != self._c_consumer)
                or (peer is not self._c_peer and peer != self._c_peer)):
            self._c = f'{self._q(peer)} - {self._q(consumer)} ['
            self._c_consumer = consumer
            self._c_peer = peer
        protocol = "HTTP/1.0" if ex.http10 else proto.http_version
        status = ex.status
        if status != self._b_status or protocol != self._b_proto:
            self._b = f' {protocol}" {status} '
            self._b_proto = protocol
            self._b_status = status
        if route is not self._a_route or host != self._a_host or agent != self._c_agent:
            # Combined Log Format's fields first (referer is not kept: "-"), then what it lacks;
            # the agent is always quoted there, escaped as a JSON string.
            self._a = (f' "-" {self._q_agent(agent) if agent is not None else _NO_AGENT} host={self._q(host or None)} '
                       f'route={self._q(route.name) if route is not None else "-"} request_id=')
            self._a_route = route
            self._a_host = host
            self._c_agent = agent
        total = int((now - ex.start) * 1e6 + 0.5)
        up = ex.upstream_time
        if up:
            up_us = int(up * 1e6 + 0.5)
            up_int = _int(up_us // 1000)
            up_frac = _DOT_MS3[up_us % 1000]
        else:
            up_int = "-"
            up_frac = ""
        bytes_in = ex.req_bytes
        bytes_out = ex.resp_bytes
        return (
            f'{self._c}{self._t}{self._q(method)} {_text_str(ex.path)}{self._b}{_int(bytes_out)}{self._a}'
            f'{_text_bytes(ex.request_id)} duration_ms={_int(total // 1000)}{_DOT_MS3[total % 1000]} '
            f'upstream_ms={up_int}{up_frac} upstream={self._upstream(ep) if ep is not None else "-"} '
            f'bytes_in={_int(bytes_in)}'
        )

    def _q_agent(self, ua: bytes) -> str:
        """The text format's User-Agent: always quoted (memoized under its own key)."""
        key = (ua,)
        q = self._quoted.get(key)
        if q is None:
            if len(self._quoted) >= QUOTED_LIMIT:
                self._quoted.clear()
            q = self._quoted[key] = _quote(ua.decode("utf-8", "backslashreplace"))
        return q

    def close(self) -> None:
        """Write out what is buffered, when no event loop runs (bounded in time)."""
        self.writer.close()

    async def aclose(self) -> None:
        """Write out what is buffered, on the event loop (bounded in time: a stalled stdout cannot hold
        the shutdown)."""
        await self.writer.aclose()


def stdout_writer(max_buffer: int = MAX_BUFFER):
    """The access log's writer: from the event loop when stdout can be written without waiting
    (gateway/loopwriter.py), else the writer thread (gateway/logwriter.py)."""
    fd = stream_fd(sys.stdout, 1)
    target = open_target(fd)
    if target is not None:
        return LoopLogWriter(target, "access-log", on_drops=_warn_dropped, max_buffer=max_buffer)
    # Written from the event loop only: the writer's lock-free path.
    return LogWriter(fd, "access-log", on_drops=_warn_dropped, max_buffer=max_buffer, one_producer=True)


def _warn_dropped(lost: int) -> None:
    log.warning("access log: %d lines dropped because stdout was not read fast enough "
                "(crdgate_access_log_dropped_total)", lost)
