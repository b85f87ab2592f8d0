"""A reference to a Service or Secret of another namespace needs a ReferenceGrant there.

Without one the object is Error / RefNotPermitted naming the reference; a
refused backend is kept and answers 500 (as a missing one), a refused Secret
fails closed with 503 (as a missing one). ``allow_cross_namespace_refs``
restores the permissive behaviour.
"""

from __future__ import annotations

from controller.compile import CompileOptions, Compiler, compile_snapshot
from controller.store import Store
from gateway.routing import ENDPOINTS_NOT_FOUND
from kobjects import apiendpoint, backend, ingress, path, referencegrant, snapshot

REFERENCEGRANT = "ReferenceGrant"

APIENDPOINT_FROM = ("crdgate.io", "APIEndpoint", "tenant-a")
INGRESS_FROM = ("networking.k8s.io", "Ingress", "tenant-a")
KEYS = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": "tenant-b"},
        "data": {"alice": "a2V5LTE="}}  # key-1


def cross_backend(**extra) -> dict:
    spec = {"path": "/r", "backends": [{"service": {"name": "db", "namespace": "tenant-b"}}], **extra}
    return apiendpoint("r", spec, ns="tenant-a")


def status(result, key="APIEndpoint:tenant-a/r"):
    return result.statuses[key]


def conditions(st) -> dict:
    return {c.type: (c.status, c.reason) for c in st.conditions}


def backend_state(result, request_path="/r", host="h"):
    route = result.table.match("GET", host, request_path).route
    assert route is not None
    return [result.table.endpoints[b.key].state for b in route.backends]


# -- backends ----------------------------------------------------------------------


def test_backend_in_another_namespace_without_a_grant_is_refused():
    result = compile_snapshot(snapshot(cross_backend(), *backend("db", "tenant-b")))
    st = status(result)
    assert (st.state, st.reason) == ("Error", "RefNotPermitted")
    assert "Service tenant-b/db" in st.message and "namespace tenant-a" in st.message
    assert "spec.backends[0]" in st.message
    assert conditions(st)["ResolvedRefs"] == ("False", "RefNotPermitted")
    assert conditions(st)["Accepted"] == ("True", "Accepted")
    # The route stays and its backend is "not found" (the proxy answers 500) ...
    assert backend_state(result) == [ENDPOINTS_NOT_FOUND]
    # ... while the Service's own EndpointSet is not even built for it.
    assert "tenant-b/db:80" not in result.table.endpoints


def test_grant_for_the_service_by_name_permits_it():
    grant = referencegrant("g", "tenant-b", [APIENDPOINT_FROM], [("", "Service", "db")])
    result = compile_snapshot(snapshot(cross_backend(), grant, *backend("db", "tenant-b")))
    assert status(result).state == "Ready"
    assert backend_state(result) == ["Ready"]


def test_grant_without_a_name_permits_every_service_of_the_namespace():
    grant = referencegrant("g", "tenant-b", [APIENDPOINT_FROM], [("", "Service")])
    result = compile_snapshot(snapshot(cross_backend(), grant, *backend("db", "tenant-b")))
    assert status(result).state == "Ready"


def test_grant_naming_another_service_does_not_permit_this_one():
    grant = referencegrant("g", "tenant-b", [APIENDPOINT_FROM], [("", "Service", "cache")])
    result = compile_snapshot(snapshot(cross_backend(), grant, *backend("db", "tenant-b")))
    assert status(result).reason == "RefNotPermitted"


def test_grant_for_another_from_kind_namespace_or_group_does_not_permit():
    wrong = [
        [("networking.k8s.io", "Ingress", "tenant-a")],  # another kind
        [("crdgate.io", "APIEndpoint", "tenant-c")],  # another namespace
        [("gateway.networking.k8s.io", "APIEndpoint", "tenant-a")],  # another group
    ]
    for from_ in wrong:
        grant = referencegrant("g", "tenant-b", from_, [("", "Service")])
        result = compile_snapshot(snapshot(cross_backend(), grant, *backend("db", "tenant-b")))
        assert status(result).reason == "RefNotPermitted", from_


def test_grant_for_secrets_or_in_the_referring_namespace_does_not_permit_a_service():
    for grant in (
        referencegrant("g", "tenant-b", [APIENDPOINT_FROM], [("", "Secret")]),
        # A namespace cannot grant itself access to another's objects.
        referencegrant("g", "tenant-a", [APIENDPOINT_FROM], [("", "Service")]),
    ):
        result = compile_snapshot(snapshot(cross_backend(), grant, *backend("db", "tenant-b")))
        assert status(result).reason == "RefNotPermitted"


def test_one_refused_backend_of_two_takes_its_share_as_500():
    spec = {"path": "/r", "backends": [{"service": {"name": "web"}, "weight": 1},
                                       {"service": {"name": "db", "namespace": "tenant-b"}, "weight": 1}]}
    ep = apiendpoint("r", spec, ns="tenant-a")
    result = compile_snapshot(snapshot(ep, *backend("web", "tenant-a"), *backend("db", "tenant-b")))
    assert status(result).reason == "RefNotPermitted"
    assert backend_state(result) == ["Ready", ENDPOINTS_NOT_FOUND]


def test_mirror_backend_in_another_namespace_needs_a_grant():
    spec = {"path": "/r", "backendService": "web", "mirror": {"backend": {"service": {"name": "db", "namespace": "tenant-b"}}}}
    ep = apiendpoint("r", spec, ns="tenant-a")
    objects = (ep, *backend("web", "tenant-a"), *backend("db", "tenant-b"))
    result = compile_snapshot(snapshot(*objects))
    st = status(result)
    assert (st.state, st.reason) == ("Error", "RefNotPermitted") and "spec.mirror.backend" in st.message
    route = result.table.match("GET", "h", "/r").route
    assert result.table.endpoints[route.policy.mirror.backend.key].endpoints == ()  # nothing is mirrored there
    grant = referencegrant("g", "tenant-b", [APIENDPOINT_FROM], [("", "Service", "db")])
    result = compile_snapshot(snapshot(*objects, grant))
    assert status(result).state == "Ready"


def test_same_namespace_references_never_need_a_grant():
    spec = {"path": "/r", "backends": [{"service": {"name": "db", "namespace": "tenant-a"}}],
            "auth": {"type": "APIKey", "secretRef": {"name": "keys", "namespace": "tenant-a"}}}
    keys = dict(KEYS, metadata={"name": "keys", "namespace": "tenant-a"})
    result = compile_snapshot(snapshot(apiendpoint("r", spec, ns="tenant-a"), keys, *backend("db", "tenant-a")))
    assert status(result).state == "Ready"


# -- Secrets -----------------------------------------------------------------------


def secret_ref_endpoint() -> dict:
    spec = {"path": "/r", "backendService": "web", "auth": {"type": "APIKey", "secretRef": {"name": "keys", "namespace": "tenant-b"}}}
    return apiendpoint("r", spec, ns="tenant-a")


def test_secret_ref_in_another_namespace_without_a_grant_fails_closed():
    result = compile_snapshot(snapshot(secret_ref_endpoint(), KEYS, *backend("web", "tenant-a")))
    st = status(result)
    assert (st.state, st.reason) == ("Error", "RefNotPermitted")
    assert "Secret tenant-b/keys" in st.message and "spec.auth.secretRef" in st.message
    assert conditions(st)["ResolvedRefs"] == ("False", "RefNotPermitted")
    auth = result.table.match("GET", "h", "/r").route.policy.auth
    assert auth.describe() == {"type": "APIKey", "unavailable": "RefNotPermitted"}  # answers 503


def test_secret_ref_with_a_grant_authenticates_with_it():
    grant = referencegrant("g", "tenant-b", [APIENDPOINT_FROM], [("", "Secret", "keys")])
    result = compile_snapshot(snapshot(secret_ref_endpoint(), KEYS, grant, *backend("web", "tenant-a")))
    assert status(result).state == "Ready"
    auth = result.table.match("GET", "h", "/r").route.policy.auth
    assert "unavailable" not in auth.describe()
    # A grant for Services does not cover Secrets.
    grant = referencegrant("g", "tenant-b", [APIENDPOINT_FROM], [("", "Service")])
    result = compile_snapshot(snapshot(secret_ref_endpoint(), KEYS, grant, *backend("web", "tenant-a")))
    assert status(result).reason == "RefNotPermitted"


def test_refused_secret_is_not_looked_up():
    # The message is the same whether the Secret exists or not: a refusal reveals nothing.
    with_secret = compile_snapshot(snapshot(secret_ref_endpoint(), KEYS, *backend("web", "tenant-a")))
    without = compile_snapshot(snapshot(secret_ref_endpoint(), *backend("web", "tenant-a")))
    assert status(with_secret).message == status(without).message
    assert status(without).reason == "RefNotPermitted"


def test_gateway_default_auth_secret_needs_no_grant():
    from controller.authbuild import AuthDefaults

    options = CompileOptions(auth_defaults=AuthDefaults.from_flags("crdgate-system/default-keys", "APIKey"))
    keys = dict(KEYS, metadata={"name": "default-keys", "namespace": "crdgate-system"})
    ep = apiendpoint("r", {"path": "/r", "backendService": "web", "authRequired": True}, ns="tenant-a")
    result = compile_snapshot(snapshot(ep, keys, *backend("web", "tenant-a")), options)
    assert status(result).state == "Ready"


def ingress_with_auth(annotation: str, value: str = "tenant-b/keys") -> dict:
    annotations = {annotation: value}
    if annotation.startswith("nginx."):
        annotations["nginx.ingress.kubernetes.io/auth-type"] = "basic"
    else:
        annotations["crdgate.io/auth-type"] = "APIKey"
    return ingress("web", {"rules": [{"host": "h", "http": {"paths": [path("/", "web")]}}]}, ns="tenant-a",
                   annotations=annotations)


def test_ingress_auth_secret_annotations_need_a_grant():
    htpasswd = dict(KEYS, data={"auth": "YWxpY2U6e1NIQX1XNnBoNU1tNVB6OEdnaVVMYlBnekczN21qOWc9"})  # alice:password
    for annotation in ("crdgate.io/auth-secret", "nginx.ingress.kubernetes.io/auth-secret"):
        secret = htpasswd if annotation.startswith("nginx.") else KEYS
        objects = (ingress_with_auth(annotation), secret, *backend("web", "tenant-a"))
        result = compile_snapshot(snapshot(*objects))
        st = status(result, "Ingress:tenant-a/web")
        assert (st.state, st.reason) == ("Error", "RefNotPermitted"), annotation
        assert "Secret tenant-b/keys" in st.message and "crdgate.io/auth-secret" in st.message
        assert result.table.match("GET", "h", "/").route.policy.auth.describe()["unavailable"] == "RefNotPermitted"
        # A grant to APIEndpoints does not cover Ingresses; one to Ingresses does.
        grant = referencegrant("g", "tenant-b", [APIENDPOINT_FROM], [("", "Secret")])
        assert status(compile_snapshot(snapshot(*objects, grant)), "Ingress:tenant-a/web").reason == "RefNotPermitted"
        grant = referencegrant("g", "tenant-b", [INGRESS_FROM], [("", "Secret", "keys")])
        assert status(compile_snapshot(snapshot(*objects, grant)), "Ingress:tenant-a/web").state == "Ready", annotation


# -- the switch ----------------------------------------------------------------------


def test_allow_cross_namespace_refs_restores_the_permissive_behaviour():
    options = CompileOptions(allow_cross_namespace_refs=True)
    spec = {"path": "/r", "backends": [{"service": {"name": "db", "namespace": "tenant-b"}}],
            "mirror": {"backend": {"service": {"name": "db", "namespace": "tenant-b"}}},
            "auth": {"type": "APIKey", "secretRef": {"name": "keys", "namespace": "tenant-b"}}}
    objects = (apiendpoint("r", spec, ns="tenant-a"), KEYS, *backend("db", "tenant-b"),
               ingress_with_auth("crdgate.io/auth-secret"), *backend("web", "tenant-a"))
    result = compile_snapshot(snapshot(*objects), options)
    assert status(result).state == "Ready"
    assert status(result, "Ingress:tenant-a/web").state == "Ready"
    assert backend_state(result) == ["Ready"]


# -- revocation through the incremental compiler ---------------------------------------


def test_removing_or_narrowing_a_grant_revokes_at_the_next_compile():
    store = Store()
    by_secret = apiendpoint("s", dict(secret_ref_endpoint()["spec"], path="/s"), ns="tenant-a")
    for obj in (cross_backend(), by_secret, KEYS, *backend("db", "tenant-b"), *backend("web", "tenant-a")):
        store.apply(obj["kind"], "ADDED", obj)
    compiler = Compiler()

    def states():
        result = compiler.compile(store.snapshot(since=compiled_at[0]))
        compiled_at[0] = store.version
        fresh = compile_snapshot(store.snapshot())
        assert result.statuses == fresh.statuses
        return status(result).reason, status(result, "APIEndpoint:tenant-a/s").reason

    compiled_at = [0]
    assert states() == ("RefNotPermitted", "RefNotPermitted")
    grant = referencegrant("g", "tenant-b", [APIENDPOINT_FROM], [("", "Service"), ("", "Secret")])
    store.apply(REFERENCEGRANT, "ADDED", grant)
    assert states() == ("Ready", "Ready")
    narrowed = referencegrant("g", "tenant-b", [APIENDPOINT_FROM], [("", "Secret")])
    store.apply(REFERENCEGRANT, "MODIFIED", narrowed)
    assert states() == ("RefNotPermitted", "Ready")
    store.apply(REFERENCEGRANT, "DELETED", narrowed)
    assert states() == ("RefNotPermitted", "RefNotPermitted")
    # A grant in another namespace than the target's permits nothing there.
    store.apply(REFERENCEGRANT, "ADDED", referencegrant("g", "tenant-c", [APIENDPOINT_FROM], [("", "Service")]))
    assert states() == ("RefNotPermitted", "RefNotPermitted")


# -- the index -------------------------------------------------------------------------


def test_malformed_entries_grant_nothing_and_the_rest_stands():
    from controller.refgrant import Referrer, ReferenceGrants

    grant = referencegrant("g", "tenant-b", [APIENDPOINT_FROM], [("", "Service", "db")])
    grant["spec"]["to"] += [{"group": "", "kind": "Secret", "name": ""}, {"kind": 7}, "junk"]
    grant["spec"]["from"] += [{"group": "crdgate.io", "kind": "APIEndpoint"}]  # no namespace
    grants = ReferenceGrants([grant, {"kind": "ReferenceGrant", "metadata": {"name": "no-spec", "namespace": "tenant-b"}}])
    a = Referrer("crdgate.io", "APIEndpoint", "tenant-a")
    assert grants.permits(a, "", "Service", "tenant-b", "db")
    assert not grants.permits(a, "", "Service", "tenant-b", "cache")
    assert not grants.permits(a, "", "Secret", "tenant-b", "keys")  # an empty name is not "every name"
    assert not grants.permits(Referrer("crdgate.io", "APIEndpoint", "tenant-c"), "", "Service", "tenant-b", "db")
    assert grants.permits(Referrer("x", "Y", "tenant-b"), "", "Secret", "tenant-b", "anything")  # same namespace


# -- URL backends that name a Service by its cluster DNS name -------------------------


def url_backend(url: str, ns: str = "tenant-a") -> dict:
    return apiendpoint("r", {"path": "/r", "backends": [{"url": url}]}, ns=ns)


def test_url_naming_another_namespaces_service_needs_a_grant():
    for url in ("http://db.tenant-b.svc:5432", "http://db.tenant-b.svc.cluster.local:5432",
                "https://DB.Tenant-B.svc.cluster.local.", "http://db.tenant-b.svc.example.internal"):
        result = compile_snapshot(snapshot(url_backend(url)))
        st = status(result)
        assert (st.state, st.reason) == ("Error", "RefNotPermitted"), url
        assert "Service tenant-b/db" in st.message and "spec.backends[0]" in st.message, url
        assert backend_state(result) == [ENDPOINTS_NOT_FOUND], url  # the proxy answers 500, never connects


def test_url_naming_a_service_with_a_grant_or_in_its_own_namespace_is_used():
    grant = referencegrant("g", "tenant-b", [APIENDPOINT_FROM], [("", "Service", "db")])
    result = compile_snapshot(snapshot(url_backend("http://db.tenant-b.svc.cluster.local:5432"), grant))
    assert status(result).state == "Ready"
    assert backend_state(result) == ["Ready"]
    own = compile_snapshot(snapshot(url_backend("http://db.tenant-a.svc:5432")))
    assert status(own).state == "Ready"
    # Other host names and addresses say nothing about namespaces (a NetworkPolicy's job).
    for url in ("http://127.0.0.1:9", "http://api.example.com", "http://svc.example.com"):
        assert status(compile_snapshot(snapshot(url_backend(url)))).state == "Ready", url


def test_url_mirror_naming_another_namespaces_service_is_refused():
    spec = {"path": "/r", "backends": [{"url": "http://127.0.0.1:9"}],
            "mirror": {"backend": {"url": "http://db.tenant-b.svc:80"}}}
    result = compile_snapshot(snapshot(apiendpoint("r", spec, ns="tenant-a")))
    st = status(result)
    assert st.reason == "RefNotPermitted" and "spec.mirror.backend" in st.message


def test_a_grant_removed_revokes_a_url_backend_at_the_next_incremental_compile():
    store = Store()
    store.apply("APIEndpoint", "ADDED", url_backend("http://db.tenant-b.svc:5432"))
    grant = referencegrant("g", "tenant-b", [APIENDPOINT_FROM], [("", "Service")])
    store.apply(REFERENCEGRANT, "ADDED", grant)
    compiler = Compiler()
    compiled_at = [0]

    def reason():
        result = compiler.compile(store.snapshot(since=compiled_at[0]))
        compiled_at[0] = store.version
        assert result.statuses == compile_snapshot(store.snapshot()).statuses
        return status(result).reason

    assert reason() != "RefNotPermitted"
    store.apply(REFERENCEGRANT, "DELETED", grant)
    assert reason() == "RefNotPermitted"


def test_a_namespace_created_later_makes_its_short_service_name_a_reference():
    # "db.tenant-b" resolves in the gateway pod to Service tenant-b/db once that
    # namespace exists: the incremental compiler must notice the Namespace.
    store = Store()
    store.apply("APIEndpoint", "ADDED", url_backend("http://db.tenant-b:5432"))
    compiler = Compiler()
    compiled_at = [0]

    def reason():
        result = compiler.compile(store.snapshot(since=compiled_at[0]))
        compiled_at[0] = store.version
        assert result.statuses == compile_snapshot(store.snapshot()).statuses
        return status(result).reason

    assert reason() != "RefNotPermitted"
    store.apply("Namespace", "ADDED", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tenant-b"}})
    assert reason() == "RefNotPermitted"
    store.apply(REFERENCEGRANT, "ADDED", referencegrant("g", "tenant-b", [APIENDPOINT_FROM], [("", "Service")]))
    assert reason() != "RefNotPermitted"


def test_an_external_name_alias_is_refused_once_its_namespace_exists():
    store = Store()
    store.apply("APIEndpoint", "ADDED", apiendpoint("r", {"path": "/r", "backends": [{"service": {"name": "alias", "port": 80}}]}, ns="tenant-a"))
    store.apply("Service", "ADDED", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "alias", "namespace": "tenant-a"},
                                     "spec": {"type": "ExternalName", "externalName": "db.tenant-b", "ports": [{"port": 80}]}})
    compiler = Compiler()
    compiled_at = [0]

    def endpoints():
        result = compiler.compile(store.snapshot(since=compiled_at[0]))
        compiled_at[0] = store.version
        full = compile_snapshot(store.snapshot())
        assert result.statuses == full.statuses
        assert result.table.endpoints == full.table.endpoints
        return result.table.endpoints["tenant-a/alias:80"].endpoints

    assert [e.host for e in endpoints()] == ["db.tenant-b"]
    store.apply("Namespace", "ADDED", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tenant-b"}})
    assert endpoints() == ()
