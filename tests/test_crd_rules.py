"""What the CRD accepts and refuses: OpenAPI checks, defaults, and every CEL cross-field rule.

Each invalid object names the error it must get; those refused by a CEL rule must pass the
OpenAPI checks, so that the rule (and not something else) is shown to refuse them.
"""

from __future__ import annotations

import pytest

from crd_support import admit, api_endpoint, apply_defaults, cel_errors, iter_rules, openapi_schema, schema_errors

SEED = {"path": "/api/v1/users", "method": "GET", "backendService": "users", "authRequired": True}


def spec(**changes) -> dict:
    """The seed spec with fields changed; a value of None removes the field."""
    out = dict(SEED)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


FULL = {
    "ingressClassName": "crdgate",
    "hosts": ["api.example.com", "*.example.org"],
    "path": "/api/v1/orders",
    "pathType": "Prefix",
    "methods": ["GET", "POST"],
    "headers": [{"name": "X-Tenant", "value": "acme"}, {"name": "x-version", "value": "v[12]", "type": "RegularExpression"}],
    "queryParams": [{"name": "debug", "value": "1"}],
    "backends": [
        {"service": {"name": "orders", "port": 8080}, "weight": 90},
        {"service": {"name": "orders-canary", "namespace": "canary", "port": "http"}, "weight": 10},
        {"url": "http://127.0.0.1:9001"},
    ],
    "loadBalancer": "LeastRequest",
    "rewrite": {"hostname": "orders.internal", "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v1/orders"}},
    "requestHeaders": {"set": [{"name": "X-Gateway", "value": "crdgate"}], "add": [{"name": "Via", "value": "crdgate"}], "remove": ["Cookie"]},
    "responseHeaders": {"remove": ["Server"]},
    "timeouts": {"request": "15s", "backendRequest": "5s"},
    "retries": {"attempts": 3, "statusCodes": [502, 503], "onConnectFailure": True, "backoff": "25ms", "nonIdempotent": False},
    "auth": {
        "type": "JWT",
        "jwt": {
            "issuer": "https://issuer.example.com/",
            "audiences": ["orders"],
            "jwksURL": "https://issuer.example.com/.well-known/jwks.json",
            "leeway": "30s",
            "requiredClaims": ["sub"],
            "forwardClaims": {"sub": "X-User", "tenant": "X-Tenant-Id"},
            "algorithms": ["RS256", "ES256"],
            "consumerClaim": "client_id",
        },
        "allowedConsumers": ["alice", "bob"],
        "consumerHeader": "X-Consumer",
    },
    "rateLimit": {"requestsPerMinute": 600, "burst": 50, "key": "Consumer", "scope": "Global"},
    "cors": {"allowOrigins": ["https://app.example.com", "https://*.example.org"], "allowMethods": ["GET", "POST"],
             "allowHeaders": ["Authorization", "Content-Type"], "exposeHeaders": ["X-Request-Id"],
             "allowCredentials": True, "maxAge": 600},
    "maxBodyBytes": 1048576,
    "mirror": {"backend": {"service": {"name": "orders-shadow"}}, "percent": 12.5},
    "tls": {"secretName": "api-example-com"},
}

VALID = {
    "seed": SEED,
    "full form": FULL,
    "redirect only": {"path": "/old", "redirect": {"scheme": "https", "hostname": "new.example.com", "port": 443,
                                                   "path": {"type": "ReplaceFullPath", "replaceFullPath": "/new"},
                                                   "statusCode": 301}},
    "regex path need not start with /": spec(path=r".*\.png", pathType="RegularExpression"),
    "exact path": spec(pathType="Exact"),
    "no method means any": spec(method=None),
    "APIKey auth from a query parameter": spec(auth={"type": "APIKey", "secretRef": {"name": "keys", "namespace": "auth"},
                                                     "queryParam": "api_key", "keepCredentials": True}),
    "Basic auth": spec(auth={"type": "Basic", "secretRef": {"name": "htpasswd"}}),
    "JWT with keys from a Secret": spec(auth={"type": "JWT", "secretRef": {"name": "jwt-keys"}}),
    "request timeout 0s disables the limit": spec(timeouts={"request": "0s", "backendRequest": "1m30s"}),
    "rate limit per header": spec(rateLimit={"requestsPerMinute": 60, "key": "Header", "keyHeader": "X-Api-Key"}),
    "rate limit per consumer with authRequired": spec(rateLimit={"requestsPerMinute": 60, "key": "Consumer"}),
    "weight 0": spec(backendService=None, backends=[{"service": {"name": "a"}, "weight": 0}, {"url": "https://b.example.com"}]),
    "cors any origin": spec(cors={"allowOrigins": ["*"]}),
    "dots inside a path segment": spec(path="/.well-known/jwks..json"),
    # Gateway API: a redirect may change only the status code (same scheme, host, path, query).
    "redirect with only a status code": {"path": "/a", "redirect": {"statusCode": 303}},
    "rewrite path of RFC 3986 characters": spec(
        rewrite={"path": {"type": "ReplaceFullPath", "replaceFullPath": "/a-b_c.d~e/%7Euser/x:y@z;v=1,2/!$&'()*+"}}),
    "rewrite host of 63-character labels": spec(rewrite={"hostname": "a" * 63 + ".example.com"}),
}


@pytest.mark.parametrize("name", VALID)
def test_valid_objects_are_accepted(name):
    _, errors = admit(api_endpoint(VALID[name]))
    assert errors == []


def test_defaults_are_filled_in():
    stored, _ = admit(api_endpoint(spec(
        backendService=None,
        backends=[{"service": {"name": "users"}}],
        headers=[{"name": "X-A", "value": "1"}],
        rateLimit={"requestsPerMinute": 10},
    )))
    s = stored["spec"]
    assert s["pathType"] == "Prefix"
    assert s["loadBalancer"] == "RoundRobin"
    assert s["backends"][0]["weight"] == 1
    assert s["headers"][0]["type"] == "Exact"
    assert s["rateLimit"] == {"requestsPerMinute": 10, "key": "ClientAddress", "scope": "Local"}
    assert "redirect" not in s and "ingressClassName" not in s  # no objects invented
    redirect = apply_defaults(openapi_schema(), api_endpoint({"path": "/a", "redirect": {"scheme": "https"}}))
    assert redirect["spec"]["redirect"]["statusCode"] == 302


# (spec, the error it must get). Refused by the OpenAPI schema:
SCHEMA_INVALID = {
    "unknown field": (spec(backendServce="users"), "'backendServce' was unexpected"),
    "unknown nested field": (spec(rateLimit={"requestsPerMinute": 5, "perIP": True}), "'perIP' was unexpected"),
    "bad pathType": (spec(pathType="Sometimes"), "'Sometimes' is not one of"),
    "lower-case method": (spec(method="get"), "'get' is not one of"),
    "bad rate-limit scope": (spec(rateLimit={"requestsPerMinute": 5, "scope": "Cluster"}), "'Cluster' is not one of"),
    "no path": (spec(path=None), "'path' is a required property"),
    "zero requestsPerMinute": (spec(rateLimit={"requestsPerMinute": 0}), "less than the minimum of 1"),
    "negative burst": (spec(rateLimit={"requestsPerMinute": 5, "burst": -1}), "less than the minimum of 0"),
    "inline credentials": (spec(auth={"type": "APIKey", "secretRef": {"name": "k"}, "keys": ["s3cret"]}), "'keys' was unexpected"),
    "auth without type": (spec(auth={"secretRef": {"name": "k"}}), "'type' is a required property"),
    "duration with spaces": (spec(timeouts={"request": "10 seconds"}), "does not match"),
    "duration without unit": (spec(timeouts={"request": "10"}), "does not match"),
    "header name with a space": (spec(headers=[{"name": "X Tenant", "value": "a"}]), "does not match"),
    "upper-case host": (spec(hosts=["API.example.com"]), "does not match"),
    "wildcard inside a host": (spec(hosts=["api.*.com"]), "does not match"),
    "too many hosts": (spec(hosts=[f"h{i}.example.com" for i in range(17)]), "is too long"),
    "port out of range": (spec(backendService=None, backends=[{"service": {"name": "a", "port": 70000}}]), "greater than the maximum"),
    "bad port name": (spec(backendService=None, backends=[{"service": {"name": "a", "port": "HTTP_PORT"}}]), "does not match"),
    "negative weight": (spec(backendService=None, backends=[{"service": {"name": "a"}, "weight": -1}]), "less than the minimum"),
    "url with another scheme": (spec(backendService=None, backends=[{"url": "ftp://files:21"}]), "does not match"),
    "query parameter name with '='": (
        spec(auth={"type": "APIKey", "secretRef": {"name": "k"}, "queryParam": "key=1"}), "does not match"),
    "url with a path": (spec(backendService=None, backends=[{"url": "http://a.example.com/v1"}]), "does not match"),
    "url with credentials": (spec(backendService=None, backends=[{"url": "http://user:pw@a.example.com"}]), "does not match"),
    "header value with CRLF": (spec(requestHeaders={"set": [{"name": "X-A", "value": "a\r\nX-Evil: 1"}]}), "does not match"),
    "service name with a dot": (spec(backendService="users.shop"), "does not match"),
    "redirect 304": ({"path": "/a", "redirect": {"scheme": "https", "statusCode": 304}}, "304 is not one of"),
    "retry on 200": (spec(retries={"statusCodes": [200]}), "less than the minimum of 400"),
    "empty backends": (spec(backendService=None, backends=[]), "should be non-empty"),
    "cors without origins": (spec(cors={"allowMethods": ["GET"]}), "'allowOrigins' is a required property"),
    "mirror percent over 100": (spec(mirror={"backend": {"url": "http://shadow:80"}, "percent": 150}), "greater than the maximum"),
    "unknown JWT algorithm": (spec(auth={"type": "JWT", "secretRef": {"name": "k"}, "jwt": {"algorithms": ["none"]}}), "'none' is not one of"),
    # Values written into a request line or a header: no CR/LF, space or control character.
    "rewrite full path smuggling a request": (spec(rewrite={"path": {
        "type": "ReplaceFullPath", "replaceFullPath": "/admin HTTP/1.1\r\nHost: internal\r\n\r\nGET /smuggled"}}), "does not match"),
    "rewrite prefix with a trailing LF": (
        spec(rewrite={"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2\n"}}), "does not match"),
    "rewrite path with a space": (
        spec(rewrite={"path": {"type": "ReplaceFullPath", "replaceFullPath": "/a b"}}), "does not match"),
    "rewrite path with a query": (
        spec(rewrite={"path": {"type": "ReplaceFullPath", "replaceFullPath": "/a?b=1"}}), "does not match"),
    "rewrite path with a fragment": (
        spec(rewrite={"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/a#top"}}), "does not match"),
    "rewrite path with a bare percent": (
        spec(rewrite={"path": {"type": "ReplaceFullPath", "replaceFullPath": "/100%"}}), "does not match"),
    "rewrite path with NUL": (
        spec(rewrite={"path": {"type": "ReplaceFullPath", "replaceFullPath": "/a\x00"}}), "does not match"),
    "redirect path injecting a header": ({"path": "/a", "redirect": {"path": {
        "type": "ReplaceFullPath", "replaceFullPath": "/x\r\nSet-Cookie: session=evil"}}}, "does not match"),
    "redirect prefix with a tab": ({"path": "/a", "redirect": {"path": {
        "type": "ReplacePrefixMatch", "replacePrefixMatch": "/x\ty"}}}, "does not match"),
    "redirect hostname injecting a header": (
        {"path": "/a", "redirect": {"hostname": "b.example.com\r\nSet-Cookie: x=1"}}, "does not match"),
    "redirect hostname with a trailing LF": ({"path": "/a", "redirect": {"hostname": "b.example.com\n"}}, "does not match"),
    "rewrite hostname with a port": (spec(rewrite={"hostname": "b.example.com:8080"}), "does not match"),
    "rewrite hostname wildcard": (spec(rewrite={"hostname": "*.example.com"}), "does not match"),
    "rewrite hostname label over 63": (spec(rewrite={"hostname": "a" * 64 + ".example.com"}), "does not match"),
    "url with CRLF": (spec(backendService=None, backends=[{"url": "http://a.example.com\r\n:80"}]), "does not match"),
}

# Refused by a CEL rule (x-kubernetes-validations):
CEL_INVALID = {
    "both backendService and backends": (
        spec(backends=[{"service": {"name": "users"}}]), "exactly one of backendService or backends"),
    "neither backendService nor backends": (spec(backendService=None), "exactly one of backendService or backends"),
    "redirect with a backend": (
        spec(redirect={"scheme": "https"}), "redirect is exclusive with rewrite, backends, backendService and mirror"),
    "redirect with a rewrite": (
        {"path": "/a", "redirect": {"scheme": "https"}, "rewrite": {"hostname": "b.example.com"}},
        "redirect is exclusive with rewrite"),
    "redirect with a mirror": (
        {"path": "/a", "redirect": {"scheme": "https"}, "mirror": {"backend": {"url": "http://shadow:80"}}},
        "redirect is exclusive with rewrite, backends, backendService and mirror"),
    "method and methods": (spec(methods=["GET"]), "method and methods are exclusive"),
    "path without leading slash": (spec(path="api/v1/users"), 'path must start with "/"'),
    "exact path without leading slash": (spec(path="users", pathType="Exact"), 'path must start with "/"'),
    "path with a query": (spec(path="/users?id=1"), 'path must start with "/"'),
    "path with CRLF": (spec(path="/users\r\nX-Evil: 1"), 'path must start with "/"'),
    "path with a trailing LF": (spec(path="/users\n"), 'path must start with "/"'),
    "path with a NUL": (spec(path="/us\x00ers"), 'path must start with "/"'),
    "path with an empty segment": (spec(path="/api//users"), "empty, '.' or '..' segments"),
    "path with a dot-dot segment": (spec(path="/api/../admin"), "empty, '.' or '..' segments"),
    "rewrite prefix on an exact path": (
        spec(pathType="Exact", rewrite={"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}),
        "rewrite.path.type ReplacePrefixMatch needs pathType Prefix"),
    "redirect prefix on a regex path": (
        {"path": "/a.*", "pathType": "RegularExpression",
         "redirect": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/b"}}},
        "redirect.path.type ReplacePrefixMatch needs pathType Prefix"),
    "consumer key without auth": (
        spec(authRequired=None, rateLimit={"requestsPerMinute": 5, "key": "Consumer"}),
        "rateLimit.key Consumer needs auth"),
    "backend with service and url": (
        spec(backendService=None, backends=[{"service": {"name": "a"}, "url": "http://a:80"}]),
        "each backend needs exactly one of service or url"),
    "backend with neither service nor url": (
        spec(backendService=None, backends=[{"weight": 3}]), "each backend needs exactly one of service or url"),
    "prefix rewrite without its value": (
        spec(rewrite={"path": {"type": "ReplacePrefixMatch"}}),
        "replacePrefixMatch must be set when type is ReplacePrefixMatch"),
    "full-path rewrite given a prefix": (
        spec(rewrite={"path": {"type": "ReplaceFullPath", "replacePrefixMatch": "/x"}}),
        "replaceFullPath must be set when type is ReplaceFullPath"),
    "per-try timeout above the request timeout": (
        spec(timeouts={"request": "10s", "backendRequest": "1m"}), "timeouts.backendRequest must not exceed"),
    "APIKey without secretRef": (
        spec(auth={"type": "APIKey", "header": "X-Api-Key"}), "auth.secretRef is required for APIKey and Basic"),
    "Basic without secretRef": (spec(auth={"type": "Basic"}), "auth.secretRef is required for APIKey and Basic"),
    "JWT without keys": (
        spec(auth={"type": "JWT", "jwt": {"issuer": "https://i.example.com"}}), "JWT auth needs secretRef or jwt.jwksURL"),
    "jwt settings on Basic": (
        spec(auth={"type": "Basic", "secretRef": {"name": "h"}, "jwt": {"leeway": "5s"}}),
        "auth.jwt is only valid with type JWT"),
    "header on Basic": (
        spec(auth={"type": "Basic", "secretRef": {"name": "h"}, "header": "X-Auth"}),
        "auth.header and auth.queryParam are for APIKey and JWT"),
    "key Header without keyHeader": (
        spec(rateLimit={"requestsPerMinute": 5, "key": "Header"}), "rateLimit.keyHeader is required with key Header"),
    "keyHeader with the default key": (
        spec(rateLimit={"requestsPerMinute": 5, "keyHeader": "X-Api-Key"}), "rateLimit.keyHeader is required with key Header"),
    "credentials for any origin": (
        spec(cors={"allowOrigins": ["*"], "allowCredentials": True}),
        "cors.allowCredentials cannot be used with allowOrigins '*'"),
    "protocol on a Service backend": (
        spec(backendService=None, backends=[{"service": {"name": "a"}, "protocol": "HTTP/2"}]),
        "protocol is only for a url backend"),
    "mirror backend with neither service nor url": (
        spec(mirror={"backend": {"weight": 1}}), "mirror.backend needs exactly one of service or url"),
}


@pytest.mark.parametrize("name", SCHEMA_INVALID)
def test_schema_refuses(name):
    body, expected = SCHEMA_INVALID[name]
    _, errors = admit(api_endpoint(body))
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize("name", CEL_INVALID)
def test_cel_rule_refuses(name):
    body, expected = CEL_INVALID[name]
    stored = apply_defaults(openapi_schema(), api_endpoint(body))
    assert schema_errors(stored) == [], "must be refused by the CEL rule alone"
    errors = cel_errors(openapi_schema(), stored)
    assert any(expected in e for e in errors), errors


def test_cel_errors_name_the_field():
    errors = cel_errors(openapi_schema(), apply_defaults(openapi_schema(), api_endpoint(
        spec(backendService=None, backends=[{"service": {"name": "a"}}, {"weight": 1}]))))
    assert errors == ["spec.backends[1]: each backend needs exactly one of service or url"]
    errors = cel_errors(openapi_schema(), api_endpoint(spec(path="users")))
    assert errors[0].startswith("spec.path: ")


def test_every_cel_rule_has_a_case_it_refuses():
    messages = {rule["message"] for _, rule, _ in iter_rules(openapi_schema())}
    refused = {m for m in messages for _, expected in CEL_INVALID.values() if expected in m}
    assert sorted(messages - refused) == []
