"""A file caught half written (truncated, then written) never drops its objects meanwhile."""

from controller.files import ManifestSource
from controller.store import APIENDPOINT, Store

DOC = """
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: a, namespace: shop}
spec: {path: /a, backendService: svc}
---
apiVersion: crdgate.io/v1
kind: APIEndpoint
metadata: {name: b, namespace: shop}
spec: {path: /b, backendService: svc}
"""


def test_truncated_file_keeps_objects_until_it_settles(tmp_path):
    f = tmp_path / "routes.yaml"
    f.write_text(DOC)
    store = Store()
    src = ManifestSource(store, tmp_path)
    src.load()
    assert sorted(store.keys(APIENDPOINT)) == ["shop/a", "shop/b"]

    f.write_text("")  # the truncate of a non-atomic rewrite
    src._rescan(())
    src._publish()
    assert sorted(store.keys(APIENDPOINT)) == ["shop/a", "shop/b"], "a just-written file must not drop objects at once"

    f.write_text(DOC.split("---")[0])  # half the content, still young
    src._rescan(())
    src._publish()
    assert sorted(store.keys(APIENDPOINT)) == ["shop/a", "shop/b"]

    # Settled: what the file says now is what counts.
    src._rescan((), True)
    src._publish()
    assert sorted(store.keys(APIENDPOINT)) == ["shop/a"]


def test_additions_apply_at_once(tmp_path):
    f = tmp_path / "routes.yaml"
    f.write_text(DOC.split("---")[0])
    store = Store()
    src = ManifestSource(store, tmp_path)
    src.load()
    f.write_text(DOC)
    src._rescan(())
    src._publish()
    assert sorted(store.keys(APIENDPOINT)) == ["shop/a", "shop/b"]
