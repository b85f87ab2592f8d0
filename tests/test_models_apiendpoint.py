"""APIEndpoint spec validation: the seed form, the full form, and errors that name the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from controller.durations import format_duration, parse_duration
from controller.models import APIEndpointSpec, describe_errors

SEED = {"path": "/api/v1/users", "method": "GET", "backendService": "users", "authRequired": True}


def errors(spec: dict) -> list[str]:
    with pytest.raises(ValidationError) as info:
        APIEndpointSpec.model_validate(spec)
    return describe_errors(info.value, "spec")


def test_seed_form_is_valid_as_written():
    spec = APIEndpointSpec.model_validate(SEED)
    assert spec.path == "/api/v1/users"
    assert spec.method_set == frozenset({"GET"})
    assert spec.backend_service == "users"
    assert spec.auth_required is True
    assert spec.path_type == "Prefix"


def test_full_form_is_valid():
    spec = APIEndpointSpec.model_validate(
        {
            "ingressClassName": "crdgate",
            "hosts": ["api.example.com", "*.example.com"],
            "path": "/v2/orders",
            "pathType": "Exact",
            "methods": ["GET", "POST"],
            "headers": [{"name": "X-Version", "value": "2"}, {"name": "x-tenant", "value": "t-[0-9]+", "type": "RegularExpression"}],
            "queryParams": [{"name": "debug", "value": "1"}],
            "backends": [
                {"service": {"name": "orders", "port": 8080}, "weight": 90},
                {"service": {"name": "orders-canary", "namespace": "canary", "port": "http"}, "weight": 10},
                {"url": "https://payments.example.net:8443"},
            ],
            "loadBalancer": "LeastRequest",
            "rewrite": {"hostname": "orders.internal", "path": {"type": "ReplaceFullPath", "replaceFullPath": "/orders"}},
            "requestHeaders": {"set": [{"name": "X-From", "value": "gw"}], "add": [{"name": "X-A", "value": "1"}], "remove": ["X-Debug"]},
            "responseHeaders": {"remove": ["Server"]},
            "timeouts": {"request": "15s", "backendRequest": "500ms"},
            "retries": {"attempts": 3, "statusCodes": [503], "onConnectFailure": True, "backoff": "50ms", "nonIdempotent": False},
            "auth": {"type": "JWT", "jwt": {"issuer": "https://idp", "audiences": ["api"], "jwksURL": "https://idp/jwks", "leeway": "30s",
                                            "requiredClaims": ["sub"], "forwardClaims": {"sub": "X-User"}, "algorithms": ["RS256"]}},
            "rateLimit": {"requestsPerMinute": 600, "burst": 20, "key": "Consumer", "scope": "Global"},
            "cors": {"allowOrigins": ["https://app.example.com", "https://*.example.org"], "allowMethods": ["GET"], "maxAge": 600},
            "maxBodyBytes": 1048576,
            "mirror": {"backend": {"service": {"name": "shadow"}}, "percent": 5},
        }
    )
    assert spec.timeouts.request == 15.0 and spec.timeouts.backend_request == 0.5
    assert spec.retries.backoff == 0.05
    assert spec.auth.jwt.leeway == 30.0 and spec.auth.jwt.jwks_url == "https://idp/jwks"
    assert spec.backends[1].service.port == "http"
    assert spec.method_set == frozenset({"GET", "POST"})


def test_unknown_field_is_an_error_naming_it():
    assert errors({**SEED, "backendSerivce": "users"}) == ["spec.backendSerivce: unknown field; did you mean `backendService`?"]


def test_unknown_nested_field_names_its_path():
    spec = {"path": "/a", "backends": [{"service": {"name": "a", "prot": 80}}]}
    assert errors(spec) == ["spec.backends[0].service.prot: unknown field; did you mean `port`?"]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({**SEED, "authRequired": "yes"}, "spec.authRequired: Input should be a valid boolean"),
        ({**SEED, "path": 5}, "spec.path: Input should be a valid string"),
        ({"path": "/a", "backends": [{"url": "http://a:1", "weight": -1}]}, "spec.backends[0].weight: Input should be greater than or equal to 0"),
        ({"path": "/a", "backends": [{"service": {"name": "a", "port": "80"}}]}, "spec.backends[0].service.port: port '80' is a string; write the number without quotes"),
        ({"path": "/a", "backends": [{"service": {"name": "a", "port": 70000}}]}, "spec.backends[0].service.port: port 70000 is out of range 1-65535"),
        ({**SEED, "timeouts": {"request": 30}}, "spec.timeouts.request: expected a duration string like '500ms', '15s' or '1m', got 30"),
        ({**SEED, "maxBodyBytes": "1MB"}, "spec.maxBodyBytes: Input should be a valid integer"),
    ],
)
def test_wrong_type_names_the_field(spec, expected):
    assert errors(spec) == [expected]


def test_missing_path_is_named():
    assert errors({"backendService": "users"}) == ["spec.path: required field is missing"]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"path": "/a"}, "spec.backendService: set backendService, backends or redirect"),
        ({"path": "/a", "backendService": "a", "backends": [{"url": "http://a"}]}, "spec.backends: set either backendService or backends, not both"),
        ({"path": "/a", "backendService": "a", "redirect": {"scheme": "https"}}, "spec.redirect: cannot be combined with backendService"),
        ({"path": "/a", "backends": [{"url": "http://a"}], "redirect": {"scheme": "https"}}, "spec.redirect: cannot be combined with backends"),
        ({"path": "/a", "redirect": {"scheme": "https"}, "rewrite": {"hostname": "b"}}, "spec.redirect: cannot be combined with rewrite"),
        ({"path": "/a", "backendService": "a", "method": "GET", "methods": ["GET"]}, "spec.methods: set either method or methods, not both"),
        ({"path": "/a", "backendService": "a", "methods": []}, "spec.methods: must not be empty; leave it out to match any method"),
        ({"path": "a", "backendService": "a"}, "spec.path: must start with '/' for pathType Prefix"),
        ({"path": "api", "pathType": "Exact", "backendService": "a"}, "spec.path: must start with '/' for pathType Exact"),
        ({"path": "/a?b=1", "backendService": "a"}, "spec.path: must not contain '?' or '#'; match query parameters with queryParams"),
        ({"path": "/a//b", "backendService": "a"}, "spec.path: must not contain empty, '.' or '..' segments"),
        ({"path": "/a/(", "pathType": "RegularExpression", "backendService": "a"}, None),
        ({"path": "/a", "pathType": "Exact", "backendService": "a", "rewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/b"}}},
         "spec.rewrite.path.replacePrefixMatch: ReplacePrefixMatch needs pathType Prefix, not Exact"),
        ({"path": "/a", "backendService": "a", "rewrite": {"path": {"type": "ReplaceFullPath"}}}, "spec.rewrite.path.replaceFullPath: required when type is ReplaceFullPath"),
        ({"path": "/a", "backendService": "a", "rateLimit": {"requestsPerMinute": 1, "key": "Header"}}, "spec.rateLimit.keyHeader: required when key is Header"),
        ({"path": "/a", "backendService": "a", "rateLimit": {"requestsPerMinute": 1, "key": "Consumer"}},
         "spec.rateLimit.key: Consumer needs auth (or authRequired) to know the consumer"),
        ({"path": "/a", "backendService": "a", "timeouts": {"request": "1s", "backendRequest": "2s"}}, "spec.timeouts.backendRequest: must not be longer than request"),
        ({"path": "/a", "backendService": "a", "cors": {"allowOrigins": ["*"], "allowCredentials": True}},
         "spec.cors.allowCredentials: cannot be used with allowOrigins '*'; list the origins"),
        ({"path": "/a", "backends": [{"service": {"name": "a"}, "url": "http://b"}]}, "spec.backends[0]: set exactly one of service or url"),
        ({"path": "/a", "backends": [{"url": "http://b/base"}]}, "spec.backends[0].url: URL 'http://b/base' must be scheme://host[:port] only (no path, query or fragment)"),
        ({"path": "/a", "backends": [{"url": "ftp://b"}]}, "spec.backends[0].url: URL 'ftp://b' must start with http:// or https://"),
        ({"path": "/a", "backendService": "a", "auth": {"type": "Basic", "secretRef": {"name": "s"}, "jwt": {}}}, "spec.auth.jwt: only allowed with type JWT, not Basic"),
        ({"path": "/a", "backendService": "a", "requestHeaders": {"set": [{"name": "X-A", "value": "a\r\nb"}]}},
         "spec.requestHeaders.set[0].value: header values must not contain CR, LF or NUL"),
        ({"path": "/a", "backendService": "a", "hosts": ["api.example.com:8080"]}, "spec.hosts: 'api.example.com:8080' is not a host name or a '*.suffix' wildcard (no port)"),
        ({"path": "/a", "backendService": "Users"}, "spec.backendService: Service name 'Users' is not a valid DNS label (lower-case letters, digits and '-', at most 63)"),
    ],
)
def test_cross_field_rules(spec, expected):
    got = errors(spec)
    if expected is None:  # RE2's own reason follows; tests/test_regex.py checks those
        assert len(got) == 1 and got[0].startswith("spec.path: invalid regular expression:")
    else:
        assert got == [expected]


def test_several_problems_are_all_reported():
    got = errors({"path": "/a", "method": "GET", "methods": ["GET"], "redirect": {"scheme": "https"}, "rewrite": {"hostname": "b"}})
    assert got == ["spec.methods: set either method or methods, not both", "spec.redirect: cannot be combined with rewrite"]


def test_header_regex_must_compile():
    got = errors({"path": "/a", "backendService": "a", "headers": [{"name": "x", "value": "(", "type": "RegularExpression"}]})
    assert len(got) == 1 and got[0].startswith("spec.headers[0].value: invalid regular expression")


def test_regexes_are_re2_syntax():
    # Backreferences and lookaround need a backtracking engine; the status says RE2 refused them.
    got = errors({"path": "/(a)\\1", "pathType": "RegularExpression", "backendService": "a"})
    assert len(got) == 1 and got[0].startswith("spec.path: invalid regular expression: invalid escape sequence: \\1 (")
    got = errors({"path": "/a", "backendService": "a", "headers": [{"name": "x", "value": "(?!admin).*", "type": "RegularExpression"}]})
    assert len(got) == 1 and got[0].startswith("spec.headers[0].value: invalid regular expression: invalid perl operator: (?! (")


def test_redirect_alone_needs_no_backend():
    spec = APIEndpointSpec.model_validate({"path": "/old", "redirect": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}, "statusCode": 301}})
    assert spec.redirect.status_code == 301


def test_jwt_algorithm_none_is_refused():
    got = errors({"path": "/a", "backendService": "a", "auth": {"type": "JWT", "jwt": {"jwksURL": "https://x/j", "algorithms": ["none"]}}})
    assert len(got) == 1 and got[0].startswith("spec.auth.jwt.algorithms[0]: Input should be 'RS256'")


def test_weight_zero_is_allowed():
    spec = APIEndpointSpec.model_validate({"path": "/a", "backends": [{"url": "http://a", "weight": 0}, {"url": "http://b"}]})
    assert [b.weight for b in spec.backends] == [0, 1]


@pytest.mark.parametrize(
    "text, seconds",
    [("250ms", 0.25), ("15s", 15.0), ("1m", 60.0), ("1h", 3600.0), ("1m30s", 90.0), ("1.5s", 1.5), ("0s", 0.0)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "s", "1x", "1 s", "-1s", "1s 2s"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_format_duration():
    assert [format_duration(x) for x in (0.25, 15, 90, 3600, 1.5)] == ["250ms", "15s", "1m30s", "1h", "1.5s"]
