"""Spec fields become RoutePolicy settings; auth goes through the build_auth seam and fails closed."""

from __future__ import annotations

from controller.compile import compile_snapshot
from gateway.auth import APIKeyAuthenticator, UnavailableAuthenticator
from gateway.routing import (
    NO_POLICY,
    CorsPolicy,
    HeaderModifier,
    Mirror,
    BackendRef,
    RateLimitPolicy,
    Redirect,
    RetryPolicy,
    Rewrite,
    Timeouts,
)
from kobjects import apiendpoint, backend, snapshot


def compiled(spec: dict, *extra):
    result = compile_snapshot(snapshot(apiendpoint("r", spec), *backend(), *extra))
    route = next((r for r in result.table.routes if r.name == "shop/r"), None)
    return route, result.statuses["APIEndpoint:shop/r"]


def secret(name: str, data: dict[str, str], ns: str = "shop") -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "stringData": data}


def test_seed_form_has_the_shared_empty_policy():
    route, _ = compiled({"path": "/r", "backendService": "users"})
    assert route.policy is NO_POLICY


def test_policy_fields():
    route, st = compiled(
        {
            "path": "/api",
            "backendService": "users",
            "loadBalancer": "LeastRequest",
            "rewrite": {"hostname": "Users.Internal", "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}},
            "requestHeaders": {"set": [{"name": "X-Gw", "value": "crdgate"}], "add": [{"name": "X-A", "value": "1"}], "remove": ["X-Debug"]},
            "responseHeaders": {"remove": ["Server"]},
            "timeouts": {"request": "10s", "backendRequest": "2s"},
            "retries": {"attempts": 3, "statusCodes": [503], "backoff": "100ms"},
            "rateLimit": {"requestsPerMinute": 120, "burst": 10, "key": "Header", "keyHeader": "X-Api-Client", "scope": "Global"},
            "cors": {"allowOrigins": ["https://app.example.com"], "allowMethods": ["get", "POST"], "allowCredentials": True, "maxAge": 600},
            "maxBodyBytes": 1024,
            "mirror": {"backend": {"url": "http://127.0.0.1:18083"}, "percent": 10},
        }
    )
    assert st.state == "Ready", st.message
    p = route.policy
    assert p.load_balancer == "LeastRequest"
    assert p.rewrite == Rewrite(path_type="ReplacePrefixMatch", replace_prefix_match="/v2", hostname="users.internal")
    assert p.request_headers == HeaderModifier(set=(("X-Gw", "crdgate"),), add=(("X-A", "1"),), remove=("x-debug",))
    assert p.response_headers == HeaderModifier(remove=("server",))
    assert p.timeouts == Timeouts(request=10.0, backend_request=2.0)
    assert p.retries == RetryPolicy(attempts=3, status_codes=frozenset({503}), backoff=0.1)
    assert p.rate_limit == RateLimitPolicy(requests_per_minute=120, burst=10, key="Header", key_header="x-api-client", scope="Global")
    assert p.cors == CorsPolicy(allow_origins=("https://app.example.com",), allow_methods=("GET", "POST"), allow_credentials=True, max_age=600)
    assert p.max_body_bytes == 1024
    assert p.mirror == Mirror(BackendRef("http://127.0.0.1:18083"), 10.0)
    assert p.auth is None


def test_zero_request_timeout_means_no_limit():
    route, _ = compiled({"path": "/r", "backendService": "users", "timeouts": {"request": "0s"}})
    assert route.policy.timeouts.request is None
    route, _ = compiled({"path": "/r", "backendService": "users", "timeouts": {"backendRequest": "1s"}})
    assert route.policy.timeouts == Timeouts(request=30.0, backend_request=1.0)


def test_redirect_route_has_no_backends_and_is_ready():
    route, st = compiled({"path": "/old", "redirect": {"scheme": "https", "hostname": "New.Example.com", "port": 8443, "statusCode": 301,
                                                       "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}})
    assert st.state == "Ready"
    assert route.backends == ()
    assert route.policy.redirect == Redirect(scheme="https", hostname="new.example.com", port=8443, path_type="ReplacePrefixMatch",
                                             replace_prefix_match="/new", status_code=301)


def test_matches_are_compiled():
    route, _ = compiled({"path": "/r", "backendService": "users", "methods": ["get", "POST"],
                         "headers": [{"name": "X-Tenant", "value": "t-[0-9]+", "type": "RegularExpression"}],
                         "queryParams": [{"name": "Mode", "value": "fast"}]})
    assert route.methods == frozenset({"GET", "POST"})
    (h,) = route.headers
    assert h.name == "x-tenant" and h.regex is not None and h.matches("t-42") and not h.matches("t-x")
    (q,) = route.query
    assert q.name == "Mode" and q.regex is None and q.matches("fast")


def test_apikey_auth_builds_an_authenticator():
    route, st = compiled(
        {"path": "/r", "backendService": "users", "auth": {"type": "APIKey", "secretRef": {"name": "keys"}}},
        secret("keys", {"alice": "k-alice-123"}),
    )
    assert st.state == "Ready", st.message
    assert isinstance(route.policy.auth, APIKeyAuthenticator)


def test_missing_secret_keeps_the_route_failing_closed():
    route, st = compiled({"path": "/r", "backendService": "users", "auth": {"type": "APIKey", "secretRef": {"name": "nope"}}})
    assert (st.state, st.reason) == ("Error", "SecretNotFound")
    assert "shop/nope" in st.message
    assert {c.type: (c.status, c.reason) for c in st.conditions}["ResolvedRefs"] == ("False", "SecretNotFound")
    # In the table (so its requests cannot fall through to a broader route), answering 503.
    assert isinstance(route.policy.auth, UnavailableAuthenticator)


def test_auth_required_without_any_auth_fails_closed():
    route, st = compiled({"path": "/r", "backendService": "users", "authRequired": True})
    assert (st.state, st.reason) == ("Error", "AuthNotConfigured")
    assert isinstance(route.policy.auth, UnavailableAuthenticator)


def test_auth_required_uses_the_namespace_default_secret():
    default = secret("ns-keys", {"bob": "k-bob-456"})
    default["metadata"]["labels"] = {"crdgate.io/default-auth": "APIKey"}
    route, st = compiled({"path": "/r", "backendService": "users", "authRequired": True}, default)
    assert st.state == "Ready", st.message
    assert isinstance(route.policy.auth, APIKeyAuthenticator)


def test_invalid_auth_leaves_the_route_out():
    route, st = compiled({"path": "/r", "backendService": "users", "auth": {"type": "APIKey", "secretRef": {"name": "k"}, "header": "Host"}},
                         secret("k", {"a": "b"}))
    assert route is None
    assert (st.state, st.reason) == ("Error", "InvalidSpec")
    assert "spec.auth.header" in st.message


def test_rate_limit_values_past_the_crd_maximum_are_invalid_spec():
    # The manifests folder has no API server to apply the CRD's schema: the model holds the same bounds.
    for field, value in (("burst", 10**20), ("requestsPerMinute", 1_000_000_001)):
        limit = {"requestsPerMinute": 60, field: value}
        route, st = compiled({"path": "/api", "backendService": "users", "rateLimit": limit})
        assert route is None and st.state == "Error", st
        assert f"rateLimit.{field}" in st.message and "1000000000" in st.message, st.message
    route, st = compiled({"path": "/api", "backendService": "users",
                          "rateLimit": {"requestsPerMinute": 1_000_000_000, "burst": 1_000_000_000}})
    assert st.state == "Ready" and route.policy.rate_limit.burst == 1_000_000_000
