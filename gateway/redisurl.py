"""The Redis client of ``--redis-url``: one server, a Redis Cluster, or a master found through Sentinel.

gateway/ratelimit.py asks ``connect`` for the client its Global limits use.
URL forms (docs/rate-limiting.md#redis-urls):

- ``redis://[user:password@]host:port/db``, ``rediss://...`` (TLS), ``unix:///path?db=N``: one
  server, as redis-py reads them;
- ``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster://`` for TLS):
  a Redis Cluster; the nodes are seeds, the client learns the others and follows resharding;
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``
  (``rediss+sentinel://``: TLS to the master): the master of ``service`` as the sentinels name it,
  found again after a failover. The credentials are the master's; the sentinels take none.

Nothing connects here: the client connects on first use. ``Target.where`` names
the server(s) for logs, never with the password.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import unquote, urlsplit


class Target(NamedTuple):
    client: object  # redis.asyncio.Redis or RedisCluster
    where: str  # for log lines: never the password
    cluster: bool  # keys of one script call must share a hash slot


def _nodes(netloc: str, url_kind: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """(host, port) pairs and credentials of ``user:password@h1:p1,h2:p2``."""
    creds, _, hosts = netloc.rpartition("@")
    user = password = None
    if creds:
        user, sep, password = creds.partition(":")
        user, password = unquote(user) or None, unquote(password) if sep else None
    nodes = []
    for part in hosts.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep:
            host, port = port, "0"
        host = host.strip("[]")  # an IPv6 literal
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--redis-url: {url_kind} needs host:port[,host:port...], got {part.strip()!r}")
        nodes.append((host, int(port)))
    return nodes, user, password


class Spec(NamedTuple):
    """What a ``--redis-url`` names (for Cluster and Sentinel; one server keeps its URL)."""

    kind: str  # "server" | "cluster" | "sentinel"
    url: str
    nodes: list[tuple[str, int]]  # cluster seeds or sentinels
    user: str | None
    password: str | None
    ssl: bool
    service: str | None = None  # sentinel: the master's name
    db: int = 0


def parse(url: str) -> Spec:
    """Read ``url``; ValueError says what is wrong with it (the CLI checks the flag with this)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    parts = urlsplit(url)
    if scheme in ("redis+cluster", "rediss+cluster"):
        if parts.path not in ("", "/", "/0"):
            raise ValueError(f"--redis-url: a Redis Cluster has only database 0, got path {parts.path!r}")
        nodes, user, password = _nodes(parts.netloc, "redis+cluster://")
        return Spec("cluster", url, nodes, user, password, scheme.startswith("rediss"))
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        nodes, user, password = _nodes(parts.netloc, "redis+sentinel://")
        path = [p for p in parts.path.split("/") if p]
        if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
            raise ValueError(f"--redis-url: redis+sentinel:// needs /service[/db] after the sentinels, got {parts.path!r}")
        db = int(path[1]) if len(path) == 2 else 0
        return Spec("sentinel", url, nodes, user, password, scheme.startswith("rediss"), unquote(path[0]), db)
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"--redis-url: unknown scheme {scheme or url!r}; use redis://, rediss://, unix://, "
            "redis+cluster:// or redis+sentinel://"
        )
    from redis.asyncio.connection import parse_url

    try:
        parse_url(url)
    except ValueError as exc:
        raise ValueError(f"--redis-url: {exc}") from None
    return Spec("server", url, [], None, None, scheme == "rediss")


def connect(url: str, *, timeout: float, max_connections: int) -> Target:
    """The client for ``url``; ValueError names what is wrong with the URL."""
    from redis.asyncio import ConnectionPool, Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    spec = parse(url)
    common = dict(
        # A backstop: the rate limiter bounds each call with its own deadline,
        # which fires first, so a timed-out command is never retried.
        socket_timeout=timeout * 2,
        socket_connect_timeout=timeout,
        # One immediate retry on a fresh connection: after a Redis restart
        # the pooled sockets are dead and the first use finds out.
        retry=Retry(NoBackoff(), 1),
    )
    nodes = ",".join(f"{h}:{p}" for h, p in spec.nodes)
    if spec.kind == "cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        client = RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in spec.nodes], username=spec.user, password=spec.password,
            ssl=spec.ssl, max_connections=max_connections,
            # A moved slot or a failover is retried once; longer waits are the deadline's.
            cluster_error_retry_attempts=1, **common,
        )
        return Target(client, "cluster " + nodes, True)
    if spec.kind == "sentinel":
        from redis.asyncio.sentinel import Sentinel

        sentinel = Sentinel(spec.nodes, sentinel_kwargs={"socket_timeout": timeout * 2,
                                                         "socket_connect_timeout": timeout})
        client = sentinel.master_for(
            spec.service, db=spec.db, username=spec.user, password=spec.password, ssl=spec.ssl,
            max_connections=max_connections, **common,
        )
        return Target(client, f"sentinel {spec.service} at {nodes}", False)
    pool = ConnectionPool.from_url(url, max_connections=max_connections, **common)
    kw = pool.connection_kwargs
    where = kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', '?')}"
    return Target(Redis.from_pool(pool), where, False)
