"""Gateway API (gateway.networking.k8s.io/v1, standard channel): models of the kinds crdgate reads.

- ``common``: the field types and references every kind shares;
- ``httproute``: HTTPRoute;
- ``gateway``: Gateway and GatewayClass;
- ``objects``: one entry point, ``parse(kind, obj)``, and the kinds and versions read.

Import the submodules directly; this file holds nothing.
"""
