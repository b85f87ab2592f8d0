"""The access log's lines: valid JSON whatever the client sends, every field, text format, 2xx sampling.

Requests go through the socket-free harness (tests/protoharness.py) into a
real ``AccessLog`` whose writer only collects the lines.
"""

import json
import time

from gateway.accesslog import AccessLog
from gateway.config import Limits
from gateway.exchange import Exchange
from protoharness import Gateway
from proxyharness import route, table

FIELDS = {"time", "request_id", "route", "method", "host", "path", "protocol", "status", "bytes_in", "bytes_out",
          "duration_ms", "upstream_ms", "upstream", "consumer", "client", "user_agent"}


class Lines:
    """A LogWriter stand-in that keeps the lines."""

    def __init__(self):
        self.lines: list[str] = []
        self.dropped = 0
        self.buffered = 0

    def write(self, line: str) -> bool:
        self.lines.append(line)
        return True

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def _gateway(**log):
    gw = Gateway(None)
    b = gw.backend("b1")
    gw.server.swap(table([route(path="/api")], {"ns/svc:80": (b.endpoint,)}))
    lines = Lines()
    gw.server.access_log = AccessLog(writer=lines, **log)
    return gw, lines


async def _send(gw, raw: bytes, status: int | None = None):
    c = gw.client()
    c.send(raw)
    r = await c.response()
    if status is not None:
        assert r.status == status
    return r


async def test_a_proxied_request_has_every_field():
    gw, lines = _gateway()
    async with gw:
        await _send(gw, b"POST /api/x?q=1 HTTP/1.1\r\nHost: example.test\r\nUser-Agent: curl/8\r\n"
                        b"Content-Length: 3\r\n\r\nabc", 200)
    (line,) = lines.lines
    doc = json.loads(line)
    assert set(doc) == FIELDS
    assert doc["method"] == "POST" and doc["host"] == "example.test" and doc["path"] == "/api/x"
    assert doc["protocol"] == "HTTP/1.1" and doc["status"] == 200 and doc["bytes_in"] == 3
    assert doc["user_agent"] == "curl/8" and doc["client"] == "127.0.0.1"
    assert doc["request_id"] and doc["upstream"] and doc["route"] != "-"
    assert doc["bytes_out"] > 0 and doc["duration_ms"] >= 0 and doc["time"].endswith("Z")


async def test_http10_is_logged_as_such():
    gw, lines = _gateway()
    async with gw:
        await _send(gw, b"GET /api HTTP/1.0\r\nHost: a\r\n\r\n", 200)
    assert json.loads(lines.lines[0])["protocol"] == "HTTP/1.0"


async def test_gateway_made_answers_carry_a_request_id():
    gw, lines = _gateway()
    async with gw:
        r1 = await _send(gw, b"GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n", 404)
        r2 = await _send(gw, b"GET /nowhere HTTP/1.1\r\nHost: a\r\nX-Request-Id: mine-1\r\n\r\n", 404)
        r3 = await _send(gw, b"GET /api HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501)
    first, second, third = (json.loads(line) for line in lines.lines)
    assert first["status"] == 404 and first["request_id"]
    assert second["request_id"] == "mine-1"
    # The client gets the id the log has: it can quote it when it reports the error.
    assert r1.headers["x-request-id"] == first["request_id"]
    assert r2.headers["x-request-id"] == "mine-1"
    assert third["status"] == 501 and r3.headers["x-request-id"] == third["request_id"]


async def test_hostile_bytes_still_make_valid_json():
    gw, lines = _gateway()
    # What llhttp lets through in a field value: tab, quotes, backslashes, obs-text (invalid UTF-8).
    hostile = b"evil\t\"quote\\back\xff\xfe\xc3("
    async with gw:
        await _send(gw, b"GET /api HTTP/1.1\r\nHost: a\r\nUser-Agent: " + hostile + b"\r\nX-Request-Id: "
                    + hostile + b"\r\n\r\n")
        await _send(gw, b"GET /api/%ff%00%22x HTTP/1.1\r\nHost: a\r\n\r\n")
        await _send(gw, b"GET /api HTTP/1.1\r\nHost: a\r\nUser-Agent: \x01\x1b[31m\r\n\r\n")
    assert len(lines.lines) == 3
    for line in lines.lines:
        assert line.isascii() and "\n" not in line and "\r" not in line
        doc = json.loads(line)
        assert set(doc) == FIELDS
    ua = json.loads(lines.lines[0])["user_agent"]
    assert ua.startswith("evil\t\"quote\\back") and "\\xff\\xfe" in ua


async def test_text_format_is_a_combined_log_line():
    gw, lines = _gateway(format="text")
    async with gw:
        await _send(gw, b"GET /api/x HTTP/1.1\r\nHost: example.test\r\nUser-Agent: agent \"x\"\r\n\r\n", 200)
        await _send(gw, b"GET /api/a%20b HTTP/1.1\r\nHost: a\r\nUser-Agent: \t\xff\r\n\r\n", 200)
    first, second = lines.lines
    assert first.startswith('127.0.0.1 - - [')
    assert '] "GET /api/x HTTP/1.1" 200 ' in first
    assert '"agent \\"x\\""' in first and "host=example.test" in first and "request_id=" in first
    assert "\n" not in second and second.isascii() and '"\\\\xff"' in second


async def test_2xx_sampling_keeps_that_share_and_every_error():
    gw, lines = _gateway(sample_2xx=0.25)
    async with gw:
        c = gw.client()
        for _ in range(40):
            c.send(b"GET /api HTTP/1.1\r\nHost: a\r\n\r\n")
            await c.response()
            c.send(b"GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n")
            await c.response()
    statuses = [json.loads(line)["status"] for line in lines.lines]
    assert statuses.count(404) == 40
    assert statuses.count(200) == 10


async def test_sampling_zero_logs_no_2xx():
    gw, lines = _gateway(sample_2xx=0.0)
    async with gw:
        await _send(gw, b"GET /api HTTP/1.1\r\nHost: a\r\n\r\n", 200)
    assert lines.lines == []


def test_bad_settings_are_refused():
    import pytest
    with pytest.raises(ValueError):
        AccessLog(writer=Lines(), format="xml")
    with pytest.raises(ValueError):
        AccessLog(writer=Lines(), sample_2xx=1.5)


async def test_values_memoized_for_escaping_stay_right_when_the_memo_starts_over(monkeypatch):
    import gateway.accesslog as accesslog
    monkeypatch.setattr(accesslog, "QUOTED_LIMIT", 2)
    gw, lines = _gateway()
    hosts = [b"a.test", b"b.test", b"c.test", b"a.test", b"d.test"]
    async with gw:
        for host in hosts:
            await _send(gw, b"GET /api HTTP/1.1\r\nHost: " + host + b"\r\nUser-Agent: \xff" + host + b"\r\n\r\n", 200)
    docs = [json.loads(line) for line in lines.lines]
    assert [d["host"] for d in docs] == ["a.test", "b.test", "c.test", "a.test", "d.test"]
    assert [d["user_agent"] for d in docs] == ["\\xff" + d["host"] for d in docs]


async def test_each_line_has_its_own_values_when_they_change_from_one_request_to_the_next():
    # The line's repeated runs (route, method, host; protocol, status; consumer, client, agent)
    # are kept from the last line and made again when one of their values changes.
    gw, lines = _gateway()
    sent = [  # (client, request line and fields, expected fields)
        (0, b"GET /api HTTP/1.1\r\nHost: a.test\r\nUser-Agent: one\r\n\r\n",
         {"method": "GET", "host": "a.test", "user_agent": "one", "status": 200, "protocol": "HTTP/1.1"}),
        (0, b"GET /api HTTP/1.1\r\nHost: a.test\r\nUser-Agent: one\r\n\r\n",
         {"method": "GET", "host": "a.test", "user_agent": "one", "status": 200}),
        (0, b"POST /api HTTP/1.1\r\nHost: a.test\r\nUser-Agent: one\r\nContent-Length: 2\r\n\r\nhi",
         {"method": "POST", "host": "a.test", "bytes_in": 2, "status": 200}),
        (0, b"POST /api HTTP/1.1\r\nHost: b.test\r\nUser-Agent: one\r\nContent-Length: 0\r\n\r\n",
         {"method": "POST", "host": "b.test", "bytes_in": 0}),
        (0, b"GET /nowhere HTTP/1.1\r\nHost: b.test\r\nUser-Agent: one\r\n\r\n",
         {"route": "-", "status": 404, "upstream": None, "upstream_ms": None}),
        (0, b"GET /api HTTP/1.1\r\nHost: b.test\r\n\r\n", {"user_agent": None, "status": 200}),
        (1, b"GET /api HTTP/1.0\r\nHost: b.test\r\n\r\n",
         {"client": "10.1.2.3", "protocol": "HTTP/1.0", "user_agent": None}),
        (0, b"GET /api HTTP/1.1\r\nHost: a.test\r\nUser-Agent: two \"2\"\r\n\r\n",
         {"client": "127.0.0.1", "protocol": "HTTP/1.1", "user_agent": 'two "2"', "host": "a.test"}),
        (0, b"GET /api HTTP/1.1\r\nHost: a.test\r\nUser-Agent: one\r\n\r\n", {"user_agent": "one"}),
        # refused before it is parsed (a Host that is not UTF-8): no host, path, route nor agent
        (2, b"GET /api HTTP/1.1\r\nHost: b\xff\r\nUser-Agent: one\r\n\r\n",
         {"status": 400, "host": None, "path": None, "route": "-", "user_agent": None}),
        (3, b"GET /api HTTP/1.1\r\nHost: a.test\r\nUser-Agent: one\r\n\r\n",
         {"status": 200, "host": "a.test", "path": "/api", "user_agent": "one"}),
    ]
    async with gw:
        clients = [gw.client(), gw.client(peer=("10.1.2.3", 40001)), gw.client(), gw.client()]
        for who, raw, _ in sent:
            clients[who].send(raw)
            await clients[who].response()
    docs = [json.loads(line) for line in lines.lines]
    assert len(docs) == len(sent)
    for doc, (_, _, expected) in zip(docs, sent):
        assert set(doc) == FIELDS
        assert {k: doc[k] for k in expected} == expected, doc
    assert docs[0]["route"] == docs[2]["route"] != "-"


async def test_the_time_follows_the_wall_clock_within_a_second_when_it_is_stepped(monkeypatch):
    # The wall clock is read once a second (the monotonic clock gives the milliseconds in between):
    # a step of the wall clock (NTP) shows in the lines within a second.
    import time

    import gateway.accesslog as accesslog
    wall = [1_000_000_000.25]  # 2001-09-09T01:46:40.250Z
    mono0 = time.monotonic()
    monkeypatch.setattr(accesslog, "_wall_clock", lambda: wall[0] + (time.monotonic() - mono0))
    gw, lines = _gateway()
    async with gw:
        await _send(gw, b"GET /api HTTP/1.1\r\nHost: a\r\n\r\n", 200)
        first = json.loads(lines.lines[-1])["time"]
        wall[0] += 3600.0  # stepped an hour ahead
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            await _send(gw, b"GET /api HTTP/1.1\r\nHost: a\r\n\r\n", 200)
            if json.loads(lines.lines[-1])["time"].startswith("2001-09-09T02:"):
                break
        stepped_after = time.monotonic() - (deadline - 5.0)
    assert first.startswith("2001-09-09T01:46:40.") and first.endswith("Z")
    assert json.loads(lines.lines[-1])["time"].startswith("2001-09-09T02:46:4")
    assert stepped_after < 2.0


async def test_text_lines_have_their_own_values_when_they_change_from_one_request_to_the_next():
    gw, lines = _gateway(format="text")
    async with gw:
        a, b = gw.client(), gw.client(peer=("10.1.2.3", 40001))
        for c, raw in [
            (a, b"GET /api/x HTTP/1.1\r\nHost: a.test\r\nUser-Agent: one\r\n\r\n"),
            (a, b"GET /api/x HTTP/1.1\r\nHost: a.test\r\nUser-Agent: one\r\nX-Request-Id: my id\r\n\r\n"),
            (a, b"GET /nowhere HTTP/1.1\r\nHost: b.test\r\nUser-Agent: one\r\n\r\n"),
            (a, b"POST /api/y HTTP/1.1\r\nHost: b.test\r\nContent-Length: 2\r\n\r\nhi"),
            (b, b"GET /api/x HTTP/1.0\r\nHost: b.test\r\nUser-Agent: two\r\n\r\n"),
        ]:
            c.send(raw)
            await c.response()
    first, second, third, fourth, fifth = lines.lines
    assert first.startswith("127.0.0.1 - - [") and '"GET /api/x HTTP/1.1" 200 ' in first
    assert ' "-" "one" host=a.test route=' in first and " route=- " not in first
    assert 'request_id="my id" ' in second and first.split("request_id=")[1][:1] != '"'
    assert '"GET /nowhere HTTP/1.1" 404 ' in third and " host=b.test route=- request_id=" in third
    assert " upstream_ms=- upstream=- bytes_in=0" in third
    assert '"POST /api/y HTTP/1.1" 200 ' in fourth and ' "-" "-" host=b.test ' in fourth
    assert fourth.endswith(" bytes_in=2")
    assert fifth.startswith("10.1.2.3 - - [") and '"GET /api/x HTTP/1.0" 200 ' in fifth and '"two"' in fifth


async def test_a_request_refused_before_its_head_is_parsed_logs_the_method_the_parser_saw_or_a_dash():
    gw = Gateway(None, limits=Limits(header_timeout=2.0, max_uri_bytes=64))
    b = gw.backend("b1")
    gw.server.swap(table([route(path="/api")], {"ns/svc:80": (b.endpoint,)}))
    lines = Lines()
    gw.server.access_log = AccessLog(writer=lines)
    async with gw:
        # Refused in a header callback, after the request line: its method was read.
        await _send(gw, b"POST /api HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)
        # Refused while the target was read (too long): the method came before it.
        await _send(gw, b"DELETE /" + b"x" * 100 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414)
        # Not HTTP at all: no method was read.
        await _send(gw, b"\x00\x01garbage\r\n\r\n", 400)
        # A head that never completes: 408, with the method of its request line.
        c = gw.client()
        c.send(b"PUT /api HTTP/1.1\r\nHost: a\r\n")
        gw.advance(2.5)
        assert (await c.response()).status == 408
    methods = [(json.loads(line)["status"], json.loads(line)["method"]) for line in lines.lines]
    assert methods == [(400, "POST"), (414, "DELETE"), (400, "-"), (408, "PUT")]


async def test_a_line_without_a_request_id_or_a_path_has_nulls_and_stays_valid_json():
    gw, lines = _gateway()
    async with gw:
        await _send(gw, b"GET /api HTTP/1.1\r\nHost: a\r\nX-Request-Id: say \"hi\"\r\n\r\n", 200)
        # An exchange that never got an id nor a path (nothing the gateway answers today
        # lacks an id, but the line must not depend on it).
        c = gw.client()
        ex = Exchange(c.protocol)
        ex.status = 400
        gw.server.access_log.write(ex, time.monotonic())
        await _send(gw, b"GET /api HTTP/1.1\r\nHost: a\r\n\r\n", 200)
    first, bare, last = (json.loads(line) for line in lines.lines)
    assert first["request_id"] == 'say "hi"' and first["path"] == "/api"
    assert bare["request_id"] is None and bare["path"] is None and bare["method"] == "-" and bare["status"] == 400
    assert set(bare) == FIELDS
    assert last["request_id"] and last["path"] == "/api"
