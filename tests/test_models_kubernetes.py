"""The Kubernetes kinds are read leniently: unknown fields ignored, nulls tolerated."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from controller.models import EndpointSlice, Ingress, IngressClass, Service, describe_errors


def test_ingress_ignores_fields_kubernetes_adds():
    ing = Ingress.model_validate(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u", "managedFields": [{}], "resourceVersion": "7"},
            "spec": {
                "ingressClassName": "crdgate",
                "defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
                "rules": [{"host": "shop.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"name": "http"}}}}
                ]}}],
                "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
                "somethingNew": True,
            },
            "status": {"loadBalancer": {}},
        }
    )
    assert ing.spec.rules[0].http.paths[0].backend.service.port.name == "http"
    assert ing.spec.default_backend.service.port.number == 80
    assert ing.spec.tls[0].secret_name == "shop-tls"


def test_ingress_path_type_is_required_and_named():
    with pytest.raises(ValidationError) as info:
        Ingress.model_validate({"metadata": {"name": "x"}, "spec": {"rules": [{"http": {"paths": [{"path": "/", "backend": {}}]}}]}})
    assert describe_errors(info.value, "") == ["spec.rules[0].http.paths[0].pathType: required field is missing"]


def test_service_ports_int_or_string_target_and_external_name():
    svc = Service.model_validate(
        {"metadata": {"name": "a"}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web"}, {"port": 81, "targetPort": 9000}]}}
    )
    assert [p.target_port for p in svc.spec.ports] == ["web", 9000]
    ext = Service.model_validate({"metadata": {"name": "b"}, "spec": {"type": "ExternalName", "externalName": "api.example.net"}})
    assert ext.spec.type == "ExternalName" and ext.spec.external_name == "api.example.net" and ext.spec.ports == []


def test_endpointslice_nulls_and_ready_condition():
    eps = EndpointSlice.model_validate(
        {
            "metadata": {"name": "a-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "a"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {}}, {"addresses": ["10.0.0.2"], "conditions": {"ready": False, "terminating": True}}],
            "ports": None,
        }
    )
    assert eps.service_name == "a"
    assert eps.ports == []
    assert eps.endpoints[0].conditions.ready is None  # nil means ready, decided by the compiler
    assert eps.endpoints[1].conditions.terminating is True


def test_ingress_class_default_annotation():
    ic = IngressClass.model_validate(
        {"metadata": {"name": "crdgate", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}}, "spec": {"controller": "crdgate.io/gateway"}}
    )
    assert ic.is_default and ic.spec.controller == "crdgate.io/gateway"
    assert not IngressClass.model_validate({"metadata": {"name": "x"}, "spec": {}}).is_default
