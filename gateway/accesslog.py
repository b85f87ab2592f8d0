"""The access log: one line per request, formatted on the event loop, written by a LogWriter thread.

Cost is the point of this module: the line is built by one ``%`` format over a
fixed template, and only the strings that come from outside (path, Host,
User-Agent, request id, route, consumer...) go through the C string escaper
``encode_basestring_ascii`` (quotes, backslashes, control characters,
non-ASCII as ``\\uXXXX``). Bytes from the wire are decoded as UTF-8 with
``backslashreplace`` first, so invalid UTF-8 shows as ``\\xff`` text and a line
is always valid JSON (pure ASCII, so the writer's encode is a copy). A dict and
``json.dumps`` per request cost about three times as much (see docs/metrics.md).

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

_JSON = (
    '{"time":"%s","request_id":%s,"route":%s,"method":%s,"host":%s,"path":%s,"protocol":"%s",'
    '"status":%d,"bytes_in":%d,"bytes_out":%d,"duration_ms":%.3f,"upstream_ms":%s,"upstream":%s,'
    '"consumer":%s,"client":%s,"user_agent":%s}'
)
# Combined Log Format's fields first (referer is not kept: "-"), then what it lacks.
_TEXT = (
    '%s - %s [%s] "%s %s %s" %d %d "-" %s host=%s route=%s request_id=%s '
    'duration_ms=%.3f upstream_ms=%s upstream=%s bytes_in=%d'
)


def _json_str(value: str | None) -> str:
    return "null" if value is None else _quote(value)


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


class AccessLog:
    """One line per request through a LogWriter; ``write`` is the request path's whole cost."""

    def __init__(self, writer: LogWriter | None = None, max_buffer: int = MAX_BUFFER,
                 format: str = "json", sample_2xx: float = 1.0):
        if format not in FORMATS:
            raise ValueError(f"access log format must be one of {', '.join(FORMATS)}, not {format!r}")
        if not 0.0 <= sample_2xx <= 1.0:
            raise ValueError(f"access log 2xx sample rate must be within 0..1, not {sample_2xx!r}")
        if writer is None:
            writer = LogWriter(stream_fd(sys.stdout, 1), "access-log", on_drops=_warn_dropped,
                               max_buffer=max_buffer)
        self.writer = writer
        self.format = format
        self.sample_2xx = sample_2xx
        self._add = writer.write
        self._line = self._json_line if format == "json" else self._text_line
        self._credit = 0.0  # 2xx sampling: a share of a line owed; a line is written each time it reaches 1
        self._second = -1
        self._stamp = ""
        self._clf_stamp = ""
        metrics.LOG_DROPS.access = writer

    def write(self, ex, now: float) -> None:
        if self.sample_2xx < 1.0 and 200 <= ex.status < 300:
            credit = self._credit + self.sample_2xx
            if credit < 1.0:
                self._credit = credit
                return
            self._credit = credit - 1.0
        self._add(self._line(ex, now))

    def _time(self, wall: float) -> int:
        second = int(wall)
        if second != self._second:  # the date and time to the second, formatted once a second
            self._second = second
            gm = time.gmtime(second)
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", gm)
            self._clf_stamp = time.strftime("%d/%b/%Y:%H:%M:%S", gm)
        return int((wall - second) * 1000)

    def _json_line(self, ex, now: float) -> str:
        wall = time.time()
        ms = self._time(wall)
        up = ex.upstream_time
        route = ex.route
        return _JSON % (
            "%s.%03dZ" % (self._stamp, ms),
            _json_bytes(ex.request_id),
            _quote(route.name) if route is not None else '"-"',
            _quote(ex.method),
            _json_bytes(ex.host or None),
            _json_str(ex.path or None),
            "HTTP/1.0" if ex.http10 else ex.proto.http_version,
            ex.status,
            ex.req_bytes,
            ex.resp_bytes,
            (now - ex.start) * 1000,
            "%.3f" % (up * 1000) if up else "null",
            _json_str(ex.upstream_addr),
            _json_str(ex.consumer),
            _json_str(ex.proto.peer),
            _json_bytes(ex.user_agent),
        )

    def _text_line(self, ex, now: float) -> str:
        wall = time.time()
        ms = self._time(wall)
        up = ex.upstream_time
        route = ex.route
        return _TEXT % (
            _text_str(ex.proto.peer),
            _text_str(ex.consumer),
            "%s.%03d +0000" % (self._clf_stamp, ms),
            _text_str(ex.method),
            _text_str(ex.path),
            "HTTP/1.0" if ex.http10 else ex.proto.http_version,
            ex.status,
            ex.resp_bytes,
            _quote(ex.user_agent.decode("utf-8", "backslashreplace")) if ex.user_agent is not None else '"-"',
            _text_bytes(ex.host or None),
            _text_str(route.name) if route is not None else "-",
            _text_bytes(ex.request_id),
            (now - ex.start) * 1000,
            "%.3f" % (up * 1000) if up else "-",
            _text_str(ex.upstream_addr),
            ex.req_bytes,
        )

    def close(self) -> None:
        """Write out what is buffered (bounded in time: a stalled stdout cannot hold the shutdown)."""
        self.writer.close()


def _warn_dropped(lost: int) -> None:
    log.warning("access log: %d lines dropped because stdout was not read fast enough "
                "(crdgate_access_log_dropped_total)", lost)
