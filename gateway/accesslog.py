"""The access log: one line per request, formatted on the event loop, written by a LogWriter thread.

Cost is the point of this module. It is compiled with the proxy core
(gateway/_native.py; types in accesslog.pxd), so the Exchange's fields are
read as C struct fields and each line is one f-string, which Cython turns into
a single join with C integer formatting; durations are formatted from integer
microseconds (float formatting costs more). The values that repeat from
request to request (route, method, host, client, upstream, agent) are escaped
once and memoized (``QUOTED_LIMIT`` entries, then the memo starts over); the
path and request id go through the C string escaper ``encode_basestring_ascii``
(quotes, backslashes, control characters, non-ASCII as ``\\uXXXX``) each time.
Bytes from the wire are decoded as UTF-8 with ``backslashreplace`` first, so
invalid UTF-8 shows as ``\\xff`` text and a line is always valid JSON (pure
ASCII, so the writer's encode is a copy). Measured against the alternatives
(docs/metrics.md, "Access log"): a dict through orjson or ``json.dumps`` costs
more than the line itself, and formatting in the writer thread saves nothing on
one core (the GIL is shared) while delaying the event loop for whole batches.

Formats: ``json`` (one object per line) and ``text`` (a combined-log-like line:
``client - consumer [time] "METHOD path PROTO" status bytes_out "-" "agent"``
then key=value extras). Sampling: ``sample_2xx`` below 1 keeps that share of
the 2xx lines, chosen by a deterministic accumulator (no RNG: exactly the
share, evenly spread); every other status is always logged.

The writer (gateway/logwriter.py) never blocks: a full buffer drops the line
and counts it (``crdgate_access_log_dropped_total``).
"""

from __future__ import annotations

import logging
import sys
import time
from json.encoder import encode_basestring_ascii as _quote

from gateway import metrics
from gateway.logwriter import MAX_BUFFER, LogWriter, stream_fd

log = logging.getLogger("crdgate.server")

FORMATS = ("json", "text")

_NO_AGENT = '"-"'
_NO_ROUTE = '"-"'  # answered before a route matched (404, 400...)
QUOTED_LIMIT = 512  # distinct repeated values (hosts, routes, agents...) kept escaped; then the memo starts over


def _json_bytes(value: bytes | None) -> str:
    """Wire bytes as a JSON string: invalid UTF-8 becomes ``\\xNN`` text, never an invalid line."""
    return "null" if value is None else _quote(value.decode("utf-8", "backslashreplace"))


def _text_str(value: str | None) -> str:
    """A text-format field: '-' when absent, quoted and escaped (as JSON strings) when it needs it."""
    if value is None or value == "":
        return "-"
    if value.isascii() and value.isprintable() and " " not in value and '"' not in value and "\\" not in value:
        return value
    return _quote(value)


def _text_bytes(value: bytes | None) -> str:
    return "-" if value is None else _text_str(value.decode("utf-8", "backslashreplace"))


def _ms(seconds: float) -> str:
    """Seconds as milliseconds with three decimals, in integer arithmetic (float formatting costs more)."""
    us = int(seconds * 1e6 + 0.5)
    return f"{us // 1000}.{us % 1000:03d}"


class AccessLog:
    """One line per request through a LogWriter; ``write`` is the request path's whole cost."""

    def __init__(self, writer: LogWriter | None = None, max_buffer: int = MAX_BUFFER,
                 format: str = "json", sample_2xx: float = 1.0):
        if format not in FORMATS:
            raise ValueError(f"access log format must be one of {', '.join(FORMATS)}, not {format!r}")
        if not 0.0 <= sample_2xx <= 1.0:
            raise ValueError(f"access log 2xx sample rate must be within 0..1, not {sample_2xx!r}")
        if writer is None:
            # Written from the event loop only: the writer's lock-free path.
            writer = LogWriter(stream_fd(sys.stdout, 1), "access-log", on_drops=_warn_dropped,
                               max_buffer=max_buffer, one_producer=True)
        self.writer = writer
        self.format = format
        self.sample_2xx = sample_2xx
        self._add = writer.write
        self._json = format == "json"
        self._credit = 0.0  # 2xx sampling: a share of a line owed; a line is written each time it reaches 1
        self._second = -1
        self._stamp = ""
        self._clf_stamp = ""
        self._quoted = {}  # value as received -> its escaped form, for the values that repeat
        metrics.LOG_DROPS.access = writer

    def write(self, ex, now: float) -> None:
        if self.sample_2xx < 1.0 and 200 <= ex.status < 300:
            credit = self._credit + self.sample_2xx
            if credit < 1.0:
                self._credit = credit
                return
            self._credit = credit - 1.0
        self._add(self._json_line(ex, now) if self._json else self._text_line(ex, now))

    def _time(self, wall: float) -> int:
        second = int(wall)
        if second != self._second:  # the date and time to the second, formatted once a second
            self._second = second
            gm = time.gmtime(second)
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", gm)
            self._clf_stamp = time.strftime("%d/%b/%Y:%H:%M:%S", gm)
        return int((wall - second) * 1000)

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
                q = _json_bytes(value) if isinstance(value, bytes) else _quote(value)
            else:
                q = _text_bytes(value) if isinstance(value, bytes) else _text_str(value)
            self._quoted[value] = q
        return q

    def _json_line(self, ex, now: float) -> str:
        ms = self._time(time.time())
        route = ex.route
        up = ex.upstream_time
        ep = ex.upstream_ep
        path = ex.path
        return (
            f'{{"time":"{self._stamp}.{ms:03d}Z","request_id":{_json_bytes(ex.request_id)},'
            f'"route":{self._q(route.name) if route is not None else _NO_ROUTE},'
            f'"method":{self._q(ex.method)},"host":{self._q(ex.host or None)},'
            f'"path":{_quote(path) if path else "null"},'
            f'"protocol":"{"HTTP/1.0" if ex.http10 else ex.proto.http_version}","status":{ex.status},'
            f'"bytes_in":{ex.req_bytes},"bytes_out":{ex.resp_bytes},"duration_ms":{_ms(now - ex.start)},'
            f'"upstream_ms":{_ms(up) if up else "null"},"upstream":{self._q(ep.address) if ep is not None else "null"},'
            f'"consumer":{self._q(ex.consumer)},"client":{self._q(ex.proto.peer)},'
            f'"user_agent":{self._q(ex.user_agent)}}}'
        )

    def _text_line(self, ex, now: float) -> str:
        ms = self._time(time.time())
        up = ex.upstream_time
        route = ex.route
        ep = ex.upstream_ep
        ua = ex.user_agent
        # Combined Log Format's fields first (referer is not kept: "-"), then what it lacks;
        # the agent is always quoted there, escaped as a JSON string.
        return (
            f'{self._q(ex.proto.peer)} - {self._q(ex.consumer)} [{self._clf_stamp}.{ms:03d} +0000] '
            f'"{self._q(ex.method)} {_text_str(ex.path)} {"HTTP/1.0" if ex.http10 else ex.proto.http_version}" '
            f'{ex.status} {ex.resp_bytes} "-" {self._q_agent(ua) if ua is not None else _NO_AGENT} '
            f'host={self._q(ex.host or None)} route={self._q(route.name) if route is not None else "-"} '
            f'request_id={_text_bytes(ex.request_id)} duration_ms={_ms(now - ex.start)} '
            f'upstream_ms={_ms(up) if up else "-"} upstream={self._q(ep.address) if ep is not None else "-"} '
            f'bytes_in={ex.req_bytes}'
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
        """Write out what is buffered (bounded in time: a stalled stdout cannot hold the shutdown)."""
        self.writer.close()


def _warn_dropped(lost: int) -> None:
    log.warning("access log: %d lines dropped because stdout was not read fast enough "
                "(crdgate_access_log_dropped_total)", lost)
