"""Gateway API status on the fake API server: GatewayClass, Gateway (listeners, attached routes,
addresses) and HTTPRoute parents, written by the leader with merge patches and read back."""

from __future__ import annotations

import asyncio
import base64
import contextlib

from fakekube import (  # noqa: F401
    eventually,
    fake_kube,
    gateway,
    gatewayclass,
    httproute,
    kube_api,
    namespace,
    running,
    service,
)

from controller.compile import CompileOptions
from controller.kube import KubeSource
from controller.publish import Publisher
from controller.status import StatusWriter
from controller.store import KINDS, Store

FAST = dict(timeout_seconds=30, backoff_base=0.05, backoff_cap=0.2, min_watch_seconds=0.0)
OURS = "crdgate.io/gateway-controller"
GROUP = "gateway.networking.k8s.io"


class Elector:
    """Leadership under the test's control."""

    def __init__(self, leading: bool = False):
        self._leading, self._following = asyncio.Event(), asyncio.Event()
        self.set(leading)

    def set(self, leading: bool) -> None:
        (self._leading if leading else self._following).set()
        (self._following if leading else self._leading).clear()

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def wait_leading(self) -> None:
        await self._leading.wait()

    async def wait_following(self) -> None:
        await self._following.wait()


def tls_secret(ns: str, name: str) -> dict:
    b64 = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": ns, "name": name},
            "type": "kubernetes.io/tls", "data": {"tls.crt": b64, "tls.key": b64}}


def grant(ns: str, from_ns: str, to_kind: str, from_kind: str = "HTTPRoute") -> dict:
    return {"apiVersion": f"{GROUP}/v1beta1", "kind": "ReferenceGrant", "metadata": {"namespace": ns, "name": "g"},
            "spec": {"from": [{"group": GROUP, "kind": from_kind, "namespace": from_ns}],
                     "to": [{"group": "", "kind": to_kind}]}}


def listener(name: str, port: int, protocol: str = "HTTP", **extra) -> dict:
    return {"name": name, "port": port, "protocol": protocol,
            "allowedRoutes": {"namespaces": {"from": "All"}}, **extra}


def https(name: str, port: int, host: str, *refs: dict) -> dict:
    return listener(name, port, "HTTPS", hostname=host, tls={"mode": "Terminate", "certificateRefs": list(refs)})


def to(section: str, name: str = "gw") -> dict:
    return {"name": name, "namespace": "infra", "sectionName": section}


def world(fk) -> None:
    for ns in ("infra", "app", "backends", "certs"):
        fk.create(namespace(ns))
    fk.create(gatewayclass("crdgate"))
    fk.create(gatewayclass("theirs", controller="example.org/other"))
    fk.create(service("app", "svc"))
    fk.create(service("backends", "svc2"))
    fk.create(tls_secret("infra", "tls-cert"))
    fk.create(tls_secret("certs", "cert"))
    fk.create(gateway("infra", "gw", listeners=[
        listener("http", 80, hostname="*.example.com"),
        {"name": "same-only", "port": 8080, "protocol": "HTTP"},  # allowedRoutes defaults to Same
        listener("bad-kinds", 8081, allowedRoutes={"kinds": [{"kind": "TCPRoute"}]}),
        https("https", 443, "secure.example.com", {"name": "tls-cert"}),
        https("https-cross", 8443, "cross.example.com", {"name": "cert", "namespace": "certs"}),
        https("https-missing", 9443, "missing.example.com", {"name": "nope"}),
    ]))
    fk.create(gateway("infra", "their-gw", class_name="theirs"))
    routes = {
        "ok": dict(parentRefs=[to("http")], hostnames=["a.example.com"]),
        "forbidden": dict(parentRefs=[to("same-only")]),
        "hostname": dict(parentRefs=[to("http")], hostnames=["x.other.org"]),
        "missing-gw": dict(parentRefs=[{"name": "nope", "namespace": "infra"}]),
        "nosection": dict(parentRefs=[to("nope")]),
        "cross": dict(parentRefs=[to("http")],
                      rules=[{"backendRefs": [{"name": "svc2", "namespace": "backends", "port": 80}]}]),
        "kind": dict(parentRefs=[to("http")],
                     rules=[{"backendRefs": [{"group": "", "kind": "ConfigMap", "name": "svc", "port": 80}]}]),
        "notfound": dict(parentRefs=[to("http")], rules=[{"backendRefs": [{"name": "absent", "port": 80}]}]),
        "shared": dict(parentRefs=[to("http"), {"name": "their-gw", "namespace": "infra"}]),
        "secure": dict(parentRefs=[to("https")], hostnames=["secure.example.com"]),
    }
    for name, spec in routes.items():
        fk.create(httproute("app", name, **spec))
    # Another controller's entry, written before crdgate's: it must survive crdgate's writes.
    fk.set_status("HTTPRoute", "app", "shared", {"parents": [THEIR_ENTRY]})


THEIR_ENTRY = {
    "parentRef": {"group": GROUP, "kind": "Gateway", "namespace": "infra", "name": "their-gw"},
    "controllerName": "example.org/other",
    "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "theirs",
                    "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}],
}


def status(fk, kind: str, ns: str | None, name: str) -> dict:
    return (fk.get(kind, ns, name) or {}).get("status") or {}


def our_parents(fk, name: str) -> list[dict]:
    return [p for p in status(fk, "HTTPRoute", "app", name).get("parents") or () if p["controllerName"] == OURS]


def cond(conditions, type_: str) -> tuple[str, str] | None:
    c = next((c for c in conditions or () if c["type"] == type_), None)
    return None if c is None else (c["status"], c["reason"])


def route_conds(fk, name: str) -> tuple | None:
    parents = our_parents(fk, name)
    if len(parents) != 1:
        return None
    return cond(parents[0]["conditions"], "Accepted"), cond(parents[0]["conditions"], "ResolvedRefs")


def listeners(fk) -> dict[str, dict]:
    return {ls["name"]: ls for ls in status(fk, "Gateway", "infra", "gw").get("listeners") or ()}


@contextlib.asynccontextmanager
async def serving(fk, api, elector=None, **writer):
    store = Store()
    writer = StatusWriter(api, elector, store=store, **writer)
    publisher = Publisher(store, CompileOptions(), on_statuses=writer.submit)
    async with running(KubeSource(store, api, **FAST).run()), running(writer.run()), running(publisher.run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        await eventually(lambda: publisher.ready, what="first table")
        yield store, writer, publisher


async def test_route_parents_say_why_each_attaches_or_not(fake_kube, kube_api):
    world(fake_kube)
    async with serving(fake_kube, kube_api):
        ok, rr = ("True", "Accepted"), ("True", "ResolvedRefs")
        await eventually(lambda: route_conds(fake_kube, "ok") == (ok, rr), what="ok accepted")
        await eventually(lambda: route_conds(fake_kube, "forbidden")[0] == ("False", "NotAllowedByListeners"),
                         what="NotAllowedByListeners")
        await eventually(lambda: route_conds(fake_kube, "hostname")[0] == ("False", "NoMatchingListenerHostname"),
                         what="NoMatchingListenerHostname")
        await eventually(lambda: route_conds(fake_kube, "nosection")[0] == ("False", "NoMatchingParent"),
                         what="NoMatchingParent")
        await eventually(lambda: route_conds(fake_kube, "cross") == (ok, ("False", "RefNotPermitted")),
                         what="RefNotPermitted")
        await eventually(lambda: route_conds(fake_kube, "kind") == (ok, ("False", "InvalidKind")), what="InvalidKind")
        await eventually(lambda: route_conds(fake_kube, "notfound") == (ok, ("False", "BackendNotFound")),
                         what="BackendNotFound")

        entry = our_parents(fake_kube, "ok")[0]
        assert entry["parentRef"] == {"group": GROUP, "kind": "Gateway", "namespace": "infra", "name": "gw",
                                      "sectionName": "http"}  # the spec's parentRef, echoed
        gen = fake_kube.get("HTTPRoute", "app", "ok")["metadata"]["generation"]
        assert all(c["observedGeneration"] == gen and c["lastTransitionTime"] for c in entry["conditions"])

        # A Gateway that does not exist: nobody can say whose it would be, so crdgate writes nothing.
        assert status(fake_kube, "HTTPRoute", "app", "missing-gw") == {}

        # A ReferenceGrant in the Service's namespace resolves the reference.
        fake_kube.create(grant("backends", "app", "Service"))
        await eventually(lambda: route_conds(fake_kube, "cross") == (ok, rr), what="granted")


async def test_other_controllers_parent_entries_are_kept(fake_kube, kube_api):
    world(fake_kube)
    async with serving(fake_kube, kube_api):
        await eventually(lambda: len(our_parents(fake_kube, "shared")) == 1, what="our entry")
        parents = status(fake_kube, "HTTPRoute", "app", "shared")["parents"]
        assert THEIR_ENTRY in parents and len(parents) == 2
        # Our entry changes (the listener goes away): theirs is still kept.
        gw = fake_kube.get("Gateway", "infra", "gw")
        gw["spec"]["listeners"] = [ls for ls in gw["spec"]["listeners"] if ls["name"] != "http"]
        fake_kube.update(gw)
        await eventually(lambda: route_conds(fake_kube, "shared")[0] == ("False", "NoMatchingParent"),
                         what="our entry rewritten")
        assert THEIR_ENTRY in status(fake_kube, "HTTPRoute", "app", "shared")["parents"]


async def test_a_route_that_leaves_our_gateways_loses_our_entries_only(fake_kube, kube_api):
    world(fake_kube)
    async with serving(fake_kube, kube_api):
        await eventually(lambda: len(our_parents(fake_kube, "shared")) == 1, what="our entry")
        route = fake_kube.get("HTTPRoute", "app", "shared")
        route["spec"]["parentRefs"] = [{"name": "their-gw", "namespace": "infra"}]
        fake_kube.update(route)
        await eventually(lambda: our_parents(fake_kube, "shared") == [], what="our entry dropped")
        assert status(fake_kube, "HTTPRoute", "app", "shared")["parents"] == [THEIR_ENTRY]


async def test_gateway_and_listener_status(fake_kube, kube_api):
    world(fake_kube)
    async with serving(fake_kube, kube_api, publish_addresses=["203.0.113.7", "gw.example.com"]):
        await eventually(lambda: listeners(fake_kube).get("http", {}).get("attachedRoutes") == 5,
                         what="http listener counts ok, cross, kind, notfound, shared")
        ls = listeners(fake_kube)
        assert ls["https"]["attachedRoutes"] == 1
        assert ls["same-only"]["attachedRoutes"] == 0  # forbidden's namespace is not allowed
        assert ls["http"]["supportedKinds"] == [{"group": GROUP, "kind": "HTTPRoute"}, {"group": GROUP, "kind": "GRPCRoute"}]
        assert cond(ls["http"]["conditions"], "Accepted") == ("True", "Accepted")
        assert cond(ls["http"]["conditions"], "Programmed") == ("True", "Programmed")
        assert cond(ls["http"]["conditions"], "Conflicted") == ("False", "NoConflicts")
        assert ls["bad-kinds"]["supportedKinds"] == []
        assert cond(ls["bad-kinds"]["conditions"], "ResolvedRefs") == ("False", "InvalidRouteKinds")
        assert cond(ls["https"]["conditions"], "ResolvedRefs") == ("True", "ResolvedRefs")
        assert cond(ls["https-cross"]["conditions"], "ResolvedRefs") == ("False", "RefNotPermitted")
        assert cond(ls["https-missing"]["conditions"], "ResolvedRefs") == ("False", "InvalidCertificateRef")

        st = status(fake_kube, "Gateway", "infra", "gw")
        assert cond(st["conditions"], "Accepted") == ("True", "ListenersNotValid")
        assert cond(st["conditions"], "Programmed") == ("True", "Programmed")
        assert st["addresses"] == [{"type": "IPAddress", "value": "203.0.113.7"},
                                   {"type": "Hostname", "value": "gw.example.com"}]
        gen = fake_kube.get("Gateway", "infra", "gw")["metadata"]["generation"]
        assert all(c["observedGeneration"] == gen for c in st["conditions"])
        assert status(fake_kube, "Gateway", "infra", "their-gw") == {}

        await eventually(lambda: cond(status(fake_kube, "GatewayClass", None, "crdgate").get("conditions"),
                                      "Accepted") == ("True", "Accepted"), what="class accepted")
        assert status(fake_kube, "GatewayClass", None, "theirs") == {}

        # A grant for the certificate, and a route gone: both show.
        fake_kube.create(grant("certs", "infra", "Secret", from_kind="Gateway"))
        fake_kube.delete("HTTPRoute", "app", "ok")
        await eventually(lambda: cond(listeners(fake_kube)["https-cross"]["conditions"], "ResolvedRefs")
                         == ("True", "ResolvedRefs"), what="certificate granted")
        await eventually(lambda: listeners(fake_kube)["http"]["attachedRoutes"] == 4, what="count after delete")


async def test_conditions_keep_their_transition_time_while_they_hold(fake_kube, kube_api):
    world(fake_kube)
    async with serving(fake_kube, kube_api):
        await eventually(lambda: listeners(fake_kube).get("http", {}).get("attachedRoutes") == 5, what="counted")
        before = {c["type"]: c["lastTransitionTime"] for c in listeners(fake_kube)["http"]["conditions"]}
        fake_kube.delete("HTTPRoute", "app", "kind")
        await eventually(lambda: listeners(fake_kube)["http"]["attachedRoutes"] == 4, what="recounted")
        after = {c["type"]: c["lastTransitionTime"] for c in listeners(fake_kube)["http"]["conditions"]}
        assert after == before


async def test_nothing_is_written_unless_leading(fake_kube, kube_api):
    world(fake_kube)
    elector = Elector(leading=False)
    async with serving(fake_kube, kube_api, elector=elector) as (store, writer, publisher):
        await eventually(lambda: "HTTPRoute:app/ok" in publisher.last_statuses, what="statuses handed over")
        await asyncio.sleep(0.3)  # a write the writer started would land meanwhile
        assert not [p for m, p, _ in fake_kube.requests if m == "PATCH" and GROUP in p]
        elector.set(True)
        await eventually(lambda: route_conds(fake_kube, "ok") is not None, what="written once leading")
