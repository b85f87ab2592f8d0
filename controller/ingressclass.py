"""Which Ingresses belong to this gateway.

An Ingress is ours when its ``spec.ingressClassName`` names our class, or when
it names no class and either carries the legacy ``kubernetes.io/ingress.class``
annotation with our class, or our IngressClass is marked as the cluster's
default (``ingressclass.kubernetes.io/is-default-class: "true"``).

Read by controller/kube.py (which Secrets an Ingress's TLS makes us cache) and
controller/status.py (which Ingresses get our address in
``status.loadBalancer``). Pure functions over plain API objects.
"""

from __future__ import annotations

from typing import Iterable, Mapping

LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"


def is_default_class(ingress_classes: Iterable[Mapping], class_name: str) -> bool:
    for ic in ingress_classes:
        meta = ic.get("metadata") or {}
        if meta.get("name") == class_name:
            return (meta.get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
    return False


def owns_ingress(ingress: Mapping, class_name: str, default_class: bool) -> bool:
    """``default_class``: our IngressClass is the cluster's default (see ``is_default_class``)."""
    named = (ingress.get("spec") or {}).get("ingressClassName")
    if named:
        return named == class_name
    legacy = ((ingress.get("metadata") or {}).get("annotations") or {}).get(LEGACY_CLASS_ANNOTATION)
    if legacy:
        return legacy == class_name
    return default_class
