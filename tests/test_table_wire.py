"""A table sent to a proxy worker (gateway/tablewire.py) is the controller's table: routes, order, endpoints, answers.

The controller's incremental compiles (random changes, as in
test_incremental_equivalence.py) go through a TableEncoder; a worker's
TableDecoder that started with the first table, and one that joins later from
a snapshot, must hold the same table after every step. Endpoint churn sends
endpoint sets only; every authenticator, regex and key type crosses the pickle.
"""

from __future__ import annotations

import asyncio
import pickle
import random

import pytest
from authkeys import basic, bearer, ec_key, ed_key, jwk, jwks, public_pem, request, rsa_key, token
from test_incremental_equivalence import Universe, describe_matches, random_change, seeded_store

from controller.compile import CompileOptions, Compiler
from controller.store import ENDPOINTSLICE
from gateway.auth import (
    APIKeyAuthenticator,
    BasicAuthenticator,
    JWTAuthenticator,
    RemoteJWKS,
    hmac_keyset,
    parse_htpasswd,
    parse_jwks,
    parse_pem,
)
from gateway.regex import Regex
from gateway.routing import PATH_REGEX, BackendRef, Endpoint, EndpointSet, Route, RoutePolicy, RouteTable
from gateway.tablejson import table_to_json
from gateway.tablewire import UPDATE, TableDecoder, TableEncoder, load

HEADER = 4


def receive(decoder: TableDecoder, data: bytes) -> RouteTable:
    table, _ = decoder.apply(load(data[HEADER:]))
    return table


def assert_same_table(got: RouteTable, want: RouteTable) -> None:
    assert got.generation == want.generation
    assert len(got) == len(want)
    assert table_to_json(got) == table_to_json(want)
    assert dict(got.endpoints) == dict(want.endpoints)
    assert describe_matches(got) == describe_matches(want)


@pytest.mark.parametrize("seed", range(6))
def test_workers_hold_the_controllers_table_after_every_change(seed):
    rng = random.Random(seed)
    u = Universe(rng)
    store = seeded_store(u)
    compiler = Compiler()
    encoder = TableEncoder()
    first = TableDecoder()  # there from the start
    late: TableDecoder | None = None  # joins halfway, from a snapshot
    version = None
    for step in range(80):
        for _ in range(rng.choice((1, 1, 2, 5))):
            random_change(u, store)
        snap = store.snapshot(since=version)
        version = snap.version
        table = compiler.compile(snap, CompileOptions(), step).table
        update = encoder.update(table)
        if update is None:
            receive(first, encoder.snapshot())
        else:
            receive(first, update)
            if late is not None:
                receive(late, update)
        if step == 40:
            late = TableDecoder()
            receive(late, encoder.snapshot())
        assert_same_table(first.table, table)
        if late is not None:
            assert_same_table(late.table, table)


def test_endpoint_churn_sends_the_changed_endpoint_sets_only():
    rng = random.Random(3)
    u = Universe(rng)
    store = seeded_store(u)
    compiler = Compiler()
    encoder, decoder = TableEncoder(), TableDecoder()
    version, table = None, None
    while table is None or not any(es.endpoints for es in table.endpoints.values()):  # routes with ready Services
        random_change(u, store)
        snap = store.snapshot(since=version)
        version = snap.version
        table = compiler.compile(snap, CompileOptions(), 1).table
    encoder.update(table)
    receive(decoder, encoder.snapshot())
    ns_name = next(k for k, es in table.endpoints.items() if es.endpoints).split(":")[0]
    ns, svc = ns_name.split("/")
    for step in range(2, 40):  # new slices for that Service until its endpoints differ
        store.apply(ENDPOINTSLICE, "MODIFIED", u.endpointslice(ns, svc))
        snap = store.snapshot(since=version)
        version = snap.version
        table2 = compiler.compile(snap, CompileOptions(), step).table
        update = encoder.update(table2)
        kind, _, removed, added, endpoints, dropped, fallback, certs = pickle.loads(update[HEADER:])
        assert kind == UPDATE and removed == [] and added == [] and fallback == () and certs is None
        assert all(k.startswith(f"{ns}/{svc}:") for k in [*endpoints, *dropped])
        receive(decoder, update)
        assert_same_table(decoder.table, table2)
        if endpoints:
            break
    else:
        raise AssertionError("the endpoints never changed")


def _route(name: str, auth=None, path: str = "/x", path_type: str = "Prefix", regex=None) -> Route:
    return Route(name=name, kind="APIEndpoint", path=path, path_type=path_type, regex=regex,
                 backends=(BackendRef("ns/svc:80"),), policy=RoutePolicy(auth=auth) if auth else RoutePolicy())


def _send_one(route: Route) -> Route:
    table = RouteTable([route], endpoints={"ns/svc:80": EndpointSet("ns/svc:80", (Endpoint("127.0.0.1", 9),))})
    encoder, decoder = TableEncoder(), TableDecoder()
    encoder.update(table)
    got = receive(decoder, encoder.snapshot())
    return got.routes[0]


def test_every_authenticator_and_key_type_crosses_with_its_secrets():
    users = parse_htpasswd("alice:{SHA}" + __import__("base64").b64encode(
        __import__("hashlib").sha1(b"wonderland").digest()).decode())
    cases = [
        (APIKeyAuthenticator({"alice": "k-123"}), request({"x-api-key": "k-123"}), request({"x-api-key": "nope"})),
        (BasicAuthenticator(users), basic("alice", "wonderland"), basic("alice", "nope")),
        (JWTAuthenticator(parse_pem(public_pem(rsa_key()))), bearer(token(rsa_key())), bearer(token(ec_key(), "ES256"))),
        (JWTAuthenticator(parse_jwks(jwks(jwk(ec_key(), kid="e")))), bearer(token(ec_key(), "ES256", kid="e")),
         bearer(token(rsa_key(), kid="e"))),
        (JWTAuthenticator(parse_jwks(jwks(jwk(ed_key(), kid="d")))), bearer(token(ed_key(), "EdDSA", kid="d")),
         bearer(token(rsa_key()))),
        (JWTAuthenticator(hmac_keyset(b"s" * 32)), bearer(token(b"s" * 32, "HS256")), bearer(token(b"t" * 32, "HS256"))),
    ]
    for auth, good, bad in cases:
        assert auth.authenticate(good).ok  # fills the sender's cache: it must not travel
        sent = _send_one(_route("ns/a", auth)).policy.auth
        assert type(sent) is type(auth) and sent is not auth
        if hasattr(auth, "cache"):
            assert len(auth.cache) == 1 and len(sent.cache) == 0
        assert sent.describe() == auth.describe()
        assert sent.authenticate(good).ok, type(auth).__name__
        assert not sent.authenticate(bad).ok, type(auth).__name__


def test_a_remote_jwks_travels_without_its_fetch_in_flight():
    async def main():
        remote = RemoteJWKS("http://127.0.0.1:9/jwks", refresh_floor=0)
        remote.current()  # starts a fetch: a task of this loop
        assert remote.may_fetch()
        sent = _send_one(_route("ns/a", JWTAuthenticator(remote))).policy.auth
        assert sent.remote.url == remote.url and sent.remote is not remote
        await asyncio.gather(remote.refresh(), return_exceptions=True)

    asyncio.run(main())


def test_a_regex_route_matches_after_the_trip():
    r = _send_one(_route("ns/re", path="/v[0-9]+/items", path_type=PATH_REGEX, regex=Regex("/v[0-9]+/items")))
    table = RouteTable([r])
    assert table.match("GET", "h", "/v12/items").route is r
    assert table.match("GET", "h", "/vx/items").route is None


def test_certificates_travel_when_they_change_and_serve_on_the_other_side():
    from tlsharness import CA

    from gateway.tls import CertificateStore

    ca = CA()
    certs = {"shop.example.com": ca.issue("shop.example.com").bundle("Secret shop/tls")}
    t1 = RouteTable([_route("ns/a")], generation=1)
    encoder, decoder = TableEncoder(), TableDecoder()
    encoder.update(t1, certs)
    _, got = decoder.apply(load(encoder.snapshot()[HEADER:]))
    assert got == certs
    store = CertificateStore()
    store.update(got)
    context, _ = store.select("shop.example.com")
    assert context is not None
    # Same certificates (an equal mapping, as a refresh hands out): not sent again.
    t2 = t1.with_endpoints({}, 2)
    message = pickle.loads(encoder.update(t2, dict(certs))[HEADER:])
    assert message[-1] is None
    rotated = {"shop.example.com": ca.issue("shop.example.com").bundle("Secret shop/tls")}
    _, got = decoder.apply(load(encoder.update(t2.with_endpoints({}, 3), rotated)[HEADER:]))
    assert got == rotated


def test_every_field_of_the_compiled_classes_survives_the_pickle():
    """routing.pxd's classes pickle through ``__reduce__`` (compiled, they have no pickling of
    their own): a field added to one of them and forgotten there would be lost on the way."""
    import dataclasses

    from gateway.routing import (
        CorsPolicy,
        HeaderModifier,
        RateLimitPolicy,
        RetryPolicy,
        Rewrite,
        StringMatch,
        Timeouts,
    )

    policy = RoutePolicy(
        auth=APIKeyAuthenticator({"a": "k"}), rate_limit=RateLimitPolicy(60, 5, "Header", "x-user", "Global"),
        rewrite=Rewrite("ReplacePrefixMatch", "/v2"), timeouts=Timeouts(3.0, 1.0, 2.0),
        retries=RetryPolicy(3, frozenset({503}), False, 0.5, True), cors=CorsPolicy(("*",)), max_body_bytes=10,
        load_balancer="LeastRequest", https_redirect=True)
    route = Route(name="ns/r", kind="Ingress", path="/x", path_type="Exact", hosts=("*.a.example",),
                  methods=frozenset({"GET"}), headers=(StringMatch("x-a", "1"),), query=(StringMatch("q", "v"),),
                  backends=(BackendRef("ns/s:80", 3),), policy=policy, created="2026-01-01T00:00:00Z",
                  wildcard_single_label=True, regex=None, rule="rules[0].paths[1]", order=7)
    objects = [route, policy, policy.rate_limit, policy.timeouts, policy.retries,
               BackendRef("k", 2, HeaderModifier(set=(("x-a", "1"),)), HeaderModifier(remove=("x-b",))),
               Endpoint("10.0.0.1", 8443, True, True), EndpointSet("k", (Endpoint("h", 1),), "NoReadyEndpoints", "h.example")]
    for obj in objects:
        back = pickle.loads(pickle.dumps(obj))
        assert type(back) is type(obj)
        for f in dataclasses.fields(obj):
            got, want = getattr(back, f.name), getattr(obj, f.name)
            if f.name == "auth":
                assert type(got) is type(want)
            elif f.name == "policy":
                assert got.rate_limit == want.rate_limit and got.retries == want.retries
            else:
                assert got == want, (type(obj).__name__, f.name)
    assert not pickle.loads(pickle.dumps(route)).plain and pickle.loads(pickle.dumps(_route("ns/p"))).plain
