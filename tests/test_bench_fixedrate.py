"""The open-loop load generator (bench/fixedrate.py) and the p99-fixed scenario's report.

Response framing, percentiles and the JSON line are pure. Two runs go over
loopback against a small threaded server: every scheduled request is answered
and counted, and a server stall is charged to every request scheduled during
it (coordinated omission corrected) — asserted only as lower bounds that no
machine, however slow, can undercut.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time

import pytest

from bench import fixedrate
from bench.equalload import EXTRA_ROUNDS, P99_TARGET, PEAK_DRIFT_MAX, SEND_LAG_MAX_US, play_rounds, round_problem, summary_line, verdict
from bench.fixedrate import FixedRateError, parse_output, percentiles, response_length
from ports import free_port

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_response_length_by_content_length_and_chunks():
    assert response_length(OK) == len(OK)
    assert response_length(OK + b"HTTP/1.1 200") == len(OK)  # a second response already behind it
    assert response_length(OK[:-1]) == 0
    assert response_length(b"HTTP/1.1 200 OK\r\nContent-") == 0
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    assert response_length(chunked) == len(chunked)
    assert response_length(chunked[:-2]) == 0
    empty = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert response_length(empty) == len(empty)
    assert response_length(b"HTTP/1.1 204 No Content\r\n\r\n") == 27
    assert response_length(b"garbage\r\n\r\n") == -1
    assert response_length(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n") == -1
    assert response_length(b"HTTP/1.1 200 OK\r\n\r\nuntil close") == -1


def test_percentiles_nearest_rank():
    p = percentiles([float(i) for i in range(1, 1001)])
    assert p["p50"] == 500 and p["p90"] == 900 and p["p99"] == 990 and p["p99.9"] == 999 and p["max"] == 1000
    assert percentiles([])["p99"] == 0.0


def test_json_line_becomes_a_wrk_result():
    raw = {"rate": 100.0, "duration_s": 2.0, "scheduled": 200, "completed": 198, "queued": 3,
           "errors": {"connect": 0, "read": 1, "write": 0, "status": 0, "timeout": 1},
           "latency_us": {"p50": 100.0, "p90": 200.0, "p99": 400.0, "p99.9": 800.0, "mean": 120.0, "stdev": 5.0,
                          "max": 900.0},
           "send_lag_us": {"p50": 10.0, "p99": 50.0, "max": 70.0}}
    result, back = parse_output("noise\n" + fixedrate.MARK + json.dumps(raw) + "\n")
    assert result.requests == 198 and result.rps == 99.0
    assert result.latency_us["p99"] == 400.0 and result.latency_us["p99.9"] == 800.0
    assert result.errors_total == 2
    assert back["send_lag_us"]["p99"] == 50.0
    with pytest.raises(FixedRateError, match="no FIXEDRATE_JSON"):
        parse_output("nothing here\n")


class _Server:
    """Answers each request on 127.0.0.1 with ``answer`` (OK); the first answer waits ``stall`` seconds."""

    def __init__(self, stall: float = 0.0, answer: bytes = OK):
        self.stall = stall
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.answered = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    with self._lock:
                        first = self.answered == 0
                        self.answered += 1
                    if first and self.stall:
                        time.sleep(self.stall)
                    conn.sendall(self.answer)

    def close(self):
        self.sock.close()


@pytest.fixture(params=["python", "c"])
def loop(request):
    """Each generator test runs both loops: the Python one and the C one (bench/fixedrate.c)."""
    if request.param == "python":
        return fixedrate.run
    exe = fixedrate.native_loop()
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the C loop of the fixed-rate generator did not build (is a C compiler installed?)")
        pytest.skip("no C compiler: the generator runs its Python loop")

    def run(port, rate, duration_s, paths, connections=64, watch_cpu=None):
        return fixedrate.run_native(exe, port, rate, duration_s, paths, connections, watch_cpu=watch_cpu)

    return run


def test_every_scheduled_request_is_sent_and_answered(loop):
    server = _Server()
    try:
        out = loop(server.port, rate=400, duration_s=0.5, paths=["/a", "/b"], connections=4)
    finally:
        server.close()
    assert out.scheduled == 200 and out.completed == 200
    assert sum(out.errors.values()) == 0
    assert len(out.latency_us) == 200 and min(out.latency_us) > 0
    assert out.cpu_busy is None and out.to_json()["cpu_busy"] is None  # no CPU watched


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_the_watched_cpus_busy_share_covers_the_run(loop):
    # The generator and a server on one CPU that spins for the whole run: that CPU reads
    # (nearly) all busy. A server that only answers leaves most of it idle.
    cpu = sorted(os.sched_getaffinity(0))[0]
    server = _Server()
    stop = time.monotonic() + 5
    spinner = subprocess.Popen([sys.executable, "-c", f"import os, time\nos.sched_setaffinity(0, {{{cpu}}})\n"
                                f"while time.monotonic() < {stop}: pass"])
    try:
        time.sleep(0.2)
        out = loop(server.port, rate=200, duration_s=0.5, paths=["/"], connections=2, watch_cpu=cpu)
    finally:
        spinner.kill()
        spinner.wait()
        server.close()
    assert out.completed == 100
    assert out.cpu_busy is not None and out.cpu_busy >= 0.9, out.cpu_busy


def test_a_stall_is_charged_to_every_request_scheduled_during_it(loop):
    # One connection, 100 requests/s, the first answer held 0.5 s: requests due at
    # 0, 10, ..., 390 ms cannot be answered before 500 ms, so at least 40 samples are
    # >= 100 ms. A closed-loop client would report one slow sample instead.
    server = _Server(stall=0.5)
    try:
        out = loop(server.port, rate=100, duration_s=1.0, paths=["/"], connections=1)
    finally:
        server.close()
    assert out.completed == 100 and sum(out.errors.values()) == 0
    assert max(out.latency_us) >= 500_000 * 0.99
    assert sum(1 for x in out.latency_us if x >= 100_000) >= 40
    assert out.queued >= 40


@pytest.mark.parametrize("answer, status_errors", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 0),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", 0),
    (b"HTTP/1.1 204 No Content\r\n\r\n", 0),
    (b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy", 40),
])
def test_every_answer_shape_is_read_and_a_non_2xx_status_counted(loop, answer, status_errors):
    server = _Server(answer=answer)
    try:
        out = loop(server.port, rate=200, duration_s=0.2, paths=["/"], connections=2)
    finally:
        server.close()
    assert out.completed == 40 and out.errors["read"] == 0 and out.errors["timeout"] == 0
    assert out.errors["status"] == status_errors


def test_the_c_loop_is_what_the_generator_runs_where_it_builds():
    exe = fixedrate.native_loop()
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the C loop of the fixed-rate generator did not build (is a C compiler installed?)")
        pytest.skip("no C compiler")
    assert fixedrate.native_loop() == exe  # built once, then found in the cache
    server = _Server()
    try:
        cmd = [sys.executable, "-m", "bench.fixedrate", "--port", str(server.port), "--rate", "100",
               "--duration", "0.2", "--connections", "2"]
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        native = parse_output(subprocess.run(cmd, capture_output=True, text=True, cwd=root, timeout=60).stdout)[1]
        python = parse_output(subprocess.run(cmd + ["--python-loop"], capture_output=True, text=True, cwd=root,
                                             timeout=60).stdout)[1]
    finally:
        server.close()
    assert native["generator"] == "c" and python["generator"] == "python"
    assert native["completed"] == python["completed"] == 20


def test_a_closed_port_counts_connect_errors_not_a_crash(loop):
    port = free_port()  # nobody listens there
    out = loop(port, rate=10, duration_s=0.1, paths=["/"], connections=2)
    assert out.completed == 0 and out.errors["connect"] == 2


def _w(p99: float):
    from bench.wrk import WrkResult
    lat = {"p50": p99 / 4, "p90": p99 / 2, "p99": p99, "p99.9": p99 * 2, "mean": p99 / 4, "stdev": 1.0, "max": p99 * 3}
    return WrkResult(requests=100, duration_s=1.0, rps=100.0, latency_us=lat, errors={})


def test_verdict_and_summary_line():
    v = verdict([_w(1500), _w(1900), _w(1800)], [_w(1000), _w(1000), _w(1000)], 5000, 10000.0,
                [{"p99": 40.0}, {"p99": 60.0}])
    # Without histograms (runs that kept none) the verdict is on the median round.
    assert v["p99_ratio"] == 1.8 and v["p99_ratio_worst"] == 1.9 and v["p99_ratio_judged"] == 1.8 and v["met"]
    assert v["crdgate_us"]["p99"] == 1800 and v["nginx_us"]["p99"] == 1000 and v["pooled_p99_ratio"] is None
    line = summary_line(v)
    assert "5,000 req/s" in line and "median of 3 valid rounds" in line and "p99 ratio 1.80x" in line
    assert "worst 1.90x" in line and ": met)" in line
    assert not verdict([_w(2500)], [_w(1000)], 10, 20.0, [])["met"]
    assert summary_line({"rounds": 0}) == "p99 at equal offered load: no valid rounds"
    with_floor = verdict([_w(1500)], [_w(1000)], 10, 20.0, [], direct=_w(400))
    assert with_floor["direct_us"]["p99"] == 400
    assert "backend direct at that rate p99 0.40 ms" in summary_line(with_floor)
    assert "backend direct" not in line
    assert "own peak" not in line and v["utilisation"]["crdgate"] is None
    loaded = verdict([_w(1500)], [_w(1000)], 6000, 12000.0, [], crdgate_peak=8000.0)
    assert loaded["utilisation"] == {"crdgate": 0.75, "nginx": 0.5}
    assert "crdgate's own peak 8,000 req/s: the rate is 75% of it (nginx: 50%)" in summary_line(loaded)
    assert "CPU busy" not in summary_line(loaded)
    # How busy each proxy's CPU was at the rate: the median of its valid runs.
    busy = verdict([_w(1500)], [_w(1000)], 6000, 12000.0, [], cpu_busy={"crdgate": [0.9, 0.95, 0.8], "nginx": [0.7]})
    assert busy["cpu_busy"] == {"crdgate": 0.9, "nginx": 0.7}
    assert "the proxy's CPU busy at this rate (kernel network work included): crdgate 90%, nginx 70%" in summary_line(busy)


def _pooled(**p99s: float) -> dict:
    return {who: {"p50": p99 / 4, "p90": p99 / 2, "p99": p99, "p99.9": p99 * 2, "samples": 1000.0}
            for who, p99 in p99s.items()}


def test_the_verdict_is_on_every_request_pooled_not_on_the_worst_round():
    nginx = [_w(1000), _w(1000), _w(1000)]
    # One round at 3x, but over all the requests of the three rounds crdgate's p99 is 1.6x nginx's.
    v = verdict([_w(1500), _w(3000), _w(1800)], nginx, 5000, 10000.0, [],
                control=[_w(900), _w(1900), _w(1100)], pooled=_pooled(crdgate=1600, nginx=1000, control=1200, direct=300))
    assert v["met"] and v["verdict"] == "met" and v["p99_ratio_judged"] == v["pooled_p99_ratio"] == 1.6
    assert v["p99_ratio_worst"] == 3.0 and v["control_pooled_p99_ratio"] == 1.2
    assert v["pooled_us"]["crdgate"]["p99"] == 1600 and v["pooled_us"]["direct"]["p99"] == 300
    line = summary_line(v)
    assert "every request of 3 valid rounds pooled: crdgate/nginx ms p50 0.40/0.25" in line
    assert "p99 ratio 1.60x (target <= 2x: met)" in line and "control, a second nginx against nginx: 1.20x" in line
    assert "per round: crdgate 1.50 / 3.00 / 1.80, worst 3.00x" in line
    assert "control 0.90 / 1.90 / 1.10, worst 1.90x" in line
    assert "backend direct at that rate p99 0.30 ms" in line
    # Pooled past 2x while nginx against itself stayed within it: crdgate's miss.
    miss = verdict([_w(1500), _w(3000), _w(1800)], nginx, 5000, 10000.0, [],
                   control=[_w(900), _w(5200), _w(1100)], pooled=_pooled(crdgate=2400, nginx=1000, control=1900))
    assert miss["verdict"] == "not met" and not miss["met"]
    assert ": NOT met)" in summary_line(miss) and "inconclusive" not in summary_line(miss)
    # The control's pooled p99 went past 2x too: the host, not crdgate, is what these rounds measured.
    host = verdict([_w(1500), _w(3000), _w(1800)], nginx, 5000, 10000.0, [],
                   control=[_w(900), _w(5200), _w(1100)], pooled=_pooled(crdgate=2400, nginx=1000, control=2100))
    assert host["verdict"] == "inconclusive" and not host["met"]
    assert "NOT met, inconclusive: the control exceeded it too" in summary_line(host)
    # Without a control the verdict is met or not met.
    alone = verdict([_w(3000)], [_w(1000)], 10, 20.0, [], pooled=_pooled(crdgate=3000, nginx=1000))
    assert alone["verdict"] == "not met" and alone["control_pooled_p99_ratio"] is None


def test_a_miss_while_the_host_slowed_during_the_rounds_is_inconclusive():
    # nginx's peak is measured before and after the rounds; the rate was set from the first.
    nginx, control = [_w(1000)] * 3, [_w(1100)] * 3

    def judged(peak_after, crdgate_p99):
        return verdict([_w(crdgate_p99)] * 3, nginx, 5000, 10000.0, [], control=control, peak_after=peak_after,
                       pooled=_pooled(crdgate=crdgate_p99, nginx=1000, control=1100))

    slowed = judged(8500.0, 2400)  # 15% below: the load was ~59% of what nginx could then serve
    assert slowed["verdict"] == "inconclusive" and not slowed["met"]
    assert slowed["nginx_peak_after_rps"] == 8500.0 and abs(slowed["peak_drift"] - 0.15) < 1e-9
    line = summary_line(slowed)
    assert "NOT met, inconclusive: the host slowed during the rounds" in line
    assert "nginx's peak after the rounds 8,500 req/s (-15%)" in line
    # Within PEAK_DRIFT_MAX, or faster after: a miss is crdgate's.
    assert judged(10000.0 * (1 - PEAK_DRIFT_MAX), 2400)["verdict"] == "not met"
    faster = judged(11000.0, 2400)
    assert faster["verdict"] == "not met" and "(+10%)" in summary_line(faster)
    # A slower host never turns a met verdict into anything else.
    assert judged(5000.0, 1500)["verdict"] == "met"


def test_pooled_percentiles_are_those_of_every_sample_within_a_bucket():
    rng = random.Random(7)
    runs = [[rng.expovariate(1 / 300) for _ in range(20_000)], [rng.expovariate(1 / 3000) for _ in range(500)],
            [0.5, 1.0, 12.0]]
    pooled = fixedrate.pooled_percentiles([fixedrate.histogram(r) for r in runs])
    exact = fixedrate.percentiles([x for r in runs for x in r])
    assert pooled["samples"] == sum(len(r) for r in runs)
    for k in ("p50", "p90", "p99", "p99.9"):
        # A bucket's upper edge: never below the sample, at most one bucket (1%) above it.
        assert exact[k] <= pooled[k] <= exact[k] * (1 + 1.5 * fixedrate.HIST_STEP), k
    # A rare slow stretch in one run shows in the pooled p99 as in one long run.
    assert pooled["p99"] > fixedrate.percentiles(runs[0])["p99"]
    # Merging is adding counts: the order of the runs does not matter.
    assert fixedrate.pooled_percentiles([fixedrate.histogram(r) for r in reversed(runs)]) == pooled
    assert fixedrate.pooled_percentiles([])["p99"] == 0.0


def test_the_generator_reports_a_histogram_of_every_answer():
    out = fixedrate.Outcome(100, 1.0, 4, 4, [103.0, 103.3, 250.0, 9000.0], [1.0], 0, {})
    hist = out.to_json()["histogram"]
    assert sum(n for _, n in hist) == 4 and len(hist) == 3  # 103 and 103.3 share a 1% bucket
    assert [b for b, _ in hist] == sorted(b for b, _ in hist)


def test_connections_the_server_closes_are_replaced(loop):
    # Every answer says "Connection: close" and the server closes: each request needs a new
    # connection, and the run still answers every scheduled request.
    closing = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                buf = b""
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        break
                    buf += data
                if buf:
                    conn.sendall(closing)

    threading.Thread(target=serve, daemon=True).start()
    try:
        out = loop(port, rate=100, duration_s=0.3, paths=["/"], connections=2)
    finally:
        sock.close()
    assert out.completed == 30 and sum(out.errors.values()) == 0


def _played(p99: float, lag_p99: float = 50.0):
    return (_w(p99), {"send_lag_us": {"p50": 10.0, "p99": lag_p99, "max": lag_p99}})


def test_a_round_where_the_generator_did_not_hold_the_load_is_invalid():
    assert round_problem(_w(200.0), [50.0, 60.0, 40.0]) is None
    # A slow backend-direct run is the host's floor in that round, reported and pooled, not a reason.
    assert round_problem(_w(479_000.0), [50.0]) is None
    broken = _w(200.0)
    broken.errors["read"] = 3
    assert "backend reached directly had 3 errors" in (round_problem(broken, [50.0]) or "")
    lagging = round_problem(_w(200.0), [50.0, SEND_LAG_MAX_US + 1, 40.0])
    assert lagging and "send lag" in lagging
    assert round_problem(_w(200.0), [SEND_LAG_MAX_US]) is None  # the bound itself is valid


def test_invalid_rounds_are_not_counted_and_played_again_up_to_a_bound():
    def play(n):  # round 2 is played while the generator cannot keep up
        lag = 5000.0 if n == 2 else 50.0
        return {"nginx": _played(900.0), "crdgate": _played(1200.0, lag_p99=lag), "control": _played(950.0),
                "direct": _played(200.0)}

    valid, invalid, played = play_rounds(play, 3)
    assert len(valid) == 3 and played == 4
    assert [r["round"] for r in invalid] == [2] and invalid[0]["crdgate_p99_us"] == 1200.0
    assert invalid[0]["control_p99_us"] == 950.0
    v = verdict([g["crdgate"][0] for g in valid], [g["nginx"][0] for g in valid], 5000, 10000.0, [],
                [g["direct"][0] for g in valid], invalid=invalid)
    assert v["rounds"] == 3 and v["direct_us"]["p99"] == 200.0
    assert "1 round(s) invalid, not counted: round 2: the generator's send lag p99 reached 5.00 ms" in summary_line(v)

    def never(n):
        return {"nginx": _played(900.0), "crdgate": _played(1200.0), "direct": _played(200.0, lag_p99=4000.0)}

    valid, invalid, played = play_rounds(never, 3)
    assert not valid and played == 3 + EXTRA_ROUNDS and len(invalid) == played
    none = verdict([], [], 5000, 10000.0, [], [], invalid=invalid)
    assert not none["met"] and "no valid rounds (6 invalid: round 1: the generator's send lag" in summary_line(none)
