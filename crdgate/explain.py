"""``crdgate explain METHOD URL``: which route a request would reach, and why.

Two sources, one explanation (gateway/explain.py, which asks the proxy's own
matcher): ``--manifests`` compiles a folder or file as ``crdgate validate`` does
(crdgate/report.py) and explains on that table; ``--admin`` asks a running
gateway's admin ``/explain``, which explains on the live table. Either way the
objects the compile left out (Error or Pending) are listed with their reason,
since a route that is not in the table is often the answer to "why 404?".
Front-door code: it joins the controller's statuses and the data plane's view.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterable

from gateway.explain import ExplainError, explain, parse_headers
from gateway.errors import ExplainFailed

ADMIN_TIMEOUT = 10.0  # seconds for the admin's answer


def not_ready_objects(statuses: Iterable) -> list[dict[str, Any]]:
    """Objects the compile did not put in the table whole (``ObjectStatus`` not Ready), as plain dicts."""
    from controller.compile import READY

    return [
        {"kind": s.kind, "namespace": s.namespace, "name": s.name, "state": s.state, "reason": s.reason,
         "message": s.message}
        for s in statuses
        if s.state != READY
    ]


def explain_offline(root: Path, options, method: str, url: str, headers: list[str]) -> dict[str, Any]:
    from crdgate.report import compile_folder

    try:
        parsed = parse_headers(headers)
    except ExplainError as e:
        raise ExplainFailed(str(e)) from None
    report = compile_folder(root, options)
    try:
        doc = explain(report.result.table, method, url, parsed)
    except ExplainError as e:
        raise ExplainFailed(str(e)) from None
    doc["notReady"] = not_ready_objects(report.result.statuses.values())
    doc["loadErrors"] = [e.to_json() for e in report.load_errors]
    return doc


def explain_live(admin: str, method: str, url: str, headers: list[str]) -> dict[str, Any]:
    """Ask a running gateway's admin listener (``http://127.0.0.1:9090`` or ``127.0.0.1:9090``)."""
    base = admin if "://" in admin else f"http://{admin}"
    query = urllib.parse.urlencode([("method", method), ("url", url)] + [("header", h) for h in headers])
    try:
        with urllib.request.urlopen(f"{base.rstrip('/')}/explain?{query}", timeout=ADMIN_TIMEOUT) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            reason = json.loads(e.read()).get("error", e.reason)
        except (ValueError, AttributeError):
            reason = e.reason
        raise ExplainFailed(f"{base}: {e.code} {reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise ExplainFailed(f"cannot ask the admin listener at {base}: {getattr(e, 'reason', e)}") from None


# -- text ------------------------------------------------------------------------------


def _who(r: dict) -> str:
    out = f"{r['kind']} {r['namespace']}/{r['name']}"
    return out + (f" {r['rule']}" if r.get("rule") else "")


def _policy_text(p: dict) -> str:
    name = p["policy"]
    if name == "auth":
        where = f"header {p['header']}" + (f" or query parameter {p['queryParam']}" if "queryParam" in p else "")
        return f"auth {p.get('type')}: credential read from {where}"
    if name == "rateLimit":
        burst = f" +{p['burst']} burst" if p.get("burst") else ""
        return f"rate limit {p['requestsPerMinute']}/min{burst} ({p.get('scope', 'Local')}), keyed by {p['keyedBy']}"
    rest = ", ".join(f"{k}={json.dumps(v)}" for k, v in p.items() if k != "policy")
    return f"{name} {rest}".rstrip()


def explain_text(doc: dict[str, Any]) -> str:
    req = doc["request"]
    lines = [f"{req['method']} {req['host'] or '(no host)'}{req['path']}"]
    if req.get("pathNormalized"):
        lines[0] += f"  (normalised from {req['pathAsSent']})"
    route = doc.get("route")
    if route is None:
        lines.append(f"-> {doc['status']}: {doc.get('reason', '')}")
        if doc.get("allow"):
            lines.append(f"   Allow: {', '.join(doc['allow'])}")
    else:
        what = "default backend" if route.get("fallback") else f"{route['pathType']} {route['path']}"
        lines.append(f"-> {_who(route)} ({what})")
        lines.append(f"   decided by {doc['decidedBy']['step']}: {doc['decidedBy']['reason']}")
    if doc.get("candidates"):
        lines.append("other routes whose host and path matched:")
        for c in doc["candidates"]:
            lines.append(f"   {c['outcome']:<8} {_who(c)} ({c['pathMatch']}, {c['hostMatch']} host): "
                         f"{c['step']}: {c['reason']}")
    if route is not None:
        policies = doc.get("policies", [])
        if policies:
            lines.append("policies, in the order applied:")
            lines += [f"   {i}. {_policy_text(p)}" for i, p in enumerate(policies, 1)]
        if "redirect" in doc:
            rd = doc["redirect"]
            lines.append(f"answered by the gateway: {rd['statusCode']} redirect to {rd['location']}")
        elif "preflight" in doc:
            pf = doc["preflight"]
            lines.append(f"answered by the gateway's CORS policy: {pf['statusCode']} {pf['reason']}")
        else:
            up = doc["upstream"]
            host = up["host"] if up["host"] is not None else "per backend"
            lines.append(f"backend sees: {up['path']}, Host {host or '(none)'} (from the {up['hostFrom']})")
            lines.append("backends:")
            for b in doc["backends"]:
                eps = ", ".join(b["endpoints"]) or "no endpoints"
                lines.append(f"   {b['backend']}  weight {b['weight']} ({b['share']:g}%)  {b['state']}: {eps}")
            if not doc["backends"]:
                lines.append("   (none)")
    not_ready = doc.get("notReady") or []
    if not_ready:
        lines.append("objects not Ready, out of the table or routed with a problem (see crdgate validate):")
        lines += [f"   {o['state']:<8} {o['kind']} {o['namespace']}/{o['name']}: {o['reason']}: {o['message']}"
                  for o in not_ready]
    for err in doc.get("loadErrors") or []:
        lines.append(f"   load error: {err.get('file', '?')}: {err.get('message', err)}")
    return "\n".join(lines)
