"""The manifests folder: what each file gives, with the API server's defaults."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from controller.files import ManifestSource, load_folder
from controller.manifestdoc import EPOCH
from controller.store import KINDS, Store

USERS_EP = """\
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: list-users, namespace: shop}
spec: {path: /api/v1/users, method: GET, backendService: users}
"""
USERS_SVC = """\
apiVersion: v1
kind: Service
metadata: {name: users, namespace: shop}
spec: {ports: [{port: 80}]}
"""


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_multi_document_yaml_gives_each_known_object_with_its_origin(tmp_path):
    write(tmp_path, "shop.yaml", USERS_EP + "---\n" + USERS_SVC + "---\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")
    objects, origins, errors = load_folder(tmp_path)
    assert errors == []
    assert list(objects["APIEndpoint"]) == ["shop/list-users"]
    assert list(objects["Service"]) == ["shop/users"]
    assert list(objects["Namespace"]) == ["/shop"]  # cluster-scoped (its labels select Gateway API routes)
    assert origins == {
        "APIEndpoint:shop/list-users": f"{tmp_path}/shop.yaml#0",
        "Service:shop/users": f"{tmp_path}/shop.yaml#1",
        "Namespace:/shop": f"{tmp_path}/shop.yaml#3",
    }
    assert set(objects) == set(KINDS)


def test_json_object_and_v1_list(tmp_path):
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "x"}, "spec": {}}
    svc_b = {**svc, "metadata": {"name": "b", "namespace": "x"}}
    write(tmp_path, "one.json", json.dumps(svc))
    write(tmp_path, "list.json", json.dumps({"apiVersion": "v1", "kind": "List", "items": [svc_b]}))
    objects, origins, errors = load_folder(tmp_path)
    assert errors == []
    assert sorted(objects["Service"]) == ["x/a", "x/b"]
    assert origins["Service:x/b"] == f"{tmp_path}/list.json#0.items[0]"


def test_yaml_kind_list_items(tmp_path):
    write(
        tmp_path,
        "dump.yaml",
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: v1, kind: Service, metadata: {name: a, namespace: x}}\n"
        "- {apiVersion: crdgate.io/v1, kind: APIEndpoint, metadata: {name: r, namespace: x}, spec: {path: /}}\n",
    )
    objects, _, errors = load_folder(tmp_path)
    assert errors == []
    assert list(objects["Service"]) == ["x/a"] and list(objects["APIEndpoint"]) == ["x/r"]


def test_defaults_the_api_server_would_set(tmp_path):
    write(
        tmp_path,
        "a.yaml",
        USERS_EP.replace("namespace: shop", "namespace: shop, creationTimestamp: 2024-05-01T10:00:00Z")
        + "---\napiVersion: v1\nkind: Service\nmetadata: {name: nons}\n"
        + "---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: crdgate, namespace: ignored}\n",
    )
    objects, _, errors = load_folder(tmp_path)
    assert errors == []
    ep = objects["APIEndpoint"]["shop/list-users"]["metadata"]
    # A YAML timestamp stays the string the API server would hold, not a datetime.
    assert ep["creationTimestamp"] == "2024-05-01T10:00:00Z"
    assert ep["generation"] == 1
    svc = objects["Service"]["default/nons"]["metadata"]
    assert svc["namespace"] == "default" and svc["creationTimestamp"] == EPOCH
    assert list(objects["IngressClass"]) == ["/crdgate"]
    assert objects["IngressClass"]["/crdgate"]["metadata"]["namespace"] == ""


def test_uid_is_stable_and_resource_version_follows_content(tmp_path):
    p = write(tmp_path, "a.yaml", USERS_EP)
    first = load_folder(tmp_path)[0]["APIEndpoint"]["shop/list-users"]["metadata"]
    again = load_folder(tmp_path)[0]["APIEndpoint"]["shop/list-users"]["metadata"]
    assert (first["uid"], first["resourceVersion"]) == (again["uid"], again["resourceVersion"])
    p.write_text(USERS_EP.replace("/api/v1/users", "/api/v2/users"))
    edited = load_folder(tmp_path)[0]["APIEndpoint"]["shop/list-users"]["metadata"]
    assert edited["uid"] == first["uid"]
    assert edited["resourceVersion"] != first["resourceVersion"]


def test_secret_string_data_becomes_base64_data(tmp_path):
    write(
        tmp_path,
        "s.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: keys, namespace: shop}\n"
        "data: {old: b2xk, both: eA==}\nstringData: {both: winner, key: s3cret}\n",
    )
    objects, _, errors = load_folder(tmp_path)
    assert errors == []
    secret = objects["Secret"]["shop/keys"]
    assert "stringData" not in secret
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {"old": "old", "both": "winner", "key": "s3cret"}


def test_hidden_temp_and_other_files_are_skipped(tmp_path):
    write(tmp_path, "real.yml", USERS_SVC)
    for rel in (".hidden.yaml", ".git/x.yaml", ".#real.yml", "real.yml~", "real.yml.swp", "notes.txt", "#real.yml#"):
        write(tmp_path, rel, USERS_SVC.replace("name: users", "name: other"))
    write(tmp_path, "deep/er/more.yaml", USERS_SVC.replace("name: users", "name: deep"))
    objects, _, errors = load_folder(tmp_path)
    assert errors == []
    assert sorted(objects["Service"]) == ["shop/deep", "shop/users"]


def test_a_single_file_can_be_the_root(tmp_path):
    p = write(tmp_path, "only.yaml", USERS_SVC)
    write(tmp_path, "not-me.yaml", USERS_EP)
    objects, origins, errors = load_folder(p)
    assert errors == [] and list(objects["Service"]) == ["shop/users"] and not objects["APIEndpoint"]
    assert origins["Service:shop/users"] == f"{p}#0"


def test_first_load_feeds_every_kind_so_the_store_is_synced(tmp_path):
    write(tmp_path, "a.yaml", USERS_SVC)
    store = Store()
    source = ManifestSource(store, tmp_path)
    assert not store.synced()
    source.load()
    assert store.synced()
    assert store.keys("Service") == ["shop/users"]
    snap = store.snapshot()
    assert snap.origins["Service:shop/users"] == f"{tmp_path}/a.yaml#0"


def test_reload_without_changes_leaves_the_store_alone(tmp_path):
    write(tmp_path, "a.yaml", USERS_SVC)
    store = Store()
    source = ManifestSource(store, tmp_path)
    source.load()
    version = store.version
    source.load()
    assert store.version == version
    write(tmp_path, "b.yaml", USERS_EP)
    source.load()
    assert store.version > version
    assert store.keys("APIEndpoint") == ["shop/list-users"]


class _Recorder(Store):
    """A Store that records which keys each update hands it."""

    def __init__(self):
        super().__init__()
        self.updates: list[tuple[str, set[str], list[str]]] = []

    def update(self, kind, upserts, deletes=(), origins=None):
        self.updates.append((kind, set(upserts), list(deletes)))
        super().update(kind, upserts, deletes, origins)


def test_an_edited_file_hands_only_its_own_objects_to_the_store(tmp_path):
    for i in range(5):
        write(tmp_path, f"f{i}.yaml", USERS_EP.replace("list-users", f"ep-{i}"))
    store = _Recorder()
    source = ManifestSource(store, tmp_path)
    source.load()
    write(tmp_path, "f3.yaml", USERS_EP.replace("list-users", "ep-3").replace("GET", "POST"))
    source.load()
    assert store.updates == [("APIEndpoint", {"shop/ep-3"}, [])]
    assert store.get("APIEndpoint", "shop", "ep-3")["spec"]["method"] == "POST"
    (tmp_path / "f1.yaml").unlink()
    source.load()
    assert store.updates[-1] == ("APIEndpoint", set(), ["shop/ep-1"])
    assert sorted(store.keys("APIEndpoint")) == ["shop/ep-0", "shop/ep-2", "shop/ep-3", "shop/ep-4"]


def test_when_the_first_definition_goes_the_duplicate_takes_over(tmp_path):
    write(tmp_path, "a.yaml", USERS_EP)
    write(tmp_path, "b.yaml", USERS_EP.replace("GET", "DELETE"))
    store = Store()
    source = ManifestSource(store, tmp_path)
    source.load()
    assert store.get("APIEndpoint", "shop", "list-users")["spec"]["method"] == "GET"
    assert [e.message.split(":")[0] for e in source.errors] == ["duplicate APIEndpoint shop/list-users"]
    (tmp_path / "a.yaml").unlink()
    source.load()
    assert store.get("APIEndpoint", "shop", "list-users")["spec"]["method"] == "DELETE"
    assert store.snapshot().origins["APIEndpoint:shop/list-users"] == f"{tmp_path}/b.yaml#0"
    assert source.errors == ()
