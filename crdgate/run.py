"""Wiring of one gateway process from its Config: source -> store -> publisher -> server, plus admin.

The composition root (crdgate/): it joins the controller and the data plane,
which never import each other's wiring. Startup order: proxy and admin
listeners first (``/readyz`` is 503 until the first table), then the source and
the publisher. Shutdown: first SIGTERM/SIGINT (or the caller's ``stop`` event)
drains (see Server.drain); a second signal exits now.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import Any, Callable, NamedTuple

import uvloop

from controller.certs import DEFAULT_OWNER, CertificateCompiler, CertificateOptions
from controller.files import ManifestSource
from controller.publish import Publisher
from controller.store import KINDS, Store
from crdgate.config import Config, KubeSource
from crdgate.controlview import control_plane_view
from crdgate.explain import not_ready_objects
from gateway import _native
from gateway.admin import start_admin
from gateway.ratelimit import RateLimiter
from gateway.routing import RouteTable
from gateway.server import Server
from gateway.tls import CertificateStore

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


def run_gateway(config: Config) -> int:
    """One gateway process on uvloop until it is stopped (``--workers``: crdgate/workers.py)."""
    try:
        return uvloop.run(serve(config))
    except KeyboardInterrupt:
        return 0


def make_limiter(config: Config) -> RateLimiter:
    rl = config.ratelimit
    return RateLimiter.from_config(redis_url=rl.redis_url, failure_mode=rl.redis_failure,
                                   timeout=rl.redis_timeout, max_keys=rl.max_keys, lease_max=rl.lease_max)


async def serve(config: Config, sock: socket.socket | None = None, started=None,
                stop: asyncio.Event | None = None) -> int:
    """One gateway on this event loop, until ``stop`` is set or a signal arrives; returns the exit code.

    ``started(server, publisher)`` is called once the listeners are up.
    (``--workers N``: crdgate/workers.py runs the controller and
    crdgate/proxyworker.py the proxies instead.)
    """
    gw = config.gateway
    loop = asyncio.get_running_loop()
    certificates = CertificateStore() if gw.listen_tls is not None else None
    server = Server(gw, limiter=make_limiter(config), certificates=certificates)
    controller = await start_controller(config, on_table=server.swap, certificates=certificates)
    if controller is None:
        return 1
    source, publisher, tasks = controller
    # The admin dashboard's view of the controller: statuses and load errors as plain data.
    server.control_plane = control_plane_view(publisher, source if isinstance(source, ManifestSource) else None,
                                              {"maxKeys": config.ratelimit.max_keys})

    try:
        await server.start(sock=sock)
    except OSError as e:
        log.error("cannot listen on %s:%d: %s", *gw.listen, e)
        return 1
    admin = None

    def not_ready():  # for the admin /explain: the objects the last compile did not make Ready, and why
        return not_ready_objects(publisher.last_statuses.values())

    if gw.admin_listen is not None and gw.admin_listen[1] >= 0:
        try:
            admin = await start_admin(server, *gw.admin_listen, not_ready=not_ready)
        except OSError as e:
            log.error("cannot listen on admin %s:%d: %s", *gw.admin_listen, e)
            await server.close()
            return 1
        admin_at = "%s:%d" % gw.admin_listen
    else:
        admin_at = "(none)"
    tasks.append(asyncio.ensure_future(source.run()))
    tasks.append(asyncio.ensure_future(publisher.run()))
    host, port = server.addresses[0] if server.addresses else gw.listen
    log.info("proxy %s %s:%d, admin on %s (proxy core: %s)",
             "bound (accepting from the first table) on" if server.deferred else "listening on",
             host, port, admin_at, _native.describe())
    for tls_host, tls_port in server.tls_addresses:
        log.info("TLS listening on %s:%d", tls_host, tls_port)

    stop = asyncio.Event() if stop is None else stop
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

    handled = []
    for s in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(s, on_signal, s)
            handled.append(s)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
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
    for s in handled:  # the loop may outlive this gateway (an embedding program, a test)
        loop.remove_signal_handler(s)
    log.info("stopped")
    return 0


class Controller(NamedTuple):
    source: Any  # ManifestSource, or the Kubernetes API's reflectors
    publisher: Publisher
    tasks: list[asyncio.Task]  # started already (leader election, status writer); cancel to stop


async def start_controller(config: Config, on_table: Callable[[RouteTable], None] = lambda table: None,
                           on_result: Callable[[Any], None] | None = None,
                           certificates: CertificateStore | None = None) -> Controller | None:
    """The controller half: source -> store -> publisher (-> status writer on the leader).

    ``on_table`` gets each published table, then ``on_result`` the whole
    compile result (with ``--listen-tls``, its certificates, already fed to
    ``certificates`` when given). The caller starts ``source.run()`` and
    ``publisher.run()`` once its listeners are up. None (logged) for a bad
    kubeconfig or flag.
    """
    store = Store()
    tls = _tls_wiring(config, certificates, on_result)
    tasks: list[asyncio.Task] = []
    status_sink = None
    if isinstance(config.source, KubeSource):
        from controller.kube import KubeConfigError  # the Kubernetes client loads only for --kube

        try:
            source, status_sink, extra_tasks = await _kube_source(config, config.source, store, tls.default)
        except (KubeConfigError, ValueError) as e:  # a bad kubeconfig or flag: say so, no traceback
            log.error("%s", e)
            return None
        tasks += extra_tasks
    else:
        source = ManifestSource(store, config.source.path)
    publisher = Publisher(store, config.compile, on_table=on_table, on_statuses=status_sink, required_kinds=KINDS,
                          settle_heap=True, **tls.publisher_seams)
    return Controller(source, publisher, tasks)


class _TLSWiring(NamedTuple):
    default: tuple[str, str] | None  # --default-certificate
    publisher_seams: dict[str, Any]  # Publisher keyword arguments: compiler, refresh, adopt, on_result


def _tls_wiring(config: Config, store: CertificateStore | None,
                on_result: Callable[[Any], None] | None) -> _TLSWiring:
    """With ``--listen-tls``: the publisher seams that compile certificates with every table.

    Certificates (controller/certs.py) go to ``store`` right after the swap
    (a proxy worker's store gets them over its channel: crdgate/workers.py);
    problems show in the owning objects' statuses, the default certificate's
    in the log. ``on_result`` (the caller's) follows.
    """
    default = config.tls.default_certificate
    if config.gateway.listen_tls is None:
        if default is not None:
            log.warning("--default-certificate is ignored without --listen-tls")
        return _TLSWiring(None, {"on_result": on_result} if on_result is not None else {})
    compiler = CertificateCompiler(CertificateOptions(default_certificate=default))
    reported: list = [None]

    def on_tls_result(result) -> None:
        certs = getattr(result, "certificates", None)
        if certs is not None:
            if store is not None:
                store.update(certs)
            problems = result.certificate_problems.get(DEFAULT_OWNER)
            if problems != reported[0]:
                reported[0] = problems
                for _, message in problems or ():
                    log.warning("--default-certificate: %s", message)
        if on_result is not None:
            on_result(result)

    seams = {"compiler": compiler.compile, "refresh": compiler.refresh, "adopt": compiler.adopt,
             "on_result": on_tls_result}
    return _TLSWiring(default, seams)


async def _kube_source(config: Config, kube_source: KubeSource, store: Store,
                       default_certificate: tuple[str, str] | None):
    """The Kubernetes API source, the status writer and leader election.

    ``default_certificate``: the Secret served when no host's certificate
    matches (only with a TLS listener); no object names it, so it is watched by name.
    """
    from controller import kube

    api = await kube.make_api_client(kube_source.kubeconfig, kube_source.context)
    defaults = config.compile.auth_defaults
    return await kube.wire(
        store=store,
        api=api,
        namespaces=list(kube_source.namespaces),
        ingress_class=config.compile.ingress_class,
        gateway_controller_name=config.compile.gateway_controller_name,
        identity=kube_source.identity,
        lease_namespace=kube_source.lease_namespace,
        lease_name=kube_source.lease_name,
        publish_address=kube_source.publish_address,
        publish_service=kube_source.publish_service,
        default_auth_secret=f"{defaults.secret_namespace}/{defaults.secret_name}" if defaults.secret_name else None,
        default_certificate=default_certificate,
        leader_elect=kube_source.leader_elect,
        status_qps=kube_source.status_qps,
        status_burst=kube_source.status_burst,
    )
