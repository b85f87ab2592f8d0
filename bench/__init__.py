"""The crdgate load benchmark (`crdgate bench`, `python -m bench`).

It measures crdgate against nginx (a 1-worker reverse proxy with upstream
keep-alive) and against the backend reached directly, in the same run, with
wrk as the load generator. Modules, in the order a run uses them:

- ``tools``      find wrk / nginx / redis-server / taskset; say what to install
- ``pinning``    which CPU each process gets
- ``backends``   the fast identity-echoing backend (nginx, or a uvloop fallback)
- ``nginx``      nginx config rendering and the process wrapper
- ``manifests``  the APIEndpoint / Secret files each scenario writes
- ``gateway``    starting crdgate and waiting for /readyz
- ``wrk``        running wrk with a generated Lua script, parsing its JSON line
- ``scenarios``  the scenarios themselves (load, churn, propagation)
- ``lookup``     the in-process RouteTable.match microbenchmark
- ``report``     the table, the JSON document and the PNG chart
- ``__main__``   the command line

Run on their own: ``kubeprop`` (watch event -> served, through the Kubernetes
source), ``compiletime`` (full and incremental compile in process), ``tls``.
"""
