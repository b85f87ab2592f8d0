"""Ingress crdgate.io/* policy annotations -> the RoutePolicy of every route of the Ingress.

Through compile_snapshot (no sockets): each annotation maps to its policy part,
an invalid or unknown crdgate.io/ annotation leaves the Ingress out with an
InvalidSpec status naming it, auth annotations keep working alongside, and an
Ingress without policy annotations keeps the shared empty policy (route.plain).
"""

from __future__ import annotations

import pytest

from controller.compile.annotations import AnnotationError, ingress_policy
from controller.compile import compile_snapshot
from gateway.auth import APIKeyAuthenticator, UnavailableAuthenticator
from gateway.policies import replaced_path
from gateway.routing import (
    NO_POLICY,
    CorsPolicy,
    HeaderModifier,
    RateLimitPolicy,
    RetryPolicy,
    Rewrite,
    Timeouts,
)
from kobjects import backend, ingress, path, snapshot

A = "crdgate.io/"


def spec(*paths: dict, default_backend: bool = False) -> dict:
    s: dict = {"rules": [{"host": "api.example.com", "http": {"paths": list(paths or [path("/api", "users")])}}]}
    if default_backend:
        s["defaultBackend"] = {"service": {"name": "users", "port": {"number": 80}}}
    return s


def secret(name: str, data: dict[str, str], ns: str = "shop") -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "stringData": data}


def compiled(annotations: dict | None, *extra, ing_spec: dict | None = None):
    """(routes of Ingress shop/ing, its status, the whole result)."""
    result = compile_snapshot(snapshot(ingress("ing", ing_spec or spec(), annotations=annotations), *backend(), *extra))
    routes = [r for r in result.table.routes if r.name == "shop/ing"]
    return routes, result.statuses["Ingress:shop/ing"], result


def policy_of(annotations: dict, *extra):
    routes, st, _ = compiled(annotations, *extra)
    assert st.state == "Ready", st.message
    (route,) = routes
    return route.policy


# -- no annotations: the proxy's fast path ------------------------------------------------


def test_ingress_without_annotations_keeps_the_shared_empty_policy():
    routes, st, result = compiled(None, ing_spec=spec(default_backend=True))
    assert st.state == "Ready", st.message
    (route,) = routes
    assert route.policy is NO_POLICY and route.plain is True
    assert result.table.fallback.plain is True


def test_other_prefixes_are_ignored_and_stay_plain():
    ann = {
        "nginx.ingress.kubernetes.io/rewrite-target": "/",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        "example.crdgate.io/retry-attempts": "x",  # another prefix, even if it ends like ours
    }
    (route,), st, _ = compiled(ann)
    assert st.state == "Ready", st.message
    assert route.plain is True


def test_annotations_at_their_defaults_stay_plain():
    (route,), _, _ = compiled({A + "load-balancer": "RoundRobin", A + "retry-attempts": "1"})
    assert route.plain is True


# -- each annotation maps to its policy part ------------------------------------------------

MAPPINGS = [
    ({A + "rewrite-prefix": "/v2"}, "rewrite", Rewrite(path_type="ReplacePrefixMatch", replace_prefix_match="/v2")),
    ({A + "rewrite-host": "Users.Internal"}, "rewrite", Rewrite(hostname="users.internal")),
    (
        {A + "rewrite-prefix": "/", A + "rewrite-host": "b.internal"},
        "rewrite",
        Rewrite(path_type="ReplacePrefixMatch", replace_prefix_match="/", hostname="b.internal"),
    ),
    (
        {
            A + "request-headers-set": '{"X-Gw": "crdgate", "X-List": "a, b"}',
            A + "request-headers-add": '{"X-A": ["1", "2"], "X-B": "3"}',
            A + "request-headers-remove": "X-Debug, Cookie",
        },
        "request_headers",
        HeaderModifier(
            set=(("X-Gw", "crdgate"), ("X-List", "a, b")),
            add=(("X-A", "1"), ("X-A", "2"), ("X-B", "3")),
            remove=("x-debug", "cookie"),
        ),
    ),
    ({A + "response-headers-remove": "Server"}, "response_headers", HeaderModifier(remove=("server",))),
    ({A + "response-headers-set": '{"Cache-Control": "no-store"}'}, "response_headers", HeaderModifier(set=(("Cache-Control", "no-store"),))),
    ({A + "response-headers-add": '{"Via": "crdgate"}'}, "response_headers", HeaderModifier(add=(("Via", "crdgate"),))),
    ({A + "timeout-request": "10s", A + "timeout-backend-request": "500ms"}, "timeouts", Timeouts(request=10.0, backend_request=0.5)),
    ({A + "timeout-request": "0s"}, "timeouts", Timeouts(request=None)),
    ({A + "timeout-backend-request": "1m"}, "timeouts", Timeouts(request=30.0, backend_request=60.0)),
    ({A + "timeout-backend-request": "0s", A + "timeout-request": "5s"}, "timeouts", Timeouts(request=5.0, backend_request=None)),
    (
        {
            A + "retry-attempts": "3",
            A + "retry-status-codes": "503, 429",
            A + "retry-on-connect-failure": "false",
            A + "retry-backoff": "100ms",
            A + "retry-non-idempotent": "True",
        },
        "retries",
        RetryPolicy(attempts=3, status_codes=frozenset({503, 429}), on_connect_failure=False, backoff=0.1, non_idempotent=True),
    ),
    ({A + "retry-attempts": "2"}, "retries", RetryPolicy(attempts=2)),
    ({A + "load-balancer": "LeastRequest"}, "load_balancer", "LeastRequest"),
    ({A + "load-balancer": "leastrequest"}, "load_balancer", "LeastRequest"),
    ({A + "max-body-bytes": "1048576"}, "max_body_bytes", 1048576),
    ({A + "max-body-bytes": "0"}, "max_body_bytes", 0),
    (
        {
            A + "cors-allow-origins": "https://app.example.com, https://*.example.org",
            A + "cors-allow-methods": "get, POST",
            A + "cors-allow-headers": "X-Token, Content-Type",
            A + "cors-expose-headers": "X-Request-Id",
            A + "cors-allow-credentials": "true",
            A + "cors-max-age": "600",
        },
        "cors",
        CorsPolicy(
            allow_origins=("https://app.example.com", "https://*.example.org"),
            allow_methods=("GET", "POST"),
            allow_headers=("X-Token", "Content-Type"),
            expose_headers=("X-Request-Id",),
            allow_credentials=True,
            max_age=600,
        ),
    ),
    ({A + "cors-allow-origins": "*"}, "cors", CorsPolicy(allow_origins=("*",))),
    ({A + "rate-limit-rpm": "120"}, "rate_limit", RateLimitPolicy(requests_per_minute=120)),
    (
        {
            A + "rate-limit-rpm": "60",
            A + "rate-limit-burst": "10",
            A + "rate-limit-key": "Header",
            A + "rate-limit-key-header": "X-Api-Client",
            A + "rate-limit-scope": "Global",
        },
        "rate_limit",
        RateLimitPolicy(requests_per_minute=60, burst=10, key="Header", key_header="x-api-client", scope="Global"),
    ),
    (
        {A + "rate-limit-rpm": "5", A + "rate-limit-key": "route", A + "rate-limit-scope": "local"},
        "rate_limit",
        RateLimitPolicy(requests_per_minute=5, key="Route", scope="Local"),
    ),
]


@pytest.mark.parametrize("annotations, part, expected", MAPPINGS, ids=[",".join(a).replace(A, "") for a, _, _ in MAPPINGS])
def test_annotation_maps_to_its_policy_part(annotations, part, expected):
    p = policy_of(annotations)
    assert getattr(p, part) == expected
    assert p.auth is None
    # Nothing else is touched: every other part keeps its default.
    others = {f for f in ("rewrite", "request_headers", "response_headers", "timeouts", "retries", "cors",
                          "rate_limit", "max_body_bytes", "load_balancer") if f != part}  # fmt: skip
    assert {f: getattr(p, f) for f in others} == {f: getattr(NO_POLICY, f) for f in others}


def test_one_policy_on_every_route_of_the_ingress():
    ann = {A + "rate-limit-rpm": "30", A + "rewrite-prefix": "/v2", A + "retry-attempts": "3"}
    ing = spec(path("/api", "users"), path("/exact", "users", "Exact"), default_backend=True)
    routes, st, result = compiled(ann, ing_spec=ing)
    assert st.state == "Ready", st.message
    assert len(routes) == 2
    policies = [r.policy for r in routes] + [result.table.fallback.policy]
    assert all(p is policies[0] for p in policies)  # built once per Ingress
    assert policies[0].rate_limit == RateLimitPolicy(requests_per_minute=30)
    assert not any(r.plain for r in routes)


def test_rewrite_prefix_replaces_each_paths_own_prefix():
    ann = {A + "rewrite-prefix": "/v2/"}
    ing = spec(path("/api", "users"), path("/exact/", "users", "Exact"), default_backend=True)
    routes, st, result = compiled(ann, ing_spec=ing)
    assert st.state == "Ready", st.message
    by_path = {r.path: r for r in routes}

    def upstream_path(route, request_path):
        rw = route.policy.rewrite
        return replaced_path(route, request_path, rw.path_type, rw.replace_prefix_match, rw.replace_full_path)

    assert upstream_path(by_path["/api"], "/api/users/7") == "/v2/users/7"
    assert upstream_path(by_path["/api"], "/api") == "/v2"
    # Exact: the whole path is the matched prefix, so the path becomes the value (no trailing slash).
    assert upstream_path(by_path["/exact/"], "/exact/") == "/v2"
    # defaultBackend: the prefix "/" matched, so the value is put in front.
    assert upstream_path(result.table.fallback, "/other/x") == "/v2/other/x"


# -- invalid values: InvalidSpec naming the annotation, the Ingress left out -------------------

INVALID = [
    ({A + "retry-attempts": "x"}, A + "retry-attempts", "must be an integer 1..10, got 'x'"),
    ({A + "retry-attempts": "11"}, A + "retry-attempts", "must be an integer 1..10, got '11'"),
    ({A + "retry-status-codes": "502, 600"}, A + "retry-status-codes", "less than or equal to 599, got 600"),
    ({A + "retry-status-codes": "502,,503"}, A + "retry-status-codes", "comma-separated"),
    ({A + "retry-backoff": "fast"}, A + "retry-backoff", "invalid duration 'fast'"),
    ({A + "retry-on-connect-failure": "yes"}, A + "retry-on-connect-failure", "must be true or false, got 'yes'"),
    ({A + "retry-non-idempotent": "1"}, A + "retry-non-idempotent", "must be true or false"),
    ({A + "timeout-request": "30"}, A + "timeout-request", "invalid duration '30'"),
    (
        {A + "timeout-request": "5s", A + "timeout-backend-request": "10s"},
        A + "timeout-backend-request",
        "must not be longer than crdgate.io/timeout-request",
    ),
    ({A + "rewrite-prefix": "v2"}, A + "rewrite-prefix", "must start with '/', got 'v2'"),
    ({A + "rewrite-host": "bad_host"}, A + "rewrite-host", "'bad_host' is not a valid host name"),
    # Written into the upstream request line / Host: nothing that could end a line or the head.
    ({A + "rewrite-prefix": "/v2 HTTP/1.1\r\nHost: internal\r\n\r\nGET /smuggled"}, A + "rewrite-prefix",
     "must not contain ' ': spaces and control characters are not allowed"),
    ({A + "rewrite-prefix": "/v2\r\nX-Evil: 1"}, A + "rewrite-prefix", "must not contain '\\r'"),
    ({A + "rewrite-prefix": "/v2?x=1"}, A + "rewrite-prefix", "must not contain '?'"),
    ({A + "rewrite-host": "internal\r\nX-Evil: 1"}, A + "rewrite-host", "is not a valid host name"),
    ({A + "rewrite-host": "*.internal"}, A + "rewrite-host", "is not a valid host name"),
    ({A + "request-headers-set": "X-A: 1"}, A + "request-headers-set", "expected a JSON object"),
    ({A + "request-headers-set": '{"X-A": "1", "X-A": "2"}'}, A + "request-headers-set", "header 'X-A' appears twice"),
    ({A + "request-headers-set": '{"X-A": ["1", "2"]}'}, A + "request-headers-set", "the value must be a string"),
    ({A + "request-headers-add": '{"X A": "1"}'}, A + "request-headers-add", "'X A' is not a valid HTTP token"),
    ({A + "response-headers-set": '{"X-A": "1\\r\\nX-Evil: 2"}'}, A + "response-headers-set", "must not contain CR, LF or NUL"),
    ({A + "response-headers-remove": "Server, X Y"}, A + "response-headers-remove", "'X Y' is not a valid HTTP token"),
    ({A + "load-balancer": "Random"}, A + "load-balancer", "must be one of RoundRobin, LeastRequest, got 'Random'"),
    ({A + "max-body-bytes": "1MB"}, A + "max-body-bytes", "must be an integer >= 0, got '1MB'"),
    ({A + "max-body-bytes": "-1"}, A + "max-body-bytes", "must be an integer >= 0"),
    ({A + "max-body-bytes": ""}, A + "max-body-bytes", "must not be empty"),
    ({A + "cors-allow-methods": "GET"}, A + "cors-allow-methods", "needs crdgate.io/cors-allow-origins"),
    ({A + "cors-allow-origins": "app.example.com"}, A + "cors-allow-origins", "is not '*' or an origin"),
    (
        {A + "cors-allow-origins": "*", A + "cors-allow-credentials": "true"},
        A + "cors-allow-credentials",
        "cannot be used with crdgate.io/cors-allow-origins '*'",
    ),
    ({A + "cors-allow-origins": "*", A + "cors-max-age": "-5"}, A + "cors-max-age", "must be an integer >= 0"),
    ({A + "rate-limit-rpm": "0"}, A + "rate-limit-rpm", "must be an integer from 1 to 1000000000, got 0"),
    ({A + "rate-limit-rpm": "ten"}, A + "rate-limit-rpm", "must be an integer, got 'ten'"),
    ({A + "rate-limit-rpm": "10", A + "rate-limit-burst": "-1"}, A + "rate-limit-burst", "must be an integer from 0 to 1000000000, got -1"),
    ({A + "rate-limit-rpm": "10", A + "rate-limit-burst": "1" + "0" * 20}, A + "rate-limit-burst",
     "must be an integer from 0 to 1000000000"),
    ({A + "rate-limit-burst": "5"}, A + "rate-limit-burst", "needs crdgate.io/rate-limit-rpm"),
    ({A + "rate-limit-rpm": "10", A + "rate-limit-key": "IP"}, A + "rate-limit-key", "must be one of ClientAddress, Consumer, Header, Route"),
    ({A + "rate-limit-rpm": "10", A + "rate-limit-scope": "Cluster"}, A + "rate-limit-scope", "must be one of Local, Global"),
    (
        {A + "rate-limit-rpm": "10", A + "rate-limit-key": "Header"},
        A + "rate-limit-key-header",
        "is required when crdgate.io/rate-limit-key is Header",
    ),
    (
        {A + "rate-limit-rpm": "10", A + "rate-limit-key-header": "X-Client"},
        A + "rate-limit-key-header",
        "only allowed when crdgate.io/rate-limit-key is Header",
    ),
    (
        {A + "rate-limit-rpm": "10", A + "rate-limit-key": "Header", A + "rate-limit-key-header": "X Client"},
        A + "rate-limit-key-header",
        "'X Client' is not a valid HTTP token",
    ),
    ({A + "rate-limit-rpm": "10", A + "rate-limit-key": "Consumer"}, A + "rate-limit-key", "Consumer needs authentication"),
]


@pytest.mark.parametrize("annotations, name, fragment", INVALID, ids=[f"{n.replace(A, '')}:{f[:30]}" for _, n, f in INVALID])
def test_invalid_annotation_is_invalid_spec_and_leaves_the_ingress_out(annotations, name, fragment):
    other = ingress("good", spec(path("/good", "users")))
    result = compile_snapshot(
        snapshot(ingress("ing", spec(default_backend=True), annotations=annotations), other, *backend())
    )
    st = result.statuses["Ingress:shop/ing"]
    assert (st.state, st.reason) == ("Error", "InvalidSpec")
    assert f"metadata.annotations[{name}]: " in st.message
    assert fragment in st.message, st.message
    assert {c.type: c.status for c in st.conditions}["Accepted"] == "False"
    # Fail closed: no route of that Ingress serves, not even its defaultBackend ...
    assert [r for r in result.table.routes if r.name == "shop/ing"] == []
    assert result.table.fallback is None
    assert result.table.match("GET", "api.example.com", "/api").route is None
    # ... and the rest of the table stands.
    assert result.statuses["Ingress:shop/good"].state == "Ready"
    assert result.table.match("GET", "api.example.com", "/good").route is not None


def test_every_invalid_annotation_is_named_in_one_message():
    ann = {A + "retry-attempts": "0", A + "max-body-bytes": "big", A + "cors-max-age": "1"}
    routes, st, _ = compiled(ann)
    assert routes == []
    for name in ("retry-attempts", "max-body-bytes", "cors-max-age"):
        assert f"metadata.annotations[{A}{name}]" in st.message, st.message


def test_ingress_policy_raises_annotation_error_with_the_problems():
    with pytest.raises(AnnotationError) as e:
        ingress_policy({A + "retry-attempts": "x", A + "rate-limit-rpm": "0"})
    assert e.value.problems == (
        (A + "retry-attempts", "must be an integer 1..10, got 'x'"),
        (A + "rate-limit-rpm", "must be an integer from 1 to 1000000000, got 0"),
    )


# -- unknown crdgate.io annotations --------------------------------------------------------


@pytest.mark.parametrize(
    "name, suggestion",
    [
        (A + "retry-atempts", A + "retry-attempts"),
        (A + "ratelimit-rpm", A + "rate-limit-rpm"),
        (A + "auth-allowed-consumer", A + "auth-allowed-consumers"),  # an auth typo would drop a restriction
        (A + "something-else", None),
    ],
)
def test_unknown_crdgate_annotation_is_rejected(name, suggestion):
    routes, st, _ = compiled({name: "3"})
    assert routes == []
    assert (st.state, st.reason) == ("Error", "InvalidSpec")
    assert f"metadata.annotations[{name}]: unknown crdgate.io annotation" in st.message
    if suggestion:
        assert f"did you mean {suggestion}?" in st.message


def test_unknown_auth_annotation_is_named_before_auth_complains():
    ann = {A + "auth-type": "APIKey", A + "auth-secrte": "keys"}  # the Secret's annotation mistyped
    routes, st, _ = compiled(ann, secret("keys", {"alice": "k-alice-123"}))
    assert routes == []
    assert st.reason == "InvalidSpec"
    assert st.message.startswith(f"metadata.annotations[{A}auth-secrte]: unknown crdgate.io annotation"), st.message


# -- auth annotations alongside -------------------------------------------------------------


def test_auth_annotations_merge_with_the_policy_annotations():
    ann = {
        A + "auth-type": "APIKey",
        A + "auth-secret": "keys",
        A + "rate-limit-rpm": "60",
        A + "rate-limit-key": "Consumer",
        A + "request-headers-set": '{"X-Gw": "crdgate"}',
    }
    routes, st, result = compiled(ann, secret("keys", {"alice": "k-alice-123"}), ing_spec=spec(default_backend=True))
    assert st.state == "Ready", st.message
    (route,) = routes
    p = route.policy
    assert isinstance(p.auth, APIKeyAuthenticator)
    assert p.rate_limit == RateLimitPolicy(requests_per_minute=60, key="Consumer")
    assert p.request_headers == HeaderModifier(set=(("X-Gw", "crdgate"),))
    assert result.table.fallback.policy is p
    assert route.plain is False


def test_auth_alone_still_works():
    (route,), st, _ = compiled({A + "auth-type": "APIKey", A + "auth-secret": "keys"}, secret("keys", {"a": "k-a-1234567"}))
    assert st.state == "Ready", st.message
    assert isinstance(route.policy.auth, APIKeyAuthenticator)
    assert route.policy.rate_limit is None and route.policy.rewrite is None


def test_missing_auth_secret_fails_closed_and_keeps_the_other_policies():
    ann = {A + "auth-type": "APIKey", A + "auth-secret": "nope", A + "rate-limit-rpm": "10"}
    routes, st, _ = compiled(ann)
    assert (st.state, st.reason) == ("Error", "SecretNotFound")
    (route,) = routes
    assert isinstance(route.policy.auth, UnavailableAuthenticator)
    assert route.policy.rate_limit == RateLimitPolicy(requests_per_minute=10)


def test_consumer_key_accepts_auth_required():
    default = secret("ns-keys", {"bob": "k-bob-4567890"})
    default["metadata"]["labels"] = {"crdgate.io/default-auth": "APIKey"}
    ann = {A + "auth-required": "true", A + "rate-limit-rpm": "10", A + "rate-limit-key": "Consumer"}
    (route,), st, _ = compiled(ann, default)
    assert st.state == "Ready", st.message
    assert isinstance(route.policy.auth, APIKeyAuthenticator)
    assert route.policy.rate_limit.key == "Consumer"


def test_invalid_auth_annotation_is_still_reported():
    ann = {A + "auth-type": "APIKey", A + "auth-secret": "keys", A + "auth-keep-credentials": "maybe"}
    routes, st, _ = compiled(ann, secret("keys", {"a": "k-a-1234567"}))
    assert routes == []
    assert st.reason == "InvalidSpec"
    assert "crdgate.io/auth-keep-credentials" in st.message
