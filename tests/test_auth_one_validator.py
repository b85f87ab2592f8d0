"""auth has one validator (controller/models.py AuthSpec): an APIEndpoint's field
and an Ingress's crdgate.io/auth-* annotations get the same verdict and message."""

import pytest

from controller.authbuild import build_auth, build_ingress_auth
from controller.compile import compile_snapshot
from controller.store import SECRET, Snapshot
from kobjects import apiendpoint, ingress, service, snapshot


@pytest.mark.parametrize(
    "field, annotation, spec_value, annotation_value",
    [
        ("header", "crdgate.io/auth-header", "bad header", "bad header"),
        ("header", "crdgate.io/auth-header", "Host", "Host"),
        ("consumerHeader", "crdgate.io/auth-consumer-header", "Authorization", "Authorization"),
        ("queryParam", "crdgate.io/auth-query-param", "a=b", "a=b"),
    ],
)
def test_ingress_annotation_and_apiendpoint_field_share_the_message(field, annotation, spec_value, annotation_value):
    spec = {"path": "/a", "backendService": "s", "auth": {"type": "APIKey", "secretRef": {"name": "keys"}, field: spec_value}}
    ann = {"crdgate.io/auth-type": "APIKey", "crdgate.io/auth-secret": "keys", annotation: annotation_value}
    result = compile_snapshot(snapshot(apiendpoint("a", spec), ingress("i", {"defaultBackend": {"service": {"name": "s", "port": {"number": 80}}}}, annotations=ann), service("s")))
    by_field = result.statuses["APIEndpoint:shop/a"]
    by_annotation = result.statuses["Ingress:shop/i"]
    assert by_field.reason == by_annotation.reason == "InvalidSpec"
    assert by_field.message.startswith(f"spec.auth.{field}: ")
    assert by_annotation.message.startswith(f"metadata.annotations[{annotation}]: ")
    assert by_field.message.partition(": ")[2] == by_annotation.message.partition(": ")[2]


def test_an_annotation_secret_name_is_checked_like_the_field():
    # The old annotation path took any non-empty name and only later found no such Secret.
    _, err = build_ingress_auth({"crdgate.io/auth-type": "APIKey", "crdgate.io/auth-secret": "Not_A_Name"}, "shop", Snapshot({SECRET: {}}))
    assert err[0] == "InvalidSpec"
    assert err[1] == "metadata.annotations[crdgate.io/auth-secret]: Secret name 'Not_A_Name' is not a valid object name"


def test_a_plain_mapping_goes_through_the_same_model():
    _, err = build_auth({"type": "APIKey", "secretRef": {"name": "k"}, "header": "bad header"}, False, "shop", Snapshot({SECRET: {}}))
    assert err == ("InvalidSpec", "spec.auth.header: 'bad header' is not a valid HTTP token (letters, digits and !#$%&'*+-.^_`|~)")


def test_annotation_auth_type_is_accepted_in_any_case():
    ann = {"crdgate.io/auth-type": "apikey", "crdgate.io/auth-secret": "keys"}
    _, err = build_ingress_auth(ann, "shop", Snapshot({SECRET: {}}))
    assert err == ("SecretNotFound", "Secret shop/keys not found (metadata.annotations[crdgate.io/auth-secret])")
