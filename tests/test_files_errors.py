"""Bad files: a clear LoadError, and the last good objects keep serving."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from controller.files import ManifestFolderError, ManifestSource, load_folder
from controller.store import Store

SVC = "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{ports: [{{port: {port}}}]}}\n"


def svc(name: str, port: int = 80) -> str:
    return SVC.format(name=name, port=port)


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def loaded(tmp_path):
    store = Store()
    source = ManifestSource(store, tmp_path)
    source.load()
    return store, source


def test_syntax_error_names_file_document_and_line(tmp_path):
    write(tmp_path, "bad.yaml", svc("a") + "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: [b\n")
    _, _, errors = load_folder(tmp_path)
    assert len(errors) == 1
    err = errors[0]
    assert err.path == f"{tmp_path}/bad.yaml"
    assert err.document == 1
    assert err.line is not None and err.line >= 9  # the second document, after the '[' left open
    assert err.message.startswith("YAML:")
    assert str(err).startswith(f"{tmp_path}/bad.yaml:{err.line}:{err.column}: YAML: ")


def test_broken_file_keeps_its_last_good_objects_until_fixed(tmp_path):
    p = write(tmp_path, "a.yaml", svc("users", 80))
    store, source = loaded(tmp_path)
    good = store.get("Service", "shop", "users")
    p.write_text(svc("users", 81) + "  bad: [\n")  # a half-written save
    source.load()
    assert store.get("Service", "shop", "users") is good  # still serving the last good version
    assert [e.path for e in source.errors] == [str(p)]
    p.write_text(svc("users", 81))
    source.load()
    assert source.errors == ()
    assert store.get("Service", "shop", "users")["spec"]["ports"][0]["port"] == 81


def test_file_broken_from_the_start_gives_the_documents_that_loaded(tmp_path):
    write(tmp_path, "a.yaml", svc("one") + "---\n- not\n- a mapping\n---\n" + svc("two"))
    objects, _, errors = load_folder(tmp_path)
    assert sorted(objects["Service"]) == ["shop/one", "shop/two"]
    assert len(errors) == 1 and errors[0].document == 1 and "must be a mapping" in errors[0].message
    assert errors[0].line == 6


@pytest.mark.parametrize(
    "doc, words",
    [
        ("apiVersion: v1\nmetadata: {name: x}\n", "missing kind"),
        ("apiVersion: v1\nkind: Service\nmetadata: {namespace: shop}\n", "metadata.name"),
        ("kind: Service\nmetadata: {name: x}\n", "no apiVersion"),
        ("apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: x}\n", "networking.k8s.io/v1"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: Bad_Name}\n", "metadata.name"),
        ("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {port: 5432}\n", "stringData.port must be a string"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {}\nspec: {}\n", "duplicate key 'spec'"),
    ],
)
def test_envelope_errors_name_the_field(tmp_path, doc, words):
    write(tmp_path, "x.yaml", doc)
    objects, _, errors = load_folder(tmp_path)
    assert len(errors) == 1, errors
    assert words in errors[0].message
    assert not any(objects.values())


def test_json_syntax_error_has_line_and_column(tmp_path):
    write(tmp_path, "x.json", '{"apiVersion": "v1",\n "kind": }')
    _, _, errors = load_folder(tmp_path)
    assert len(errors) == 1
    assert (errors[0].line, errors[0].column) == (2, 10)


def test_duplicates_first_file_in_path_order_wins_and_the_error_names_both(tmp_path):
    write(tmp_path, "b.yaml", svc("users", 2))
    write(tmp_path, "a/z.yaml", svc("users", 1))
    objects, origins, errors = load_folder(tmp_path)
    assert objects["Service"]["shop/users"]["spec"]["ports"][0]["port"] == 1
    assert origins["Service:shop/users"] == f"{tmp_path}/a/z.yaml#0"
    assert len(errors) == 1
    assert errors[0].path == f"{tmp_path}/b.yaml"
    assert f"{tmp_path}/a/z.yaml#0" in errors[0].message and "duplicate Service shop/users" in errors[0].message


def test_deleting_a_file_removes_its_objects(tmp_path):
    write(tmp_path, "keep.yaml", svc("keep"))
    gone = write(tmp_path, "gone.yaml", svc("gone"))
    store, source = loaded(tmp_path)
    assert sorted(store.keys("Service")) == ["shop/gone", "shop/keep"]
    gone.unlink()
    source.load()
    assert store.keys("Service") == ["shop/keep"]
    assert "Service:shop/gone" not in store.snapshot().origins


def test_each_error_is_logged_once_and_cleared_when_fixed(tmp_path, caplog):
    p = write(tmp_path, "a.yaml", "kind: [\n")
    caplog.set_level(logging.INFO, logger="crdgate.controller.files")
    store, source = loaded(tmp_path)
    source.load()
    write(tmp_path, "other.yaml", svc("x"))  # an unrelated change reloads too
    source.load()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(p) in warnings[0].getMessage()
    p.write_text(svc("a"))
    source.load()
    assert source.errors == ()
    assert any("resolved" in r.getMessage() and str(p) in r.getMessage() for r in caplog.records)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ManifestFolderError, match="does not exist"):
        load_folder(tmp_path / "nope")
    with pytest.raises(ManifestFolderError, match=str(tmp_path / "nope")):
        ManifestSource(Store(), tmp_path / "nope").load()
