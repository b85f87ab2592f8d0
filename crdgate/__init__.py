"""crdgate's front door: the command line, one frozen Config, and the wiring of a process.

The composition root: the only package that imports both the controller
(controller/: sources, store, compiler, status) and the data plane (gateway/:
the proxy), and joins them. Neither imports it.
"""
