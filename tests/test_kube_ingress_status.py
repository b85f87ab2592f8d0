"""The leader writes the gateway's address into status.loadBalancer of its own Ingresses only."""

from __future__ import annotations

from fakekube import eventually, fake_kube, ingress, kube_api, running, service  # noqa: F401

from controller.kube import KubeSource
from controller.status import StatusWriter, load_balancer_entries, service_addresses
from controller.store import KINDS, Store

FAST = dict(timeout_seconds=30, backoff_base=0.05, backoff_cap=0.2, min_watch_seconds=0.0)


def lb(fake, ns: str, name: str) -> list:
    return ((fake.get("Ingress", ns, name).get("status") or {}).get("loadBalancer") or {}).get("ingress")


def status_patches(fake) -> list:
    return [p for m, p, q in fake.requests if m == "PATCH" and p.endswith("/status")]


async def test_publish_address_goes_to_our_ingresses_only(fake_kube, kube_api):
    fake_kube.create(ingress("web", "ours"))
    fake_kube.create(ingress("web", "legacy", class_name=None, annotations={"kubernetes.io/ingress.class": "crdgate"}))
    fake_kube.create(ingress("web", "theirs", class_name="nginx"))
    fake_kube.create(ingress("web", "classless", class_name=None))
    store = Store()
    writer = StatusWriter(kube_api, None, store=store, publish_addresses=["203.0.113.7", "gw.example.com"])
    async with running(KubeSource(store, kube_api, **FAST).run()), running(writer.run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        writer.submit({})  # what the publisher does after each compile
        want = [{"ip": "203.0.113.7"}, {"hostname": "gw.example.com"}]
        await eventually(lambda: lb(fake_kube, "web", "ours") == want, what="ours published")
        await eventually(lambda: lb(fake_kube, "web", "legacy") == want, what="legacy annotation published")
        await eventually(lambda: writer.idle, what="idle")
        assert lb(fake_kube, "web", "theirs") is None
        assert lb(fake_kube, "web", "classless") is None
        assert len(status_patches(fake_kube)) == 2

        # Unchanged: no more writes, however often the publisher calls.
        await eventually(lambda: store.get("Ingress", "web", "ours").get("status"), what="cache caught up")
        writer.submit({})
        writer.submit({})
        await eventually(lambda: writer.idle, what="idle")
        assert len(status_patches(fake_kube)) == 2

        # A new Ingress of ours gets it too.
        fake_kube.create(ingress("web", "new"))
        await eventually(lambda: store.get("Ingress", "web", "new") is not None, what="new ingress cached")
        writer.submit({})
        await eventually(lambda: lb(fake_kube, "web", "new") == want, what="new ingress published")


async def test_publish_service_address(fake_kube, kube_api):
    fake_kube.create(ingress("web", "ours"))
    svc = service("crdgate-system", "crdgate", type="LoadBalancer")
    fake_kube.create(svc)
    fake_kube.set_status("Service", "crdgate-system", "crdgate",
                         {"loadBalancer": {"ingress": [{"hostname": "lb-123.elb.example.com"}]}})
    store = Store()
    writer = StatusWriter(kube_api, None, store=store, publish_service=("crdgate-system", "crdgate"))
    async with running(KubeSource(store, kube_api, namespaces=["web"], publish_service=("crdgate-system", "crdgate"),
                                  **FAST).run()), running(writer.run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        assert store.get("Service", "crdgate-system", "crdgate") is not None  # watched though outside "web"
        writer.submit({})
        await eventually(lambda: lb(fake_kube, "web", "ours") == [{"hostname": "lb-123.elb.example.com"}],
                         what="service address published")


def test_service_addresses_by_type():
    lb_svc = {"spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.9"},
              "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}, {"hostname": "a.example"}]}}}
    assert service_addresses(lb_svc) == ["198.51.100.1", "a.example"]
    assert service_addresses({"spec": {"type": "ClusterIP", "clusterIP": "10.0.0.9"}}) == ["10.0.0.9"]
    assert service_addresses({"spec": {"type": "ClusterIP", "clusterIP": "None"}}) == []
    assert service_addresses({"spec": {"type": "ExternalName", "externalName": "x.example"}}) == ["x.example"]
    assert service_addresses({"spec": {"type": "NodePort", "externalIPs": ["192.0.2.5"], "clusterIP": "10.0.0.1"}}) == ["192.0.2.5"]
    assert service_addresses({"spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1"}}) == []  # not provisioned yet
    assert load_balancer_entries(["2001:db8::1", "h.example"]) == [{"ip": "2001:db8::1"}, {"hostname": "h.example"}]


async def set_class(fake, store: Store, name: str, class_name: str) -> None:
    """A user's edit of the Ingress's class, once the watch has brought it to the cache."""
    obj = fake.get("Ingress", "web", name)
    obj["spec"]["ingressClassName"] = class_name
    fake.update(obj)
    await eventually(lambda: store.get("Ingress", "web", name)["spec"]["ingressClassName"] == class_name,
                     what=f"class {class_name} cached")


async def test_an_ingress_leaving_our_class_gets_its_address_back_only_if_it_shows_ours(fake_kube, kube_api):
    fake_kube.create(ingress("web", "moving"))
    fake_kube.create(ingress("web", "taken"))
    store = Store()
    writer = StatusWriter(kube_api, None, store=store, publish_addresses=["203.0.113.7"])
    want = [{"ip": "203.0.113.7"}]
    async with running(KubeSource(store, kube_api, **FAST).run()), running(writer.run()):
        await eventually(lambda: store.synced(KINDS), what="sync")
        writer.submit({})
        await eventually(lambda: lb(fake_kube, "web", "moving") == want and lb(fake_kube, "web", "taken") == want,
                         what="published")

        # Moved to a class nobody here serves: the address we wrote is removed.
        await set_class(fake_kube, store, "moving", "nginx")
        writer.submit({})
        await eventually(lambda: lb(fake_kube, "web", "moving") == [], what="address released")

        # Moved, and its new controller already wrote its own address: left alone.
        taken = fake_kube.get("Ingress", "web", "taken")
        taken["spec"]["ingressClassName"] = "nginx"
        fake_kube.update(taken)
        fake_kube.set_status("Ingress", "web", "taken", {"loadBalancer": {"ingress": [{"ip": "198.51.100.9"}]}})
        await eventually(lambda: (store.get("Ingress", "web", "taken").get("status") or {}).get("loadBalancer"),
                         what="foreign status cached")
        before = len(status_patches(fake_kube))
        writer.submit({})
        await eventually(lambda: writer.idle, what="idle")
        assert lb(fake_kube, "web", "taken") == [{"ip": "198.51.100.9"}]
        assert lb(fake_kube, "web", "moving") == []
        assert len(status_patches(fake_kube)) == before

        # Back in our class: published again.
        await set_class(fake_kube, store, "moving", "crdgate")
        writer.submit({})
        await eventually(lambda: lb(fake_kube, "web", "moving") == want, what="published again")
