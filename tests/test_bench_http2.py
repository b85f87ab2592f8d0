"""The HTTP/2 benchmark's pure parts: h2load output parsing and the nginx configs it renders."""

from __future__ import annotations

import subprocess

import pytest

import aptget

from bench import h2load, nginx
from bench.credentials import tls_certificate

H2LOAD_OUT = """\
starting benchmark...
spawning thread #0: 4 total client(s). 2 total requests
TLS Protocol: TLSv1.3
Cipher: TLS_AES_256_GCM_SHA384
Server Temp Key: X25519 253 bits
Application protocol: h2

finished in 2.50s, 4000.00 req/s, 1.20MB/s
requests: 10010 total, 10400 started, 10010 done, 10000 succeeded, 10 failed, 4 errored, 1 timeout
status codes: 9990 2xx, 0 3xx, 6 4xx, 4 5xx
traffic: 3.00MB (3145728) total, 1.00MB (1048576) headers (space savings 90.00%), 1.00MB (1048576) data
"""


def test_summary_and_percentiles_are_read():
    log = [f"1796315400566921\t200\t{us}" for us in range(1, 1001)]
    r = h2load.parse_output(H2LOAD_OUT, log)
    assert r.requests == 10000 and r.duration_s == 2.5 and r.rps == 4000.0
    assert r.latency_us["p50"] == 500 and r.latency_us["p99"] == 990 and r.latency_us["p99.9"] == 999
    assert r.latency_us["max"] == 1000
    assert r.errors == {"failed": 5, "errored": 4, "timeout": 1, "status": 10, "unfinished": 0}
    assert r.errors_total == 20
    assert h2load.protocol(H2LOAD_OUT) == "h2"


def test_a_run_that_never_connected_is_an_error_not_zero():
    with pytest.raises(Exception, match="no summary"):
        h2load.parse_output("connect error\n", [])
    assert h2load.protocol("connect error\n") == ""


def test_milliseconds_durations():
    out = H2LOAD_OUT.replace("finished in 2.50s", "finished in 500.00ms")
    assert h2load.parse_output(out, []).duration_s == 0.5


def test_the_nginx_configs_are_valid(tmp_path):
    nginx_path = aptget.ensure({"nginx": "nginx-light"})["nginx"]
    tls = tls_certificate(tmp_path)
    confs = {
        "h2proxy": nginx.h2_proxy_conf(tmp_path, 1, 2, 3, tls.cert_file, tls.key_file),
        "grpc-backend": nginx.grpc_backend_conf(tmp_path, 4, tmp_path / "grpc-reply"),
        "grpc-proxy": nginx.grpc_proxy_conf(tmp_path, 5, 4),
    }
    for name, text in confs.items():
        conf = tmp_path / f"{name}.conf"
        conf.write_text(text)
        proc = subprocess.run([nginx_path, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "e.log"),
                               "-c", str(conf)], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, (name, proc.stderr)
    assert (tmp_path / "grpc-reply" / "message").read_bytes() == b"\0\0\0\0\0"
