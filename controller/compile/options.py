"""What a compile is told from outside: the gateway's class and the auth defaults.

Neighbours: built once by the command line (or a test) and handed to the full
compile (full.py) and the incremental driver (incremental.py); the per-object
steps read it through their context (context.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.authbuild import NO_DEFAULTS, AuthDefaults


@dataclass(frozen=True)
class CompileOptions:
    ingress_class: str = "crdgate"
    controller_name: str = "crdgate.io/gateway"
    # --gateway-controller-name: the GatewayClass controllerName whose Gateways are ours.
    gateway_controller_name: str = "crdgate.io/gateway-controller"
    auth_defaults: AuthDefaults = NO_DEFAULTS  # what authRequired means with no namespace default
    # --allow-cross-namespace-refs: any route may use any namespace's Services and
    # Secrets without a ReferenceGrant (single-tenant clusters only).
    allow_cross_namespace_refs: bool = False
    # The namespace the gateway pod runs in ("" outside a cluster): its DNS search
    # list resolves a single-label host there, so a URL backend "http://NAME"
    # reaches that namespace's Service NAME and needs a grant like any reference.
    search_namespace: str = ""
