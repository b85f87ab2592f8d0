"""The ``crdgate`` command: flags and environment -> one frozen ``Config`` -> run.

Every flag can also be given as an environment variable ``CRDGATE_<FLAG>``
(``--admin-listen`` -> ``CRDGATE_ADMIN_LISTEN``); a flag on the command line
wins. ``build_config`` turns the parsed flags of ``run`` and ``demo`` into a
``crdgate.config.Config``, checked before anything starts; ``compile_options``
builds the controller's options for every subcommand that compiles. Nothing
below this module sees argparse: crdgate/run.py, demo.py and workers.py take
the config.

Exit codes: 0 ok, 1 invalid manifests (validate/routes), no route (explain) or a failed start,
2 usage errors (a bad flag or value).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import math
import os
import socket
import ssl
import sys
import urllib.parse
from pathlib import Path

from typing import TYPE_CHECKING

from gateway.config import GatewayConfig, Limits, parse_hostport
from gateway.logwriter import MIN_BUFFER

if TYPE_CHECKING:
    from controller.compile import CompileOptions
    from crdgate.config import Config, KubeSource, ManifestsSource

# The controller, the proxy and their dependencies (pydantic, the JWT and
# crypto libraries, aiohttp) load in the command that needs them, not at
# import: `crdgate --help`, a usage error and `crdgate bench` answer at once.

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "deploy" / "examples"

log = logging.getLogger("crdgate")


# -- flags ------------------------------------------------------------------------


def _env_default(flag: str, default, kind=str):
    name = "CRDGATE_" + flag.lstrip("-").upper().replace("-", "_")
    raw = os.environ.get(name)
    if raw is None:
        return default
    if kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind is list:
        return [p.strip() for p in raw.split(",") if p.strip()]
    return kind(raw)


def _add(p: argparse.ArgumentParser, flag: str, default=None, kind=str, help: str = "", **kw):
    d = _env_default(flag, default, kind)
    env = "CRDGATE_" + flag.lstrip("-").upper().replace("-", "_")
    shown = f" (default: {_shown(default)}; env {env})" if default not in (None, [], "") else f" (env {env})"
    if kind is list:
        p.add_argument(flag, action="append", default=None, help=help + shown, **kw)
        p.set_defaults(**{flag.lstrip("-").replace("-", "_") + "_env": d})
    elif kind is bool:
        p.add_argument(flag, default=d, type=_on_off, help=help + shown, metavar="on|off", **kw)
    else:
        p.add_argument(flag, default=d, type=kind, help=help + shown, **kw)


def _shown(default) -> str:
    """A default as the user would type it: booleans are on/off like the values the flag takes."""
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, tuple) and len(default) == 2:  # a parsed HOST:PORT
        return f"{default[0]}:{default[1]}"
    return str(default)


def _on_off(value: str) -> bool:
    v = value.strip().lower()
    if v in ("on", "true", "1", "yes"):
        return True
    if v in ("off", "false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")


def _hostport(value: str) -> tuple[str, int]:
    try:
        return parse_hostport(value)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}") from None


def _log_buffer_bytes(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of bytes, got {value!r}") from None
    if n < MIN_BUFFER:
        raise argparse.ArgumentTypeError(f"at least {MIN_BUFFER} bytes, got {n}")
    return n


def _sample_rate(value: str) -> float:
    try:
        r = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {value!r}") from None
    if not 0.0 <= r <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {value!r}")
    return r


def _namespaced_name(value: str) -> str:
    ns, sep, name = value.strip().partition("/")
    if not sep or not ns or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/NAME, got {value!r}")
    return f"{ns}/{name}"


LIMITS = Limits()  # the flags' defaults: an instance's (a slots dataclass's class attributes are descriptors)


def _add_gateway_flags(p: argparse.ArgumentParser, listen: str = "0.0.0.0:8080", access_log: bool = True,
                       drain_seconds: float = 5.0) -> None:
    g = p.add_argument_group("proxy")
    _add(g, "--listen", listen, _hostport, "address of the proxy listener")
    _add(g, "--admin-listen", "127.0.0.1:9090", _hostport, "address of /healthz /readyz /metrics /routes and the dashboard (/)")
    _add(g, "--trusted-proxies", [], list,
         "CIDR whose X-Forwarded-*/Forwarded headers are trusted (repeatable or comma-separated)")
    _add(g, "--max-body-bytes", LIMITS.max_body_bytes, int, "largest request body (413 above); routes may set maxBodyBytes")
    _add(g, "--max-header-bytes", LIMITS.max_header_bytes, int, "largest request header section (431 above)")
    _add(g, "--max-headers", LIMITS.max_headers, int, "most request header lines (431 above)")
    _add(g, "--max-uri-bytes", LIMITS.max_uri_bytes, int, "longest request target (414 above)")
    _add(g, "--max-response-header-bytes", LIMITS.max_response_header_bytes, int,
         "largest upstream response header section (502 above)")
    _add(g, "--header-timeout", LIMITS.header_timeout, float, "seconds for a request head to arrive (408)")
    _add(g, "--idle-timeout", LIMITS.idle_timeout, float, "seconds an idle client keep-alive connection is kept")
    _add(g, "--upstream-idle-timeout", LIMITS.upstream_idle_timeout, float,
         "seconds an unused pooled upstream connection is kept")
    _add(g, "--access-log", access_log, bool, "one JSON line per request on stdout")
    _add(g, "--access-log-format", "json", str, "access log lines: json (one object a line) or text (combined-log-like)",
         choices=["json", "text"])
    _add(g, "--access-log-sample-2xx", 1.0, _sample_rate,
         "share of 2xx responses logged, 0..1 (non-2xx are always logged)")
    _add(g, "--create-traceparent", False, bool, "add a W3C traceparent header to requests that arrive without one")
    _add(g, "--otlp-endpoint", None, str,
         "OTLP/HTTP (protobuf) URL spans are exported to, e.g. http://127.0.0.1:4318/v1/traces; "
         "unset: no tracing")
    _add(g, "--trace-sample-ratio", 0.0, float,
         "share of requests traced when they carry no traceparent; a traceparent's sampled flag is always obeyed")
    _add(g, "--drain-seconds", drain_seconds, float, "on SIGTERM, seconds /readyz answers 503 before listeners close")
    _add(g, "--shutdown-timeout", 25.0, float, "after listeners close, seconds in-flight requests get to finish")
    _add(g, "--h2c", True, bool,
         "serve cleartext HTTP/2 with prior knowledge on --listen besides HTTP/1.1 (off: the HTTP/2 preface gets 505)")
    _add(g, "--workers", 1, int,
         "proxy processes sharing the listen port (SO_REUSEPORT), fed their routing tables by one controller process")
    _add(g, "--controller-process", False, bool,
         "with --workers 1: run the controller in a process of its own beside the proxy, as --workers 2+ always "
         "does (a change then costs the proxy a table update, not a compile)")
    t = p.add_argument_group("TLS")
    _add(t, "--listen-tls", None, _hostport,
         "address of the HTTPS listener, e.g. :8443; certificates come from the kubernetes.io/tls Secrets named "
         "by Ingress spec.tls and APIEndpoint spec.tls, chosen by SNI")
    _add(t, "--default-certificate", None, _namespaced_name,
         "NAMESPACE/NAME of the kubernetes.io/tls Secret served when no host's certificate matches the SNI name "
         "(without one, such handshakes fail with unrecognized_name)")
    _add(t, "--upstream-ca-file", None, str,
         "PEM file of CA certificates trusted for https:// backends, besides the system CAs")
    r = p.add_argument_group("rate limiting")
    _add(r, "--redis-url", None, str, "Redis for rateLimit scope Global: redis://127.0.0.1:6379/0, rediss://, unix://, "
         "redis+cluster://host:port[,host:port] or redis+sentinel://host:port[,host:port]/service[/db]")
    _add(r, "--ratelimit-redis-failure", "open", str, "when Redis fails: open (allow) or closed (429)",
         choices=["open", "closed"])
    _add(r, "--ratelimit-redis-timeout", 0.05, float, "seconds one Redis rate-limit call may take")
    _add(r, "--ratelimit-redis-lease", 1024, int,
         "most Global rate-limit requests one process takes from Redis at once (1: ask Redis for every request)")
    _add(r, "--ratelimit-max-keys", 100_000, int, "local rate-limit keys kept in memory (oldest evicted)")
    _add(r, "--ratelimit-headers", True, bool, "send RateLimit-Policy/RateLimit headers on allowed responses too")
    a = p.add_argument_group("authentication")
    _add_auth_default_flags(a)
    _add(a, "--jwks-refresh-floor", 10.0, float, "least seconds between two fetches of one jwksURL (unknown kid refetches)")


def _add_auth_default_flags(p) -> None:
    """The gateway-wide default auth: run and demo, and validate/routes, which must compile alike."""
    _add(p, "--default-auth-secret", None, str, "NAMESPACE/NAME of the Secret used by routes with authRequired and no auth")
    _add(p, "--default-auth-type", "APIKey", str, "scheme of --default-auth-secret", choices=["APIKey", "Basic", "JWT"])


def _add_offline_compile_flags(p, note: str = "") -> None:
    """What validate, routes and explain compile with: the same options as run's, so they agree."""
    _add(p, "--ingress-class", "crdgate", str, "the class this gateway serves" + note)
    _add(p, "--gateway-controller-name", "crdgate.io/gateway-controller", str,
         "the GatewayClass controllerName whose Gateways (and their HTTPRoutes) this gateway serves" + note)
    _add_auth_default_flags(p)
    _add_cross_namespace_flag(p)


def _add_cross_namespace_flag(p) -> None:
    _add(p, "--allow-cross-namespace-refs", False, bool,
         "let routes use Services and Secrets of other namespaces without a ReferenceGrant (single-tenant clusters)")


def _add_source_flags(p: argparse.ArgumentParser, manifests_default=None) -> None:
    s = p.add_argument_group("source")
    _add(s, "--manifests", manifests_default, str, "folder of manifests to route from (watched for changes)")
    _add(s, "--kube", False, bool, "watch the Kubernetes API instead of a folder", nargs="?", const=True)
    _add(s, "--kubeconfig", None, str, "kubeconfig path (default: in-cluster config, then ~/.kube/config)")
    _add(s, "--context", None, str, "kubeconfig context")
    _add(s, "--namespace", [], list, "namespace to watch (repeatable; default all)")
    _add(s, "--ingress-class", "crdgate", str, "the IngressClass / ingressClassName this gateway serves")
    _add(s, "--gateway-controller-name", "crdgate.io/gateway-controller", str,
         "the GatewayClass controllerName whose Gateways (and their HTTPRoutes) this gateway serves")
    _add_cross_namespace_flag(s)
    _add(s, "--publish-address", None, str, "address written into Ingress status.loadBalancer")
    _add(s, "--publish-service", None, str, "NAMESPACE/NAME of the Service whose address goes into Ingress status")
    _add(s, "--leader-elect", True, bool,
         "elect one status writer among replicas through a Lease; off: this single replica writes status, no Lease")
    _add(s, "--lease-namespace", "crdgate-system", str, "namespace of the leader-election Lease")
    _add(s, "--lease-name", "crdgate-leader", str, "name of the leader-election Lease")
    _add(s, "--identity", None, str, "this replica's identity for leader election (default: POD_NAME or hostname)")
    _add(s, "--status-qps", 250.0, float,
         "status writes per second to the API server, on average (client-side limit; the server's API Priority "
         "and Fairness applies too)")
    _add(s, "--status-burst", 500, int, "status writes allowed at once above --status-qps")


def _add_log_flags(p: argparse.ArgumentParser, log_format: str = "auto") -> None:
    _add(p, "--log-format", log_format, str, "json lines, text, or auto: text when stderr is a terminal, json otherwise",
         choices=["auto", "json", "text"])
    _add(p, "--log-level", "info", str, "debug, info, warning, error")
    _add(p, "--log-buffer-bytes", 4 << 20, _log_buffer_bytes,
         "log lines held per stream (access log on stdout, process log on stderr) while its reader is slow; "
         "lines beyond are dropped and counted, never waited for")


RUN_EXAMPLES = """\
examples:
  crdgate run --manifests deploy/examples/     route from a folder of manifests (edits apply at once)
  crdgate run --kube --namespace shop          route from the cluster's APIEndpoints and Ingresses
"""


OUTPUT_HELP = "text for people, json for scripts (default: text)"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("crdgate")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crdgate",
        description="Kubernetes-native API gateway: APIEndpoint and Ingress objects -> routing table -> reverse proxy.",
    )
    parser.add_argument("--version", action="version", version=f"crdgate {_version()}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    # A short usage line: the full one lists every flag (30 lines) above the examples.
    run_cmd = sub.add_parser("run", help="run the gateway with its in-process controller",
                             usage="crdgate run (--manifests DIR | --kube) [options]",
                             formatter_class=argparse.RawDescriptionHelpFormatter,
                             description=RUN_EXAMPLES + "\nRun the proxy, fed by a manifests folder (--manifests DIR) "
                                                        "or the Kubernetes API (--kube).")
    _add_source_flags(run_cmd)
    _add_gateway_flags(run_cmd)
    _add_log_flags(run_cmd)

    demo_cmd = sub.add_parser("demo", help="start demo backends and the gateway on the example manifests",
                              usage="crdgate demo [options]",
                              description="Start demo backends on 127.0.0.1 and the gateway on deploy/examples, then print what to curl.")
    _add_source_flags(demo_cmd, str(EXAMPLES))
    # The demo binds loopback unless told otherwise (a first run exposes nothing), keeps
    # the terminal for its own lines (text logs, no access log), and stops at Ctrl-C
    # without draining: no load balancer is waiting for its readiness to drop.
    _add_gateway_flags(demo_cmd, listen="127.0.0.1:8080", access_log=False, drain_seconds=0.0)
    _add_log_flags(demo_cmd, log_format="text")

    validate_cmd = sub.add_parser("validate", help="compile manifests offline: what each object becomes or why it fails")
    validate_cmd.add_argument("dir", metavar="PATH", help="manifests folder (read recursively) or a single manifest file")
    validate_cmd.add_argument("--output", choices=["text", "json"], default="text", help=OUTPUT_HELP)
    _add_offline_compile_flags(validate_cmd)

    routes_cmd = sub.add_parser("routes", help="print the compiled routing table, in match order")
    routes_cmd.add_argument("dir", metavar="PATH", help="manifests folder (read recursively) or a single manifest file")
    routes_cmd.add_argument("--output", choices=["text", "json"], default="text", help=OUTPUT_HELP)
    _add_offline_compile_flags(routes_cmd)

    explain_cmd = sub.add_parser(
        "explain", help="which route a request would reach, and why (offline or on a running gateway)",
        usage="crdgate explain METHOD URL [-H 'Name: value']... (--manifests PATH | --admin URL) [--output text|json]",
        description="Explain which object and rule a request would reach: the precedence step that decided, every "
                    "other route whose host and path matched and why it lost, the policies in order, the rewritten "
                    "path and host, the backends. Exit status 0 when a route matches, 1 on 404/405, 2 on bad input.")
    explain_cmd.add_argument("method", metavar="METHOD", help="HTTP method, e.g. GET")
    explain_cmd.add_argument("url", metavar="URL",
                             help="http://host/path?query, or /path?query with the host in -H 'Host: ...'")
    explain_cmd.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                             help="a request header (repeatable), as with curl -H")
    explain_from = explain_cmd.add_mutually_exclusive_group(required=True)
    explain_from.add_argument("--manifests", metavar="PATH", dest="dir",
                              help="compile this manifests folder or file, as validate does, and explain on it")
    explain_from.add_argument("--admin", metavar="URL",
                              help="explain on the live table of a running gateway: its admin listener, e.g. 127.0.0.1:9090")
    explain_cmd.add_argument("--output", choices=["text", "json"], default="text", help=OUTPUT_HELP)
    _add_offline_compile_flags(explain_cmd, " (with --manifests)")

    bench_cmd = sub.add_parser("bench", help="the load benchmark (see `crdgate bench --help`)", add_help=False)
    bench_cmd.add_argument("bench_args", nargs=argparse.REMAINDER)
    return parser


def _list_flag(args, name: str) -> list[str]:
    """A repeatable flag's values (comma-separated too); the environment's when none was given."""
    given = getattr(args, name)
    values = given if given is not None else getattr(args, name + "_env") or []
    out: list[str] = []
    for v in values:
        out += [p.strip() for p in v.split(",") if p.strip()]
    return out


# -- flags -> Config --------------------------------------------------------------
# Every function here reads the flags of one concern; ValueError names the bad flag
# (main turns it into a usage error). A new flag of run must reach the Config:
# tests/test_cli_config.py checks each one does.


def build_config(args) -> Config:
    """The one frozen Config of ``run`` and ``demo``, built from the parsed flags."""
    from crdgate.config import Config, LogConfig, RateLimitConfig, TLSConfig
    from crdgate.logs import resolve_log_format

    return Config(
        source=_source(args),
        gateway=gateway_config(args),
        compile=compile_options(args, jwks_refresh_floor=args.jwks_refresh_floor),
        tls=TLSConfig(default_certificate=_default_certificate(args.default_certificate)),
        ratelimit=RateLimitConfig(
            redis_url=_redis_url(args.redis_url),
            redis_failure=args.ratelimit_redis_failure,
            redis_timeout=_positive(args.ratelimit_redis_timeout, "--ratelimit-redis-timeout"),
            max_keys=_positive(args.ratelimit_max_keys, "--ratelimit-max-keys"),
            lease_max=_positive(args.ratelimit_redis_lease, "--ratelimit-redis-lease"),
        ),
        logging=LogConfig(format=resolve_log_format(args.log_format), level=args.log_level,
                          buffer_bytes=args.log_buffer_bytes),
        workers=_positive(args.workers, "--workers"),
        controller_process=args.controller_process,
    )


def _source(args) -> ManifestsSource | KubeSource:
    from crdgate.config import KubeSource, ManifestsSource

    if args.command == "demo":  # the demo routes from a folder, always
        return ManifestsSource(Path(args.manifests))
    # A kubeconfig or a context says which cluster to watch: the intent is plain.
    implied = "--kubeconfig" if args.kubeconfig else "--context" if args.context else None
    kube = args.kube or implied is not None
    if implied and not args.kube and args.manifests:
        raise ValueError(f"--manifests and {implied} are exclusive ({implied} selects the Kubernetes source)")
    if not kube and not args.manifests:
        raise ValueError("run needs a source: --manifests DIR, or --kube (implied by --kubeconfig FILE)")
    if kube and args.manifests:
        raise ValueError("--manifests and --kube are exclusive")
    if not kube:
        if not Path(args.manifests).is_dir():
            raise ValueError(f"--manifests: not a folder: {args.manifests}")
        return ManifestsSource(Path(args.manifests))
    return KubeSource(
        kubeconfig=args.kubeconfig,
        context=args.context,
        namespaces=tuple(_list_flag(args, "namespace")),
        identity=replica_identity(args.identity),
        leader_elect=args.leader_elect,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
        publish_address=args.publish_address,
        publish_service=args.publish_service,
        status_qps=_positive(args.status_qps, "--status-qps"),
        status_burst=_positive(args.status_burst, "--status-burst"),
    )


def replica_identity(flag: str | None) -> str:
    """This process's name in leader election: --identity, else the pod's name, else the host's."""
    return flag or os.environ.get("POD_NAME") or socket.gethostname()


def gateway_config(args) -> GatewayConfig:
    """The data plane's settings: listeners, limits, timeouts, access log, response switches."""
    nets = []
    for cidr in _list_flag(args, "trusted_proxies"):
        try:
            nets.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise ValueError(f"--trusted-proxies: not a CIDR: {cidr!r}") from None
    limits = Limits(
        max_uri_bytes=args.max_uri_bytes, max_header_bytes=args.max_header_bytes, max_headers=args.max_headers,
        max_body_bytes=args.max_body_bytes, header_timeout=args.header_timeout, idle_timeout=args.idle_timeout,
        upstream_idle_timeout=args.upstream_idle_timeout, max_response_header_bytes=args.max_response_header_bytes,
    )
    return GatewayConfig(
        listen=args.listen, admin_listen=args.admin_listen, trusted_proxies=tuple(nets), limits=limits,
        access_log=args.access_log, log_buffer_bytes=args.log_buffer_bytes,
        access_log_format=args.access_log_format, access_log_sample_2xx=args.access_log_sample_2xx,
        drain_seconds=args.drain_seconds, shutdown_timeout=args.shutdown_timeout,
        listen_tls=args.listen_tls, h2c=args.h2c, upstream_ca_file=_upstream_ca_file(args.upstream_ca_file),
        ratelimit_headers=args.ratelimit_headers, create_traceparent=args.create_traceparent,
        **_tracing_settings(args),
    )


def _tracing_settings(args) -> dict:
    """--otlp-endpoint and --trace-sample-ratio, checked; ValueError names the flag."""
    endpoint, ratio = args.otlp_endpoint or None, args.trace_sample_ratio
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"--trace-sample-ratio: must be between 0 and 1, got {ratio}")
    if endpoint is None:
        if ratio > 0.0:
            raise ValueError("--trace-sample-ratio: needs --otlp-endpoint (where the spans go)")
        return {}
    parts = urllib.parse.urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--otlp-endpoint: not an http(s) URL: {endpoint!r}")
    return {"otlp_endpoint": endpoint, "trace_sample_ratio": ratio}


def compile_options(args, jwks_refresh_floor: float | None = None) -> CompileOptions:
    """The compile options of every subcommand that compiles (run, demo, workers, validate, routes).

    Built here once from the parsed flags, so that a flag cannot get lost on
    the way to the compiler. ``jwks_refresh_floor``: --jwks-refresh-floor of
    run and demo (validate and routes fetch nothing: None, the default).
    ValueError names a bad flag.
    """
    from controller.authbuild import AuthDefaults
    from controller.compile import CompileOptions

    secret = args.default_auth_secret
    floor = {} if jwks_refresh_floor is None else {"jwks_refresh_floor": jwks_refresh_floor}
    # --default-auth-type has a default (APIKey): it only means something with a secret.
    auth_defaults = AuthDefaults.from_flags(secret, args.default_auth_type if secret else None, **floor)
    return CompileOptions(
        ingress_class=args.ingress_class,
        gateway_controller_name=args.gateway_controller_name,
        auth_defaults=auth_defaults,
        allow_cross_namespace_refs=args.allow_cross_namespace_refs,
        search_namespace=pod_namespace(),
    )


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def pod_namespace() -> str:
    """The namespace this process runs in when it runs in a pod, else "".

    ``POD_NAMESPACE`` (the downward API, set by deploy/) or the service
    account's namespace file. Not the watched namespaces: what matters is where
    this process's DNS search list points (controller/compile/options.py)."""
    env = os.environ.get("POD_NAMESPACE", "").strip()
    if env:
        return env
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


def _redis_url(value: str | None) -> str | None:
    """--redis-url, checked here so that a typo is a usage error, not a traceback at startup."""
    if value:
        from gateway.redisurl import parse

        parse(value)
    return value or None


def _positive(value, flag: str):
    if not value > 0 or (isinstance(value, float) and math.isinf(value)):
        raise ValueError(f"{flag}: expected a number above 0, got {value!r}")
    return value


def _default_certificate(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    ns, _, name = value.partition("/")
    return ns, name


def _upstream_ca_file(path: str | None) -> str | None:
    """The CA file, checked now: a bad one must stop the start, not fail every https request."""
    if not path:
        return None
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"--upstream-ca-file: cannot load {path}: {e}") from None
    return path


# -- commands ---------------------------------------------------------------------------------


def _offline(args):
    """The folder or file shared by validate and routes; None when there is nothing to compile."""
    from controller.files import manifest_files

    root = Path(args.dir)
    if not root.exists():
        print(f"crdgate {args.command}: {root}: no such file or folder", file=sys.stderr)
        return None
    if not (root.is_dir() or root.is_file()):
        print(f"crdgate {args.command}: {root}: neither a folder nor a file", file=sys.stderr)
        return None
    if root.is_dir() and not manifest_files(root):
        # Nothing to compile is almost always a wrong path, never a valid gateway.
        print(f"crdgate {args.command}: {root} has no manifests (no *.yaml, *.yml or *.json files in it "
              f"or its subfolders)", file=sys.stderr)
        return None
    return root


def cmd_validate(args, options: CompileOptions) -> int:
    from crdgate import report

    root = _offline(args)
    if root is None:
        return 2
    if args.output == "json":
        doc = report.validate_json(root, options)
        print(json.dumps(doc, indent=2))
        return 0 if doc.get("ok") else 1
    text, ok = report.validate_report(root, options)
    print(text)
    return 0 if ok else 1


def cmd_routes(args, options: CompileOptions) -> int:
    from crdgate import report

    root = _offline(args)
    if root is None:
        return 2
    if args.output == "json":
        print(json.dumps(report.routes_json_for_folder(root, options), indent=2))
        return 0
    print(report.routes_report(root, options))
    return 0


def cmd_explain(args, options: CompileOptions) -> int:
    from crdgate import explain

    try:
        if args.admin is not None:
            doc = explain.explain_live(args.admin, args.method, args.url, args.header)
        else:
            root = _offline(args)
            if root is None:
                return 2
            doc = explain.explain_offline(root, options, args.method, args.url, args.header)
    except explain.ExplainFailed as e:
        print(f"crdgate explain: {e}", file=sys.stderr)
        return 2
    print(json.dumps(doc, indent=2) if args.output == "json" else explain.explain_text(doc))
    return 0 if doc.get("route") is not None else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        from bench.__main__ import main as bench_main

        return bench_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("validate", "routes"):
        try:
            options = compile_options(args)
        except ValueError as e:
            parser.error(str(e))
        return cmd_validate(args, options) if args.command == "validate" else cmd_routes(args, options)
    if args.command == "explain":
        try:
            options = compile_options(args)
        except ValueError as e:
            parser.error(str(e))
        return cmd_explain(args, options)
    try:
        config = build_config(args)
    except ValueError as e:
        parser.error(str(e))
    from crdgate import demo, run, workers
    from crdgate.logs import setup_logging

    setup_logging(config.logging)
    if args.command == "demo":
        return demo.run_demo(config)
    before, after = run.raise_open_file_limit()  # before any worker starts: they inherit it
    if after > before:
        log.info("open-file limit raised from %d to %d", before, after)
    if config.workers > 1 or config.controller_process:
        return workers.supervise(config)
    return run.run_gateway(config)


if __name__ == "__main__":
    sys.exit(main())
