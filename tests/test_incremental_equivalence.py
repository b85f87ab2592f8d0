"""The incremental compiler gives exactly what a fresh compile gives, after every change.

Random sequences of adds, edits and deletes of APIEndpoints, Ingresses,
HTTPRoutes (with the Gateways, GatewayClasses and Namespaces they attach
through), Services, EndpointSlices, Secrets, ReferenceGrants and the
IngressClass, in a small universe
(few hosts, paths, names and timestamps) so that conflicts, ties, objects
moving between hosts, defaultBackend hand-overs and dependency changes happen
all the time. After each step the Compiler's result (fed through a real Store
and its change log) is compared with ``compile_snapshot`` of the same snapshot
(controller/compile/full.py: the same per-object steps, none of the driver's
bookkeeping): statuses, the /routes JSON (match order included), and the
answers to many sample requests.
"""

from __future__ import annotations

import ast
import base64
import pathlib
import random

import pytest

from controller.authbuild import AuthDefaults
from controller.compile import CompileOptions, Compiler, compile_snapshot
from controller.store import (
    APIENDPOINT,
    ENDPOINTSLICE,
    GATEWAY,
    GATEWAYCLASS,
    GRPCROUTE,
    HTTPROUTE,
    INGRESS,
    INGRESSCLASS,
    KINDS,
    NAMESPACE,
    REFERENCEGRANT,
    SECRET,
    SERVICE,
    Store,
)
from gateway.tablejson import table_to_json
from kobjects import apiendpoint, endpointslice, ingress, ingress_class, referencegrant, service

NAMESPACES = ("a", "b")
NAMES = tuple(f"r{i}" for i in range(7))
TIMES = ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z")
HOSTS = ("x.example.com", "y.example.com", "*.example.com", "*.y.example.com")
PATHS = ("/", "/api", "/api/", "/api/v1", "/x")
SERVICES = ("s1", "s2")
GATEWAYS = ("gw", "gw2")  # in namespace a

REQUEST_HOSTS = ("x.example.com", "y.example.com", "z.example.com", "a.y.example.com", "b.a.y.example.com", "other.org", "")
REQUEST_PATHS = ("/", "/api", "/api/", "/api/v1", "/api/v1/z", "/api/v2", "/x", "/xy", "/x/1", "/nothing",
                 "/api.V1/Get", "/x.Y/ListAll")  # the last ones: gRPC calls (GRPCRoute)
REQUEST_METHODS = ("GET", "POST", "DELETE")
REQUEST_HEADERS = ({}, {"x-v": "1"})


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Universe:
    """Builds random objects; every call may return a variant of the same object."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.rv = 0

    def pick(self, seq):
        return self.rng.choice(seq)

    def maybe(self, p: float = 0.5) -> bool:
        return self.rng.random() < p

    def _backend(self, ns: str) -> dict:
        r = self.rng.random()
        if r < 0.15:
            b: dict = {"url": self.pick(("http://10.1.0.1:80", "http://10.1.0.2:81"))}
            if self.maybe(0.3):
                b["protocol"] = "HTTP/2"
            return {"backends": [b]}
        if r < 0.3:
            return {"backends": [
                {"service": {"name": self.pick(SERVICES), "port": self.pick((80, 81, "http"))}, "weight": self.pick((0, 1, 3))},
                {"service": {"name": self.pick(SERVICES), "namespace": self.pick(NAMESPACES)}},
            ]}
        return {"backendService": self.pick(SERVICES + ("missing",))}

    def apiendpoint(self, ns: str, name: str) -> dict:
        spec: dict = {"path": self.pick(PATHS)}
        kind = self.rng.random()
        if kind < 0.1:
            spec["pathType"] = "Exact"
        elif kind < 0.18:
            spec["path"], spec["pathType"] = self.pick(("/api/v[0-9]+", "/x.*")), "RegularExpression"
        if self.maybe(0.6):
            spec["hosts"] = self.rng.sample(HOSTS, self.rng.randint(1, 2))
        m = self.rng.random()
        if m < 0.3:
            spec["method"] = "GET"
        elif m < 0.4:
            spec["methods"] = ["GET", "POST"]
        if self.maybe(0.15):
            spec["headers"] = [{"name": "X-V", "value": "1"}]
        if self.maybe(0.05):
            spec["queryParams"] = [{"name": "q", "value": "1"}]
        spec.update(self._backend(ns))
        a = self.rng.random()
        if a < 0.1:
            spec["auth"] = {"type": "APIKey", "secretRef": {"name": self.pick(("keys", "nokeys"))}}
        elif a < 0.16:  # maybe another namespace's: needs a ReferenceGrant there
            spec["auth"] = {"type": "APIKey", "secretRef": {"name": "keys", "namespace": self.pick(NAMESPACES)}}
        elif a < 0.24:
            spec["authRequired"] = True
        if self.maybe(0.06):
            spec["mirror"] = {"backend": {"service": {"name": self.pick(SERVICES), "namespace": self.pick(NAMESPACES)}}}
        if self.maybe(0.05):
            spec["ingressClassName"] = self.pick(("crdgate", "nginx"))
        if self.maybe(0.04):
            spec["path"] = "no-slash"  # invalid
        if self.maybe(0.05):
            spec["timeouts"] = {"request": self.pick(("2s", "soon"))}
        return apiendpoint(name, spec, ns=ns, created=self.pick(TIMES), generation=self.rng.randint(1, 3))

    def _ingress_path(self) -> dict:
        return {
            "path": self.pick(PATHS),
            "pathType": self.pick(("Prefix", "Exact", "ImplementationSpecific")),
            "backend": {"service": {"name": self.pick(SERVICES), "port": self.pick(({"number": 80}, {"name": "http"}))}},
        }

    def ingress(self, ns: str, name: str) -> dict:
        rules = []
        for _ in range(self.rng.randint(0, 2)):
            rule: dict = {"http": {"paths": [self._ingress_path() for _ in range(self.rng.randint(1, 3))]}}
            if self.maybe(0.7):
                rule["host"] = self.pick(HOSTS)
            rules.append(rule)
        spec: dict = {"rules": rules}
        if self.maybe(0.35) or not rules:
            spec["defaultBackend"] = {"service": {"name": self.pick(SERVICES), "port": {"number": 80}}}
        annotations = None
        if self.maybe(0.1):
            secret = self.pick(("keys", "nokeys", "a/keys", "b/keys"))
            annotations = {"crdgate.io/auth-type": "APIKey", "crdgate.io/auth-secret": secret}
        class_name = self.pick(("crdgate", "crdgate", "crdgate", None, "nginx"))
        return ingress(name, spec, ns=ns, created=self.pick(TIMES), annotations=annotations, class_name=class_name)

    def service(self, ns: str, name: str) -> dict:
        port = self.pick((80, 81))
        ports = [{"name": "http", "port": port, "targetPort": self.pick((8080, 8081))}]
        if self.maybe(0.2):
            ports[0]["appProtocol"] = "kubernetes.io/h2c"  # HTTP/2 endpoints: one more thing a Service change moves
        if self.maybe(0.3):
            ports.append({"name": "admin", "port": 9000, "targetPort": 9000})
        if self.maybe(0.1):
            return service(name, ns, ports=ports, type="ExternalName", external_name=self.pick(("a.test", "b.test")))
        return service(name, ns, ports=ports)

    def endpointslice(self, ns: str, svc: str) -> dict:
        addresses = self.rng.sample(["10.0.0.1", "10.0.0.2", "10.0.0.3"], self.rng.randint(1, 2))
        return endpointslice(svc, addresses, ns, port=self.pick((8080, 8081)), ready=self.pick((True, True, False)),
                             name=f"{svc}-{self.pick(('p', 'q'))}")

    def secret(self, ns: str, name: str) -> dict:
        meta: dict = {"name": name, "namespace": ns, "creationTimestamp": TIMES[0]}
        data = {"alice": _b64(self.pick(("key-1", "key-2")))}
        if name == "default":
            meta["labels"] = {"crdgate.io/default-auth": self.pick(("APIKey", "Bogus"))}
        return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": data}

    def referencegrant(self, ns: str, name: str) -> dict:
        from_ = [(*self.pick((("crdgate.io", "APIEndpoint"), ("networking.k8s.io", "Ingress"),
                                ("gateway.networking.k8s.io", "HTTPRoute"))), self.pick(NAMESPACES))
                 for _ in range(self.rng.randint(1, 2))]
        to = [("", self.pick(("Service", "Secret")), *self.rng.sample([*SERVICES, "keys"], self.rng.randint(0, 1)))
              for _ in range(self.rng.randint(1, 2))]
        return referencegrant(name, ns, from_, to)

    def httproute(self, ns: str, name: str) -> dict:
        parents = []
        for _ in range(self.rng.randint(1, 2)):
            ref: dict = {"name": self.pick(GATEWAYS), "namespace": "a"}
            w = self.rng.random()
            if w < 0.2:
                ref["sectionName"] = self.pick(("http", "alt", "nope"))
            elif w < 0.3:
                ref["port"] = self.pick((80, 8080))
            parents.append(ref)
        if len(parents) == 2 and parents[0]["name"] == parents[1]["name"]:
            parents = parents[:1]  # the CRD's rule for two refs to one parent: not what this test is about
        rules = []
        for _ in range(self.rng.randint(1, 2)):
            matches = []
            for _ in range(self.rng.randint(0, 2)):
                t = self.pick(("PathPrefix", "PathPrefix", "Exact", "RegularExpression"))
                path = self.pick(("/api/v[0-9]+", "/x.*")) if t == "RegularExpression" else self.pick(PATHS)
                match: dict = {"path": {"type": t, "value": path}}
                if self.maybe(0.3):
                    match["method"] = self.pick(("GET", "POST"))
                if self.maybe(0.15):
                    match["headers"] = [{"name": "X-V", "value": "1"}]
                if self.maybe(0.05):
                    match["queryParams"] = [{"name": "q", "value": "1"}]
                matches.append(match)
            rule: dict = {"matches": matches} if matches else {}
            refs = []
            for _ in range(self.rng.randint(0, 2)):
                b: dict = {"name": self.pick(SERVICES + ("missing",)), "port": self.pick((80, 81)),
                           "weight": self.pick((0, 1, 1, 3))}
                if self.maybe(0.2):
                    b["namespace"] = self.pick(NAMESPACES)
                refs.append(b)
            rule["backendRefs"] = refs
            if self.maybe(0.15):
                rule["filters"] = [{"type": "RequestHeaderModifier",
                                    "requestHeaderModifier": {"set": [{"name": "X-A", "value": "1"}]}}]
            rules.append(rule)
        spec: dict = {"parentRefs": parents, "rules": rules}
        if self.maybe(0.6):
            spec["hostnames"] = self.rng.sample(HOSTS, self.rng.randint(1, 2))
        return {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": self.pick(TIMES),
                         "generation": self.rng.randint(1, 3)},
            "spec": spec,
        }

    def grpcroute(self, ns: str, name: str) -> dict:
        """An HTTPRoute's attachment and backends, with gRPC method matches instead of paths."""
        obj = self.httproute(ns, name)
        obj["kind"] = "GRPCRoute"
        for rule in obj["spec"]["rules"]:
            for match in rule.get("matches", ()):
                del match["path"]
                match.pop("method", None)
                match.pop("queryParams", None)
                t = self.pick(("Exact", "Exact", "RegularExpression"))
                mm = {"type": t, "service": self.pick(("api.V1", "x.Y", "api.V2"))}
                if self.maybe(0.5):
                    mm["method"] = self.pick(("Get", "List.*")) if t == "RegularExpression" else "Get"
                if self.maybe(0.2):
                    del mm["service"]
                    mm["method"] = "Get"
                match["method"] = mm
        return obj

    def gateway(self, name: str) -> dict:
        listeners = []
        for lname, port in (("http", 80), ("alt", 8080)):
            if self.maybe(0.8):
                ls: dict = {"name": lname, "port": port, "protocol": "HTTP",
                            "allowedRoutes": {"namespaces": {"from": self.pick(("Same", "All", "Selector"))}}}
                if ls["allowedRoutes"]["namespaces"]["from"] == "Selector":
                    ls["allowedRoutes"]["namespaces"]["selector"] = {"matchLabels": {"team": "x"}}
                if self.maybe(0.3):
                    ls["hostname"] = self.pick(("x.example.com", "*.example.com", "*.y.example.com"))
                listeners.append(ls)
        listeners = listeners or [{"name": "http", "port": 80, "protocol": "HTTP"}]
        return {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": name, "namespace": "a", "creationTimestamp": TIMES[0], "generation": 1},
            "spec": {"gatewayClassName": self.pick(("crdgate", "crdgate", "other")), "listeners": listeners},
        }

    def gateway_class(self, name: str | None = None, controller: str | None = None) -> dict:
        # Mostly ours: while it is not, no HTTPRoute is.
        controller = controller or ("crdgate.io/gateway-controller" if self.maybe(0.8) else "example.net/other")
        return {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": name or "crdgate", "creationTimestamp": TIMES[0], "generation": 1},
            "spec": {"controllerName": controller},
        }

    def namespace(self, ns: str) -> dict:
        labels = {"team": "x"} if self.maybe() else {}
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}

    def ingress_class(self) -> dict:
        return ingress_class("crdgate", default=self.maybe())

    def with_new_status(self, obj: dict) -> dict:
        """The same object as the watch brings it back after a status write."""
        self.rv += 1
        out = dict(obj, status={"state": self.pick(("Ready", "Error")), "observedGeneration": 1})
        out["metadata"] = dict(obj["metadata"], resourceVersion=str(self.rv))
        return out


def random_change(u: Universe, store: Store) -> None:
    rng = u.rng
    ns = u.pick(NAMESPACES)
    r = rng.random()
    if r < 0.27:
        kind, name, make = APIENDPOINT, u.pick(NAMES), u.apiendpoint
    elif r < 0.42:
        kind, name, make = INGRESS, u.pick(NAMES[:4]), u.ingress
    elif r < 0.51:
        kind, name, make = HTTPROUTE, u.pick(NAMES[:5]), u.httproute
    elif r < 0.55:
        kind, name, make = GRPCROUTE, u.pick(NAMES[:3]), u.grpcroute
    elif r < 0.62:
        kind, name, make = SERVICE, u.pick(SERVICES), u.service
    elif r < 0.69:
        kind, name, make = ENDPOINTSLICE, u.pick(SERVICES), u.endpointslice
    elif r < 0.74:
        kind, name, make = SECRET, u.pick(("keys", "default")), u.secret
    elif r < 0.79:
        kind, name, make = REFERENCEGRANT, u.pick(("g1", "g2")), u.referencegrant
    elif r < 0.81:
        store.apply(INGRESSCLASS, "MODIFIED", u.ingress_class())
        return
    elif r < 0.87:  # what HTTPRoutes attach through
        g = rng.random()
        if g < 0.5:
            obj = u.gateway(u.pick(GATEWAYS))
            store.apply(GATEWAY, "DELETED" if rng.random() < 0.15 else "MODIFIED", obj)
        elif g < 0.75:
            store.apply(GATEWAYCLASS, "MODIFIED", u.gateway_class())
        else:
            store.apply(NAMESPACE, "MODIFIED", u.namespace(ns))
        return
    elif r < 0.91:  # the same object from another file (the manifests source): its status names the file
        kind = u.pick((APIENDPOINT, INGRESS, HTTPROUTE, GRPCROUTE))
        keys = sorted(store.keys(kind))
        if keys:
            key = u.pick(keys)
            store.update(kind, {key: store.get(kind, *key.split("/"))}, origins={key: u.pick(("a.yaml#0", "b.yaml#1"))})
        return
    else:  # our own status write coming back: nothing to recompile
        kind = u.pick((APIENDPOINT, INGRESS, HTTPROUTE, GRPCROUTE))
        keys = store.keys(kind)
        if keys:
            key = u.pick(sorted(keys))
            obj = store.get(kind, *key.split("/"))
            store.apply(kind, "MODIFIED", u.with_new_status(obj))
        return
    obj = make(ns, name)
    if rng.random() < 0.25:
        store.apply(kind, "DELETED", obj)
    else:
        store.apply(kind, "MODIFIED", obj)


def describe_matches(table) -> list:
    out = []
    for host in REQUEST_HOSTS:
        for path in REQUEST_PATHS:
            for method in REQUEST_METHODS:
                for headers in REQUEST_HEADERS:
                    m = table.match(method, host, path, headers, "q=1")
                    r = m.route
                    out.append((m.status, m.allow, None if r is None else (r.kind, r.name, r.rule)))
    return out


def assert_same(inc, full) -> None:
    assert inc.statuses == full.statuses
    assert dict(inc.routed) == dict(full.routed)
    assert set(inc.backend_keys) == set(full.backend_keys)
    assert table_to_json(inc.table) == table_to_json(full.table)
    assert len(inc.table) == len(full.table)
    assert dict(inc.table.endpoints) == dict(full.table.endpoints)
    assert describe_matches(inc.table) == describe_matches(full.table)


def seeded_store(u: Universe) -> Store:
    store = Store()
    for kind in KINDS:
        store.replace(kind, [])
    for ns in NAMESPACES:
        for svc in SERVICES:
            store.apply(SERVICE, "ADDED", u.service(ns, svc))
            store.apply(ENDPOINTSLICE, "ADDED", u.endpointslice(ns, svc))
    store.apply(GATEWAYCLASS, "ADDED", u.gateway_class("crdgate", "crdgate.io/gateway-controller"))
    store.apply(GATEWAYCLASS, "ADDED", u.gateway_class("other", "example.net/other"))
    for name in GATEWAYS:
        store.apply(GATEWAY, "ADDED", u.gateway(name))
    return store


GATEWAY_DEFAULT_AUTH = CompileOptions(auth_defaults=AuthDefaults("b", "keys", "APIKey"))
CROSS_NAMESPACE = CompileOptions(allow_cross_namespace_refs=True)


@pytest.mark.parametrize(
    "options", [CompileOptions(), GATEWAY_DEFAULT_AUTH, CROSS_NAMESPACE], ids=["plain", "default-auth", "cross-namespace"]
)
@pytest.mark.parametrize("seed", range(12))
def test_incremental_equals_fresh_compile_after_every_step(seed, options, caplog):
    rng = random.Random(seed)
    u = Universe(rng)
    store = seeded_store(u)
    compiler = Compiler(options)
    version = None
    previous = None
    for step in range(120):
        for _ in range(rng.choice((1, 1, 1, 2, 5))):  # sometimes a burst, compiled as one
            random_change(u, store)
        # Mostly with the store's change log; sometimes without it (diffed by identity).
        snap = store.snapshot(since=version if rng.random() < 0.85 else None)
        inc = compiler.compile(snap, options, step)
        version = snap.version
        full = compile_snapshot(snap, options, step)
        assert_same(inc, full)
        if previous is not None and inc.changed_statuses is not None:
            # What the publisher does with it: the changes turn the previous statuses into these.
            assert inc.status_base is previous.statuses
            rebuilt = dict(previous.statuses)
            for key, status in inc.changed_statuses.items():
                if status is None:
                    rebuilt.pop(key, None)
                else:
                    rebuilt[key] = status
            assert rebuilt == dict(inc.statuses)
        previous = inc
    assert compiler.failures == 0, caplog.text


def test_a_status_write_coming_back_changes_nothing():
    u = Universe(random.Random(1))
    store = seeded_store(u)
    store.apply(APIENDPOINT, "ADDED", apiendpoint("r", {"path": "/r", "backendService": "s1"}, ns="a"))
    compiler = Compiler()
    snap = store.snapshot(since=0)
    first = compiler.compile(snap, CompileOptions(), 1)
    store.apply(APIENDPOINT, "MODIFIED", u.with_new_status(store.get(APIENDPOINT, "a", "r")))
    second = compiler.compile(store.snapshot(since=snap.version), CompileOptions(), 2)
    assert second.changed_statuses == {}
    assert second.table.routes is first.table.routes  # same routes, shared
    assert second.table.match("GET", "h", "/r").route is first.table.match("GET", "h", "/r").route


def test_a_change_rebuilds_only_the_host_groups_it_touches():
    u = Universe(random.Random(2))
    store = seeded_store(u)
    for i in range(50):
        store.apply(APIENDPOINT, "ADDED", apiendpoint(f"h{i}", {"hosts": [f"h{i}.example.com"], "path": "/", "backendService": "s1"}, ns="a"))
    compiler = Compiler()
    snap = store.snapshot(since=0)
    first = compiler.compile(snap, CompileOptions(), 1)
    store.apply(APIENDPOINT, "MODIFIED", apiendpoint("h7", {"hosts": ["h7.example.com"], "path": "/v2", "backendService": "s1"}, ns="a"))
    second = compiler.compile(store.snapshot(since=snap.version), CompileOptions(), 2)
    shared = [h for h in first.table._exact if second.table._exact.get(h) is first.table._exact[h]]
    assert sorted(set(first.table._exact) - set(shared)) == ["h7.example.com"]
    assert second.table.match("GET", "h7.example.com", "/v2").route.name == "a/h7"
    assert first.table.match("GET", "h7.example.com", "/").route.name == "a/h7"  # the old table is untouched


def test_deleting_a_winner_hands_its_match_to_the_next_oldest():
    # A chain through two hosts: b loses to a on x, so b does not claim y, so c wins y.
    # When a goes, b wins x and y, and c loses.
    store = Store()
    for kind in KINDS:
        store.replace(kind, [])
    store.apply(SERVICE, "ADDED", service("s1", "a"))
    a = apiendpoint("a", {"hosts": ["x.example.com"], "path": "/", "backendService": "s1"}, ns="a", created=TIMES[0])
    b = apiendpoint("b", {"hosts": ["x.example.com", "y.example.com"], "path": "/", "backendService": "s1"}, ns="a", created=TIMES[2])
    c = apiendpoint("c", {"hosts": ["y.example.com"], "path": "/", "backendService": "s1"}, ns="a", created=TIMES[3])
    for obj in (a, b, c):
        store.apply(APIENDPOINT, "ADDED", obj)
    compiler = Compiler()
    snap = store.snapshot(since=0)
    first = compiler.compile(snap, CompileOptions(), 1)
    assert first.statuses["APIEndpoint:a/b"].reason == "Conflicted"
    assert first.table.match("GET", "y.example.com", "/").route.name == "a/c"
    store.apply(APIENDPOINT, "DELETED", a)
    second = compiler.compile(store.snapshot(since=snap.version), CompileOptions(), 2)
    assert second.table.match("GET", "y.example.com", "/").route.name == "a/b"
    assert second.statuses["APIEndpoint:a/c"].message == "conflicts with a/b (older)"
    assert set(second.changed_statuses) == {"APIEndpoint:a/a", "APIEndpoint:a/b", "APIEndpoint:a/c"}
    assert_same(second, compile_snapshot(store.snapshot(), CompileOptions(), 2))


def _imports(module: str) -> set[str]:
    path = pathlib.Path(__file__).resolve().parent.parent / "controller" / "compile" / f"{module}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    return found | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}


def test_the_fresh_compile_is_independent_of_the_driver(monkeypatch):
    """The comparison above means something only if the two paths are two: the full
    compile neither imports nor calls the incremental driver, nor the driver the full compile."""
    import controller.compile.incremental as driver

    assert "controller.compile.incremental" not in _imports("full")
    assert "controller.compile.full" not in _imports("incremental")

    def refuse(*args, **kwargs):
        raise AssertionError("the full compile went through the incremental driver")

    monkeypatch.setattr(driver.Compiler, "compile", refuse)
    monkeypatch.setattr(driver.Compiler, "__init__", refuse)
    u = Universe(random.Random(3))
    store = seeded_store(u)
    store.apply(APIENDPOINT, "ADDED", apiendpoint("r", {"path": "/r", "backendService": "s1"}, ns="a"))
    result = compile_snapshot(store.snapshot(), CompileOptions(), 1)
    assert result.table.match("GET", "h", "/r").route.name == "a/r"
