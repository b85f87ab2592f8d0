"""crdgate's data plane and front door (see README.md, Architecture)."""

from gateway import _native

# Before anything imports the proxy core: compiled modules, or their source when
# those are missing, stale or turned off (gateway/_native.py).
_native.select()
