"""Global limits on a Redis Cluster (3 masters) and on a master found through Sentinel.

Both are started here from Debian's redis-server (``--cluster-enabled yes`` +
``redis-cli --cluster create``; ``redis-server --sentinel``) on loopback ports.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

from gateway.ratelimit import OUTCOME_ALLOWED, RateLimiter
from gateway.redisurl import parse
from gateway.routing import RateLimitPolicy
from redis_server import command, ensure_redis_server, free_port


def _wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _answers(port: int) -> bool:
    try:
        return command(port, "PING", timeout=0.5) == b"+PONG"
    except OSError:
        return False


class _Servers:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="crdgate-redis-topology-")
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str) -> None:
        log = open(os.path.join(self.dir, f"{len(self.procs)}.log"), "ab")
        self.procs.append(subprocess.Popen([ensure_redis_server(), *args], cwd=self.dir, stdout=log,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        log.close()

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is a port too, and free."""
    import socket

    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def _server_args(port: int, *extra: str) -> list[str]:
    return ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *extra]


@pytest.fixture
def cluster():
    """Seeds of a 3-master Redis Cluster on loopback (no replicas)."""
    try:
        ensure_redis_server()
    except Exception as exc:  # noqa: BLE001 - the same rule as tests/conftest.py
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"redis-server is required in CI: {exc}")
        pytest.skip(f"no redis-server: {exc}")
    servers = _Servers()
    ports = [_cluster_port() for _ in range(3)]
    try:
        for port in ports:
            servers.start(*_server_args(port, "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"))
        for port in ports:
            _wait(lambda: _answers(port), 10, f"cluster node {port}")
        cli = shutil.which("redis-cli")
        assert cli, "redis-cli comes with redis-server (package redis-tools)"
        done = subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                               "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
        _wait(lambda: all(b"cluster_state:ok" in _cluster_info(p) for p in ports), 15, "cluster_state:ok")
        # cluster_state:ok on each node is not yet every node agreeing on the slot map: wait
        # until a cluster client stores a key in each master's slots from a fresh connection.
        _wait(lambda: _cluster_serves(ports), 15, "keys stored on every master")
        yield ports
    finally:
        servers.close()


def _cluster_serves(ports: list[int]) -> bool:
    from redis.cluster import RedisCluster
    from redis.exceptions import RedisError

    try:
        client = RedisCluster(host="127.0.0.1", port=ports[0], socket_timeout=1)
        try:
            masters = {client.get_node_from_key(f"probe-{i}").port for i in range(64)}
            for i in range(64):
                client.set(f"probe-{i}", b"1")
            return masters == set(ports)
        finally:
            client.close()
    except RedisError:
        return False


def _cluster_info(port: int) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n")
        buf = b""
        while b"cluster_known_nodes" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return buf


@pytest.fixture
def sentinel():
    """(sentinel port, service name) of a master watched by one Sentinel."""
    try:
        ensure_redis_server()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"redis-server is required in CI: {exc}")
        pytest.skip(f"no redis-server: {exc}")
    servers = _Servers()
    master, port, service = free_port(), free_port(), "crdgate-master"
    try:
        servers.start(*_server_args(master))
        _wait(lambda: _answers(master), 10, "the master")
        conf = os.path.join(servers.dir, "sentinel.conf")
        with open(conf, "w") as f:
            f.write(f"port {port}\nbind 127.0.0.1\nsentinel monitor {service} 127.0.0.1 {master} 1\n")
        servers.start(conf, "--sentinel")
        _wait(lambda: _answers(port), 10, "the sentinel")
        yield port, service
    finally:
        servers.close()


def test_cluster_and_sentinel_urls_parse():
    spec = parse("redis+cluster://:secret@127.0.0.1:7000,127.0.0.1:7001")
    assert (spec.kind, spec.nodes, spec.password) == ("cluster", [("127.0.0.1", 7000), ("127.0.0.1", 7001)], "secret")
    spec = parse("rediss+sentinel://10.0.0.1:26379,[::1]:26380/mymaster/2")
    assert (spec.kind, spec.service, spec.db, spec.ssl) == ("sentinel", "mymaster", 2, True)
    assert spec.nodes == [("10.0.0.1", 26379), ("::1", 26380)]
    for bad in ("redis+sentinel://h:1", "redis+cluster://h:1/3", "redis+cluster://h", "memcached://h:1"):
        with pytest.raises(ValueError, match="--redis-url"):
            parse(bad)


async def test_global_limit_on_a_redis_cluster(cluster):
    lim = RateLimiter.from_config("redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in cluster[:2]),
                                  failure_mode="closed", timeout=2.0)
    p = RateLimitPolicy(requests_per_minute=6, burst=2, scope="Global")  # 3 at once, then one per 10 s
    route = f"test/{uuid.uuid4().hex[:8]}"
    try:
        # One event-loop turn: 50 keys in one batch, spread over the three masters' slots.
        first = await asyncio.gather(*(lim.check(route, p, f"client-{i}") for i in range(50)))
        assert [d.outcome for d in first] == [OUTCOME_ALLOWED] * 50
        got = [(await lim.check(route, p, "client-0")).allowed for _ in range(3)]
        assert got == [True, True, False], "client-0 already spent one of its 3"
        # A second process shares the budget.
        other = RateLimiter.from_config(f"redis+cluster://127.0.0.1:{cluster[2]}", failure_mode="closed", timeout=2.0)
        try:
            assert not (await other.check(route, p, "client-0")).allowed
            assert (await other.check(route, p, "client-1")).allowed
        finally:
            await other.close()
    finally:
        await lim.close()


async def test_global_limit_through_sentinel(sentinel):
    port, service = sentinel
    lim = RateLimiter.from_config(f"redis+sentinel://127.0.0.1:{port}/{service}", failure_mode="closed", timeout=2.0)
    p = RateLimitPolicy(requests_per_minute=6, burst=1, scope="Global")
    route = f"test/{uuid.uuid4().hex[:8]}"
    try:
        assert await lim.ping()
        got = [(await lim.check(route, p, "client")).outcome for _ in range(3)]
        assert got == [OUTCOME_ALLOWED, OUTCOME_ALLOWED, "limited"]
    finally:
        await lim.close()
