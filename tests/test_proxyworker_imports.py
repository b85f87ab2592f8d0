"""A ``--workers`` proxy process never loads the controller or the Kubernetes client.

A fresh interpreter does what the spawned worker does: import the entry
point (crdgate/proxyworker.py), unpickle its WorkerSpec, unpickle and apply a
whole table (the bundled examples: API keys, a Secret's digests, several
backends) and an update; then it lists the modules loaded. Unpickling imports
the module of every class it meets, so a controller type inside the spec or
the table would show here.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

from test_compile_examples import compiled

from crdgate.config import Config, ManifestsSource
from crdgate.workers import worker_spec
from gateway.tablewire import TableEncoder

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import pickle, sys
from crdgate import proxyworker
from gateway.tablewire import TableDecoder, load

spec, frames = pickle.loads(sys.stdin.buffer.read())
assert isinstance(spec, proxyworker.WorkerSpec)
decoder = TableDecoder()
for data in frames:
    decoder.apply(load(data[4:]))
assert len(decoder.table) > 0 and decoder.table.generation == 2
roots = ("controller", "kubernetes_asyncio", "kubernetes")
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in roots)) or "-")
"""


def test_a_worker_loads_no_controller_module():
    config = Config(source=ManifestsSource(ROOT / "deploy" / "examples"), workers=2)
    spec = worker_spec(config, 0, "/tmp/nowhere.sock")
    table = compiled().table
    assert any(r.policy.auth is not None for r in table.routes)  # credentials travel too
    encoder = TableEncoder()
    encoder.update(table)
    first = encoder.snapshot()
    update = encoder.update(table.with_endpoints(table.endpoints, 2))
    out = subprocess.run([sys.executable, "-c", CHILD], input=pickle.dumps((spec, [first, update])), cwd=ROOT,
                         capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().strip() == "-"
