"""Only the Secrets that routes reference (or that are labelled as namespace defaults) are cached."""

from __future__ import annotations

from types import MappingProxyType

from fakekube import apiendpoint, eventually, fake_kube, ingress, kube_api, running, secret  # noqa: F401

from controller.kube import KubeSource, referenced_secrets
from controller.store import APIENDPOINT, KINDS, SECRET, Snapshot, Store

FAST = dict(timeout_seconds=30, backoff_base=0.05, backoff_cap=0.2, min_watch_seconds=0.0)


def snapshot(*objs: dict) -> Snapshot:
    by_kind: dict[str, dict] = {}
    for o in objs:
        meta = o["metadata"]
        by_kind.setdefault(o["kind"], {})[f"{meta.get('namespace', '')}/{meta['name']}"] = o
    return Snapshot(objects=MappingProxyType({k: MappingProxyType(v) for k, v in by_kind.items()}))


def test_references_from_every_place_a_route_names_a_secret():
    snap = snapshot(
        apiendpoint("shop", "own-ns", auth={"type": "APIKey", "secretRef": {"name": "keys"}}),
        apiendpoint("shop", "cross-ns", auth={"type": "Basic", "secretRef": {"name": "users", "namespace": "auth"}}),
        apiendpoint("shop", "tls", tls={"secretName": "shop-cert"}),
        apiendpoint("shop", "broken", auth="not-an-object", tls={"secretName": 7}),
        ingress("web", "ours", tls=["web-cert"]),
        ingress("web", "theirs", class_name="nginx", tls=["nginx-cert"]),
        ingress("web", "annotated", annotations={"crdgate.io/auth-secret": "htpasswd"}),
        ingress("web", "annotated-cross", annotations={"crdgate.io/auth-secret": "auth/jwt-keys"}),
        ingress("web", "nginx-style", annotations={"nginx.ingress.kubernetes.io/auth-secret": "basic"}),
    )
    refs = referenced_secrets(snap, defaults=[("crdgate-system", "default-auth")])
    assert refs == {
        ("shop", "keys"), ("auth", "users"), ("shop", "shop-cert"), ("web", "web-cert"),
        ("web", "htpasswd"), ("auth", "jwt-keys"), ("web", "basic"), ("crdgate-system", "default-auth"),
    }


def test_default_ingress_class_makes_classless_ingresses_ours():
    classless = ingress("web", "plain", class_name=None, tls=["plain-cert"])
    assert referenced_secrets(snapshot(classless)) == set()
    default = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
               "metadata": {"name": "crdgate", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}}}
    assert referenced_secrets(snapshot(classless, default)) == {("web", "plain-cert")}


async def test_only_referenced_secrets_are_cached_and_followed(fake_kube, kube_api):
    fake_kube.create(secret("shop", "keys", k="YQ=="))
    fake_kube.create(secret("shop", "unreferenced"))
    fake_kube.create(secret("shop", "ns-default", labels={"crdgate.io/default-auth": "APIKey"}))
    fake_kube.create(secret("web", "nginx-cert"))
    fake_kube.create(apiendpoint("shop", "a", auth={"type": "APIKey", "secretRef": {"name": "keys"}}))
    fake_kube.create(ingress("web", "theirs", class_name="nginx", tls=["nginx-cert"]))
    store = Store()
    source = KubeSource(store, kube_api, **FAST)
    async with running(source.run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        # Synced means the referenced Secrets are already there for the first compile.
        assert sorted(store.keys(SECRET)) == ["shop/keys", "shop/ns-default"]
        assert store.get(SECRET, "shop", "keys")["kind"] == "Secret"

        # A new reference starts a watch; the Secret appears.
        fake_kube.create(apiendpoint("shop", "b", tls={"secretName": "unreferenced"}))
        await eventually(lambda: store.get(SECRET, "shop", "unreferenced") is not None, what="newly referenced")
        # Changes to a referenced Secret flow (rotation).
        fake_kube.update(secret("shop", "keys", k="Yg=="))
        await eventually(lambda: store.get(SECRET, "shop", "keys")["data"]["k"] == "Yg==", what="rotation")
        # Dropping the reference forgets the Secret and stops its watch.
        fake_kube.delete("APIEndpoint", "shop", "b")
        await eventually(lambda: store.get(SECRET, "shop", "unreferenced") is None, what="unreferenced dropped")
        assert ("shop", "unreferenced") not in source.watched_secrets
        # A referenced Secret that is deleted goes; recreated, it comes back.
        fake_kube.delete("Secret", "shop", "keys")
        await eventually(lambda: store.get(SECRET, "shop", "keys") is None, what="deleted")
        fake_kube.create(secret("shop", "keys", k="Yw=="))
        await eventually(lambda: store.get(SECRET, "shop", "keys") is not None, what="recreated")
        assert store.get(SECRET, "web", "nginx-cert") is None

    # Never an unfiltered Secret list or watch.
    secret_requests = [q for m, p, q in fake_kube.requests if p.endswith("/secrets")]
    assert secret_requests
    for q in secret_requests:
        assert q.get("fieldSelector", "").startswith("metadata.name=") or q.get("labelSelector") == "crdgate.io/default-auth"


async def test_secret_both_named_and_labelled_stays_while_either_holds_it(fake_kube, kube_api):
    fake_kube.create(secret("shop", "both", labels={"crdgate.io/default-auth": "APIKey"}))
    fake_kube.create(apiendpoint("shop", "a", auth={"type": "APIKey", "secretRef": {"name": "both"}}))
    store = Store()
    async with running(KubeSource(store, kube_api, **FAST).run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        assert store.get(SECRET, "shop", "both") is not None
        # The label goes: the label watch reports DELETED, but the route still names it.
        fake_kube.update(secret("shop", "both", k="YQ=="))
        await eventually(lambda: (store.get(SECRET, "shop", "both") or {}).get("data") == {"k": "YQ=="},
                         what="update seen")
        await eventually(lambda: len([1 for q in fake_kube.watch_requests("secrets")]) >= 2, what="both watches")
        assert store.get(SECRET, "shop", "both") is not None
        # The reference goes too: now it is gone.
        fake_kube.delete("APIEndpoint", "shop", "a")
        await eventually(lambda: store.get(SECRET, "shop", "both") is None, what="dropped")


async def test_namespace_scope_limits_secret_watches(fake_kube, kube_api):
    fake_kube.create(secret("shop", "keys"))
    fake_kube.create(secret("elsewhere", "keys"))
    fake_kube.create(secret("crdgate-system", "gateway-default"))
    fake_kube.create(apiendpoint("shop", "a", auth={"type": "APIKey", "secretRef": {"name": "keys"}}))
    fake_kube.create(apiendpoint("shop", "b", auth={"type": "APIKey",
                                                    "secretRef": {"name": "keys", "namespace": "elsewhere"}}))
    store = Store()
    source = KubeSource(store, kube_api, namespaces=["shop"], default_secrets=[("crdgate-system", "gateway-default")],
                        **FAST)
    async with running(source.run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        assert sorted(store.keys(SECRET)) == ["crdgate-system/gateway-default", "shop/keys"]
        assert source.watched_secrets == {("shop", "keys"), ("crdgate-system", "gateway-default")}
    assert not [p for m, p, q in fake_kube.requests if "/namespaces/elsewhere/" in p]


def test_kind_feed_keeps_an_object_another_part_still_has():
    from controller.kube import KindFeed

    store = Store()
    feed = KindFeed(store, SECRET)
    by_label, by_name = feed.expect("label:*"), feed.expect("shop/both")
    obj = secret("shop", "both", labels={"crdgate.io/default-auth": "APIKey"})
    by_label.replace([obj])
    assert not store.synced([SECRET])  # waits for every expected part
    by_name.replace([obj])
    assert store.synced([SECRET]) and store.get(SECRET, "shop", "both") is not None

    unlabelled = secret("shop", "both")
    by_name.apply("MODIFIED", unlabelled)
    by_label.apply("DELETED", obj)  # left the label selector
    assert store.get(SECRET, "shop", "both") == unlabelled
    by_name.apply("DELETED", unlabelled)
    assert store.get(SECRET, "shop", "both") is None


def test_kind_feed_relist_of_one_part_keeps_the_others():
    from controller.kube import KindFeed

    store = Store()
    feed = KindFeed(store, APIENDPOINT)
    a, b = feed.expect("a"), feed.expect("b")
    a.replace([apiendpoint("a", "one"), apiendpoint("a", "two")])
    b.replace([apiendpoint("b", "three")])
    a.replace([apiendpoint("a", "two")])  # relist after 410: "one" vanished
    assert sorted(store.keys(APIENDPOINT)) == ["a/two", "b/three"]
    feed.drop("b")
    assert store.keys(APIENDPOINT) == ["a/two"]


def test_reference_index_follows_object_changes_like_a_full_scan():
    # KubeSource keeps the referenced Secrets up to date object by object; after
    # any sequence of changes it must name what a scan of every object names.
    import random

    from controller.kube import SecretReferences
    from controller.store import INGRESS, INGRESSCLASS

    rng = random.Random(7)
    store = Store()
    refs = SecretReferences(store)

    def random_object() -> tuple[str, dict]:
        name = f"r{rng.randint(0, 5)}"
        if rng.random() < 0.5:
            spec: dict = {}
            if rng.random() < 0.6:
                spec["auth"] = {"type": "APIKey", "secretRef": {"name": rng.choice(["k1", "k2"])}}
            if rng.random() < 0.3:
                spec["tls"] = {"secretName": rng.choice(["c1", "c2"])}
            return APIENDPOINT, apiendpoint("shop", name, **spec)
        annotations = {"crdgate.io/auth-secret": rng.choice(["k1", "auth/k3"])} if rng.random() < 0.5 else None
        return INGRESS, ingress("web", name, class_name=rng.choice(["crdgate", None, "nginx"]),
                                tls=rng.sample(["c1", "c3"], rng.randint(0, 2)), annotations=annotations)

    default_class = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                     "metadata": {"name": "crdgate", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}}}
    for _ in range(300):
        r = rng.random()
        if r < 0.1:
            store.apply(INGRESSCLASS, rng.choice(["ADDED", "DELETED"]), default_class)
            refs.changed(INGRESSCLASS, ["/crdgate"])
        else:
            kind, obj = random_object()
            store.apply(kind, "DELETED" if r < 0.3 else "MODIFIED", obj)
            refs.changed(kind, [f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"])
        if rng.random() < 0.3:
            assert refs.current() == referenced_secrets(store)
    assert refs.current() == referenced_secrets(store)
