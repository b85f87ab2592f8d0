"""Wiring of one gateway process: source -> store -> publisher -> server, plus admin.

Front-door code like gateway/cli.py (it may import the controller; the data
plane modules below it may not). Startup order: proxy and admin listeners first
(``/readyz`` is 503 until the first table), then the source and the publisher.
Shutdown: first SIGTERM/SIGINT drains (see Server.drain); a second one exits now.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from pathlib import Path
from typing import Any, NamedTuple

import uvloop

from gateway import _native, metrics
from gateway.admin import start_admin
from gateway.config import GatewayConfig
from gateway.server import Server

log = logging.getLogger("crdgate")


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard one; returns (before, after).

    Every client connection and every pooled upstream connection is a file
    descriptor, and the soft limit many shells start with (1024) refuses
    connections long before the CPU is busy. Go's runtime does the same at
    start, nginx has worker_rlimit_nofile. Workers inherit the raised limit.
    """
    try:
        import resource
    except ImportError:  # not POSIX: nothing to raise
        return (0, 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return (soft, soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("open-file limit stays at %d (could not raise it to %d: %s)", soft, target, exc)
        return (soft, soft)
    return (soft, target)


def run_gateway(args, config: GatewayConfig) -> int:
    before, after = raise_open_file_limit()
    if after > before:
        log.info("open-file limit raised from %d to %d", before, after)
    if getattr(args, "workers", 1) > 1:
        from gateway.workers import supervise

        return supervise(args, config)
    try:
        return uvloop.run(serve(args, config))
    except KeyboardInterrupt:
        return 0


def make_limiter(args):
    from gateway.ratelimit import RateLimiter

    return RateLimiter.from_config(
        redis_url=args.redis_url,
        failure_mode=args.ratelimit_redis_failure,
        timeout=args.ratelimit_redis_timeout,
        max_keys=args.ratelimit_max_keys,
    )


async def serve(args, config: GatewayConfig, sock: socket.socket | None = None, started=None) -> int:
    from controller.compile import CompileOptions
    from controller.publish import Publisher
    from controller.store import KINDS, Store

    from gateway.auth import jwks

    jwks.REFRESH_FLOOR = args.jwks_refresh_floor
    loop = asyncio.get_running_loop()
    store = Store()
    tls = _tls_wiring(args, config)
    limiter = make_limiter(args)
    metrics.LOCAL_RATELIMIT.limiter = limiter
    server = Server(config, limiter=limiter, certificates=tls.certificates)
    server.ratelimit_headers = args.ratelimit_headers
    server.create_traceparent = args.create_traceparent
    options = CompileOptions(
        ingress_class=args.ingress_class,
        allow_cross_namespace_refs=args.allow_cross_namespace_refs,
        **_auth_defaults(args),
    )
    tasks: list[asyncio.Task] = []
    status_sink = None
    if args.kube:
        source, status_sink, extra_tasks = await _kube_source(args, store, config)
        tasks += extra_tasks
        if tls.default is not None:
            # The default certificate's Secret is referenced by no object: watch it by name too.
            source.default_secrets = source.default_secrets | {tls.default}
    else:
        from controller.files import ManifestSource

        source = ManifestSource(store, Path(args.manifests))
    publisher = Publisher(store, options, on_table=server.swap, on_statuses=status_sink, required_kinds=KINDS,
                          settle_heap=True, **tls.publisher_seams)

    try:
        await server.start(sock=sock, reuse_port=getattr(args, "workers", 1) > 1)
    except OSError as e:
        log.error("cannot listen on %s:%d: %s", *config.listen, e)
        return 1
    admin = None
    if config.admin_listen is not None and config.admin_listen[1] >= 0:
        try:
            admin = await start_admin(server, *config.admin_listen)
        except OSError as e:
            log.error("cannot listen on admin %s:%d: %s", *config.admin_listen, e)
            await server.close()
            return 1
    tasks.append(asyncio.ensure_future(source.run()))
    tasks.append(asyncio.ensure_future(publisher.run()))
    host, port = server.addresses[0] if server.addresses else config.listen
    log.info("proxy %s %s:%d, admin on %s:%d (proxy core: %s)",
             "bound (accepting from the first table) on" if server.deferred else "listening on",
             host, port, *config.admin_listen, _native.describe())
    for tls_host, tls_port in server.tls_addresses:
        log.info("TLS listening on %s:%d", tls_host, tls_port)

    stop = asyncio.Event()
    signals = {"count": 0}

    def on_signal(signum: int) -> None:
        signals["count"] += 1
        if signals["count"] == 1:
            log.info("signal %s: draining", signal.Signals(signum).name)
            stop.set()
        else:
            log.warning("second signal: exiting now")
            for t in tasks:
                t.cancel()
            raise SystemExit(0)

    for s in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(s, on_signal, s)
        except (NotImplementedError, RuntimeError):
            pass
    if started is not None:
        started(server, publisher)

    # A source that dies is a bug or a fatal setting: say so, keep serving the last table.
    def on_done(t: asyncio.Task) -> None:
        if not t.cancelled() and t.exception() is not None:
            log.error("controller task failed: %r", t.exception(), exc_info=t.exception())

    for t in tasks:
        t.add_done_callback(on_done)
    await stop.wait()
    await server.drain()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if admin is not None:
        await admin.cleanup()
    log.info("stopped")
    return 0


class _TLSWiring(NamedTuple):
    certificates: Any  # gateway.tls.CertificateStore, or None without --listen-tls
    default: tuple[str, str] | None  # --default-certificate
    publisher_seams: dict  # Publisher keyword arguments: compiler, refresh, on_result


def _tls_wiring(args, config: GatewayConfig) -> _TLSWiring:
    """With ``--listen-tls``: the certificate store, and the publisher seams that feed it.

    Certificates are compiled with every table (controller/certs.py) and handed
    to the store right after the swap; problems show in the owning objects'
    statuses, the default certificate's in the log.
    """
    default = _default_certificate(args)
    if config.listen_tls is None:
        if default is not None:
            log.warning("--default-certificate is ignored without --listen-tls")
        return _TLSWiring(None, None, {})
    from controller.certs import DEFAULT_OWNER, CertificateCompiler, CertificateOptions

    from gateway.tls import CertificateStore

    store = CertificateStore()
    compiler = CertificateCompiler(CertificateOptions(default_certificate=default))
    reported: list = [None]

    def on_result(result) -> None:
        certs = getattr(result, "certificates", None)
        if certs is None:
            return
        store.update(certs)
        problems = result.certificate_problems.get(DEFAULT_OWNER)
        if problems != reported[0]:
            reported[0] = problems
            for _, message in problems or ():
                log.warning("--default-certificate: %s", message)

    return _TLSWiring(store, default, {"compiler": compiler.compile, "refresh": compiler.refresh, "on_result": on_result})


def _default_certificate(args) -> tuple[str, str] | None:
    value = getattr(args, "default_certificate", None)
    if not value:
        return None
    ns, _, name = value.partition("/")
    return ns, name


def _auth_defaults(args) -> dict:
    """Gateway-wide default auth for routes with authRequired and no auth of their own."""
    from controller.compile import CompileOptions

    fields = getattr(CompileOptions, "__dataclass_fields__", {})
    out = {}
    if args.default_auth_secret and "default_auth_secret" in fields:
        out["default_auth_secret"] = args.default_auth_secret
        out["default_auth_type"] = args.default_auth_type
    return out


async def _kube_source(args, store, config):
    """The Kubernetes API source, the status writer and leader election."""
    import os

    from controller import kube

    api = await kube.make_api_client(args.kubeconfig, args.context)
    namespaces = [n for v in (args.namespace or args.namespace_env or []) for n in v.split(",") if n]
    identity = args.identity or os.environ.get("POD_NAME") or socket.gethostname()
    return await kube.wire(
        store=store,
        api=api,
        namespaces=namespaces,
        ingress_class=args.ingress_class,
        identity=identity,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
        publish_address=args.publish_address,
        publish_service=args.publish_service,
        default_auth_secret=args.default_auth_secret,
    )
