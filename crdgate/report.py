"""Offline reports for ``crdgate validate DIR`` and ``crdgate routes DIR``.

Loads a manifests folder (controller/files.py), compiles it with the same pure
compiler the running gateway uses (controller/compile/) and renders what each
object becomes, or why it fails, and the compiled table in match order. The
table's JSON rows come from gateway/tablejson.py, shared with the admin
``/routes`` view. Front-door output, so it lives with the command line
(crdgate/cli.py prints what these return): it joins the controller's compile
and the data plane's table view, and nothing in controller/ needs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping

from controller.compile import ERROR, PENDING, READY, CompileOptions, CompileResult, ObjectStatus, compile_snapshot
from controller.files import LoadError, load_manifests
from controller.store import APIENDPOINT, GATEWAY, GRPCROUTE, HTTPROUTE, INGRESS, NOT_COMPILED_KINDS, Snapshot
from gateway.routing import Timeouts
from gateway.tablejson import table_to_json

_DEFAULT_REQUEST_TIMEOUT = Timeouts().request
_LABELS = {READY: "OK", PENDING: "PENDING", ERROR: "ERROR"}
_LABEL_WIDTH = 7  # "PENDING"


@dataclass(frozen=True)
class FolderReport:
    """A folder loaded and compiled: everything both reports need."""

    snapshot: Snapshot
    result: CompileResult
    load_errors: tuple[LoadError, ...]
    options: CompileOptions
    # Objects of kinds crdgate does not read (Namespace, Deployment...), by kind.
    ignored_kinds: Mapping[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.load_errors and all(s.state != ERROR for s in self.result.statuses.values())

    def rows_by_owner(self) -> dict[tuple[str, str], list[dict]]:
        """The table's JSON rows grouped by (kind, "ns/name") of the object that made them."""
        out: dict[tuple[str, str], list[dict]] = {}
        for row in table_to_json(self.result.table):
            out.setdefault((row["kind"], row["name"]), []).append(row)
        return out

    def unowned(self) -> list[tuple[str, str]]:
        """Routable objects that got no status: another gateway class's (or Gateway controller's)."""
        return [
            (kind, key)
            for kind in (APIENDPOINT, INGRESS, HTTPROUTE, GRPCROUTE, GATEWAY)
            for key in sorted(self.snapshot.of(kind))
            if f"{kind}:{key}" not in self.result.statuses
        ]

    def gateways(self) -> list[ObjectStatus]:
        """Our Gateways' statuses (their listeners), in name order."""
        return [s for s in self.result.statuses.values() if s.kind == GATEWAY]


def compile_folder(root: Path, options: CompileOptions | None = None) -> FolderReport:
    """Load and compile a folder. Raises controller.files.ManifestFolderError if it is missing."""
    options = options or CompileOptions()
    objects, origins, errors, ignored = load_manifests(root)
    # Kinds read (and checked) that the compile does not route yet count as ignored, so that
    # nobody takes an HTTPRoute in the folder for a route.
    ignored = dict(ignored)
    for kind in NOT_COMPILED_KINDS:
        if objects.get(kind):
            ignored[kind] = ignored.get(kind, 0) + len(objects[kind])
    ignored = dict(sorted(ignored.items()))
    snapshot = Snapshot(
        objects=MappingProxyType({k: MappingProxyType(v) for k, v in objects.items()}),
        origins=MappingProxyType(origins),
    )
    return FolderReport(snapshot, compile_snapshot(snapshot, options), tuple(errors), options, ignored)


# -- one-line summaries ----------------------------------------------------------


def _match_text(row: dict) -> str:
    if row["fallback"]:
        return "(default backend)"
    methods = ",".join(row["methods"]) if row["methods"] else "*"
    hosts = ",".join(row["hosts"])
    path = row["path"]
    if row["pathType"] == "Exact":
        path += " (Exact)"
    elif row["pathType"] == "RegularExpression":
        path = f"~{path}"
    extra = [f"{m['name']}{'~' if m['type'] != 'Exact' else '='}{m['value']}" for m in row["headers"]]
    extra += [f"?{m['name']}{'~' if m['type'] != 'Exact' else '='}{m['value']}" for m in row["queryParams"]]
    text = f"{methods} {hosts}{path}"
    if extra:
        text += " {" + " ".join(extra) + "}"
    return text


def _target_text(row: dict) -> str:
    redirect = row["policies"].get("redirect")
    if redirect is not None:
        to = "".join(
            str(x)
            for x in (
                f"{redirect['scheme']}://" if "scheme" in redirect else "",
                redirect.get("hostname", ""),
                f":{redirect['port']}" if "port" in redirect else "",
                redirect.get("replaceFullPath") or redirect.get("replacePrefixMatch") or "",
            )
        )
        return f"redirect {redirect.get('statusCode', 302)} {to or '(same URL)'}"
    backends = row["backends"]
    if not backends:
        return "(no backend)"
    if len(backends) == 1:
        return backends[0]["backend"]
    return ", ".join(f"{b['backend']} ({b['weight']})" for b in backends)


def _route_text(row: dict) -> str:
    return f"{_match_text(row)} -> {_target_text(row)}"


def _listener_text(ls) -> str:
    """``name PROTOCOL:port host (n routes[, problem])`` of one Gateway listener."""
    problems = [c.reason for c in ls.conditions if c.status != ("False" if c.type == "Conflicted" else "True")
                and c.type != "Programmed"]
    n = ls.attached_routes
    extra = f"{n} route{'s' if n != 1 else ''}" + "".join(f", {p}" for p in problems)
    return f"{ls.name} {ls.protocol}:{ls.port} {ls.hostname or '*'} ({extra})"


def _object_line(status: ObjectStatus, rows: list[dict]) -> str:
    label = _LABELS.get(status.state, status.state.upper()).ljust(_LABEL_WIDTH)
    head = f"{label} {status.kind} {status.namespace}/{status.name} ({status.origin or '?'})"
    if status.listeners:
        listeners = "listeners " + "; ".join(_listener_text(ls) for ls in status.listeners)
        return f"{head}: {listeners}" + ("" if status.state == READY else f": {status.message}") + f" [{status.reason}]"
    routes = "; ".join(_route_text(r) for r in rows)
    if status.state == READY:
        body = routes or status.message
    elif status.state == PENDING and routes:
        body = f"{routes}: {status.message}"
    else:
        body = status.message
    return f"{head}: {body} [{status.reason}]"


# -- validate ----------------------------------------------------------------------


def _summary(report: FolderReport) -> dict[str, int]:
    counts = {READY: 0, PENDING: 0, ERROR: 0}
    for s in report.result.statuses.values():
        counts[s.state] = counts.get(s.state, 0) + 1
    return {
        "ready": counts[READY],
        "pending": counts[PENDING],
        "error": counts[ERROR],
        "ignored": len(report.unowned()),
        "loadErrors": len(report.load_errors),
        "routes": len(report.result.table.routes) + (1 if report.result.table.fallback is not None else 0),
    }


def validate_text(report: FolderReport) -> str:
    rows = report.rows_by_owner()
    lines = [
        _object_line(s, rows.get((s.kind, f"{s.namespace}/{s.name}"), [])) for s in report.result.statuses.values()
    ]
    for kind, key in report.unowned():
        origin = report.snapshot.origins.get(f"{kind}:{key}", "?")
        controller = report.options.gateway_controller_name
        why = (
            f"attached to no Gateway of controller {controller}"
            if kind in (HTTPROUTE, GRPCROUTE)
            else f"of no GatewayClass of controller {controller}"
            if kind == GATEWAY
            else f"not for ingress class {report.options.ingress_class}"
        )
        lines.append(f"{'SKIP'.ljust(_LABEL_WIDTH)} {kind} {key} ({origin}): {why}")
    for err in report.load_errors:
        lines.append(f"{'ERROR'.ljust(_LABEL_WIDTH)} {err}")
    if report.ignored_kinds:
        kinds = ", ".join(f"{kind} ({n})" for kind, n in report.ignored_kinds.items())
        lines.append(
            f"{'IGNORED'.ljust(_LABEL_WIDTH)} {sum(report.ignored_kinds.values())} object(s) of kinds crdgate "
            f"does not read: {kinds}"
        )
    n = _summary(report)
    lines.append(
        f"{n['ready']} ready, {n['pending']} pending, {n['error']} with errors, {n['ignored']} for other classes; "
        f"{n['loadErrors']} load error(s); {n['routes']} route(s)"
    )
    return "\n".join(lines)


def validate_report(root: Path, options: CompileOptions | None = None) -> tuple[str, bool]:
    """Text for ``crdgate validate DIR`` and whether it passes (no load error, no Error state)."""
    report = compile_folder(root, options)
    return validate_text(report), report.ok


def validate_json(root: Path, options: CompileOptions | None = None) -> dict:
    """``crdgate validate DIR --output json``: the same as the text, as data."""
    report = compile_folder(root, options)
    rows = report.rows_by_owner()
    objects = [
        {
            "kind": s.kind,
            "namespace": s.namespace,
            "name": s.name,
            "origin": s.origin,
            "state": s.state,
            "reason": s.reason,
            "message": s.message,
            "conditions": [{"type": c.type, "status": c.status, "reason": c.reason, "message": c.message} for c in s.conditions],
            "routes": rows.get((s.kind, f"{s.namespace}/{s.name}"), []),
            **_gateway_api_json(s),
        }
        for s in report.result.statuses.values()
    ]
    ignored = [
        {"kind": kind, "key": key, "origin": report.snapshot.origins.get(f"{kind}:{key}")}
        for kind, key in report.unowned()
    ]
    return {
        "ok": report.ok,
        "summary": _summary(report),
        "objects": objects,
        "ignored": ignored,
        "ignoredKinds": dict(report.ignored_kinds),
        "loadErrors": [e.to_json() for e in report.load_errors],
    }


def _conditions_json(conds) -> list[dict]:
    return [{"type": c.type, "status": c.status, "reason": c.reason, "message": c.message} for c in conds]


def _gateway_api_json(s: ObjectStatus) -> dict:
    """A Gateway's listeners and an HTTPRoute's parents, as the status writer shows them."""
    if s.listeners:
        return {"listeners": [
            {"name": ls.name, "protocol": ls.protocol, "port": ls.port, "hostname": ls.hostname,
             "supportedKinds": list(ls.supported_kinds), "attachedRoutes": ls.attached_routes,
             "conditions": _conditions_json(ls.conditions)}
            for ls in s.listeners
        ]}
    if s.parents:
        return {"parents": [
            {"parentRef": dict(p.ref), "accepted": p.accepted, "reason": p.reason, "message": p.message,
             "listeners": list(p.listeners)}
            for p in s.parents
        ]}
    return {}


# -- routes ------------------------------------------------------------------------


def _backends_cell(row: dict) -> str:
    redirect = row["policies"].get("redirect")
    if redirect is not None and not row["backends"]:
        return _target_text(row)
    cells = []
    for b in row["backends"]:
        cell = f"{b['backend']} w={b['weight']}"
        cell += f" ({b['endpoints']} ready)" if b["state"] == "Ready" else f" ({b['state']})"
        cells.append(cell)
    return ", ".join(cells) or "-"


def _policies_cell(row: dict) -> str:
    p = row["policies"]
    out = []
    if "auth" in p:
        auth = p["auth"]
        out.append(f"auth={auth.get('type')}" + (f"(unavailable: {auth['unavailable']})" if "unavailable" in auth else ""))
    if "rateLimit" in p:
        rl = p["rateLimit"]
        out.append(
            f"ratelimit={rl['requestsPerMinute']}/min"
            + (f"+{rl['burst']}" if rl.get("burst") else "")
            + f"({rl.get('scope', 'Local')},{rl.get('key', 'ClientAddress')})"
        )
    if "rewrite" in p:
        rw = p["rewrite"]
        parts = [f"host:{rw['hostname']}"] if "hostname" in rw else []
        if "replacePrefixMatch" in rw:
            parts.append(f"prefix:{rw['replacePrefixMatch']}")
        if "replaceFullPath" in rw:
            parts.append(f"path:{rw['replaceFullPath']}")
        out.append("rewrite=" + ",".join(parts))
    for key, short in (("requestHeaders", "reqheaders"), ("responseHeaders", "respheaders")):
        if key in p:
            mods = p[key]
            n = sum(len(mods.get(op, [])) for op in ("set", "add", "remove"))
            out.append(f"{short}={n}")
    if "retries" in p:
        out.append(f"retries={p['retries']['attempts']}")
    t = p.get("timeouts", {})
    if t.get("request") != _DEFAULT_REQUEST_TIMEOUT or "backendRequest" in t:
        out.append(
            "timeout="
            + (f"{t['request']:g}s" if "request" in t else "none")
            + (f"/{t['backendRequest']:g}s" if "backendRequest" in t else "")
        )
    if "cors" in p:
        out.append("cors")
    if "maxBodyBytes" in p:
        out.append(f"maxbody={p['maxBodyBytes']}")
    if "loadBalancer" in p:
        out.append(f"lb={p['loadBalancer']}")
    if "mirror" in p:
        out.append(f"mirror={p['mirror']['backend']['backend']}({p['mirror']['percent']:g}%)")
    if p.get("httpsRedirect"):
        out.append("https-redirect")
    return " ".join(out) or "-"


_COLUMNS = ("PRIORITY", "HOST(S)", "METHODS", "PATH", "TYPE", "MATCHES", "ROUTE", "BACKENDS", "POLICIES")


def _table_row(row: dict) -> tuple[str, ...]:
    matches = [f"{m['name']}{'~' if m['type'] != 'Exact' else '='}{m['value']}" for m in row["headers"]]
    matches += [f"?{m['name']}{'~' if m['type'] != 'Exact' else '='}{m['value']}" for m in row["queryParams"]]
    route = f"{row['kind']} {row['name']}" + (f" {row['rule']}" if row["rule"] else "")
    return (
        "default" if row["fallback"] else str(row["priority"]),
        ",".join(row["hosts"]) or "*",
        ",".join(row["methods"]) if row["methods"] else "*",
        "-" if row["fallback"] else row["path"],
        "-" if row["fallback"] else row["pathType"],
        " ".join(matches) or "-",
        route,
        _backends_cell(row),
        _policies_cell(row),
    )


def format_table(rows: Iterable[dict]) -> str:
    """Rows of ``table_to_json`` as an aligned text table."""
    body = [_table_row(r) for r in rows]
    if not body:
        return "no routes"
    keep = [i for i, c in enumerate(_COLUMNS) if c != "MATCHES" or any(r[i] != "-" for r in body)]
    grid = [tuple(_COLUMNS[i] for i in keep)] + [tuple(r[i] for i in keep) for r in body]
    widths = [max(len(line[i]) for line in grid) for i in range(len(keep))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in grid)


def routes_text(report: FolderReport) -> str:
    text = format_table(table_to_json(report.result.table))
    gateways = report.gateways()
    if gateways:
        # Which listeners the HTTPRoute rows above are served for (crdgate has one table for all).
        text += "\n\n" + "\n".join(
            f"Gateway {g.namespace}/{g.name} {_LABELS.get(g.state, g.state)}: "
            + "; ".join(_listener_text(ls) for ls in g.listeners)
            for g in gateways
        )
    notes = []
    n = _summary(report)
    if n["error"]:
        notes.append(f"{n['error']} object(s) with errors")
    if n["loadErrors"]:
        notes.append(f"{n['loadErrors']} file load error(s)")
    if notes:
        text += "\n\n" + ", ".join(notes) + " (see `crdgate validate`)"
    return text


def routes_report(root: Path, options: CompileOptions | None = None) -> str:
    """Text for ``crdgate routes DIR``: the compiled table in match order, then the fallback."""
    return routes_text(compile_folder(root, options))


def routes_json_for_folder(root: Path, options: CompileOptions | None = None) -> dict:
    """``crdgate routes DIR --output json``: the admin ``/routes`` rows plus load errors."""
    report = compile_folder(root, options)
    return {
        "routes": table_to_json(report.result.table),
        "loadErrors": [e.to_json() for e in report.load_errors],
    }
