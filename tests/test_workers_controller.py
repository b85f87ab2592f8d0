"""The --workers controller without processes: who gets which frame, when /readyz says ready, merged metrics."""

from __future__ import annotations

import pickle
import socket
from types import SimpleNamespace

import pytest

from crdgate import workers
from crdgate.config import Config, ManifestsSource
from gateway.routing import BackendRef, Endpoint, EndpointSet, Route, RouteTable
from gateway.tablewire import TABLE, UPDATE


class FakeWriter:
    def __init__(self):
        self.frames: list[tuple] = []
        self.transport = SimpleNamespace(get_write_buffer_size=lambda: 0)

    def write(self, data: bytes) -> None:
        self.frames.append(pickle.loads(data[4:]))

    def is_closing(self) -> bool:
        return False


class Alive:
    def is_alive(self) -> bool:
        return True


@pytest.fixture
def sup(tmp_path):
    s = workers.Supervisor(Config(source=ManifestsSource(tmp_path), workers=2))
    yield s
    s.cleanup()


def join(sup: workers.Supervisor, i: int) -> FakeWriter:
    """Worker ``i`` as start_worker leaves it, with a writer that records frames."""
    link = workers.WorkerLink(i, socket.socket())
    link.sock.close()
    link.writer = FakeWriter()
    sup.procs[i], sup.links[i] = Alive(), link
    sup._feed(link, None)
    return link.writer


def table(generation: int, *paths: str, port: int = 9) -> RouteTable:
    routes = [Route(name=f"ns/{p}", kind="APIEndpoint", path=f"/{p}", backends=(BackendRef("ns/s:80"),)) for p in paths]
    return RouteTable(routes, endpoints={"ns/s:80": EndpointSet("ns/s:80", (Endpoint("127.0.0.1", port),))},
                      generation=generation)


def applied(sup: workers.Supervisor, i: int, generation: int) -> None:
    link = sup.links[i]
    link.applied = generation
    while link.unapplied and link.unapplied[0][0] <= generation:
        link.unapplied.popleft()


def test_a_worker_gets_the_whole_table_once_then_updates(sup):
    first = join(sup, 0)
    assert first.frames == []  # nothing compiled yet
    t1 = table(1, "a", "b")
    sup.publish(SimpleNamespace(table=t1))
    assert [f[0] for f in first.frames] == [TABLE]
    t2 = t1.updated([], [Route(name="ns/c", kind="APIEndpoint", path="/c")], endpoints=t1.endpoints, fallback=None,
                    generation=2)
    sup.publish(SimpleNamespace(table=t2))
    assert [f[0] for f in first.frames] == [TABLE, UPDATE]
    assert [r.name for _, r in first.frames[1][3]] == ["ns/c"]  # only the new route travels
    late = join(sup, 1)  # a worker (re)started now: the table as it is now, whole
    assert [f[0] for f in late.frames] == [TABLE] and late.frames[0][1] == 2
    assert sorted(r.name for _, r in late.frames[0][2]) == ["ns/a", "ns/b", "ns/c"]


def test_ready_when_every_worker_serves_and_none_lags(sup, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(workers.time, "monotonic", lambda: now[0])
    join(sup, 0)
    join(sup, 1)
    assert sup.ready() == (False, 0)  # no table yet
    sup.publish(SimpleNamespace(table=table(1, "a")))
    assert sup.ready() == (False, 0)  # sent, applied by none yet
    applied(sup, 0, 1)
    assert sup.ready() == (False, 1)  # worker 1 has never served a table
    applied(sup, 1, 1)
    assert sup.ready() == (True, 2)
    sup.publish(SimpleNamespace(table=table(2, "a", port=10)))
    now[0] += workers.LAG_GRACE - 1
    assert sup.ready() == (True, 2)  # an update on its way
    applied(sup, 0, 2)
    now[0] += 2
    assert sup.ready() == (False, 1)  # worker 1 sat on generation 2 for longer than the grace
    applied(sup, 1, 2)
    assert sup.ready() == (True, 2)
    sup.stopping = True
    assert sup.ready() == (False, 0)


def test_metrics_merge_labels_workers_and_keeps_the_controllers_own():
    worker = ('# HELP crdgate_requests_total Requests.\n# TYPE crdgate_requests_total counter\n'
              'crdgate_requests_total{route="ns/a"} 3.0\n'
              '# HELP crdgate_leader Leader.\n# TYPE crdgate_leader gauge\ncrdgate_leader 0.0\n')
    controller = ('# HELP crdgate_leader Leader.\n# TYPE crdgate_leader gauge\ncrdgate_leader 1.0\n'
                  '# HELP crdgate_requests_total Requests.\n# TYPE crdgate_requests_total counter\n'
                  '# HELP process_resident_memory_bytes RSS.\n# TYPE process_resident_memory_bytes gauge\n'
                  'process_resident_memory_bytes 1e+08\n')
    text = workers.merge_metrics([("0", worker), ("1", worker)], controller)
    lines = set(text.splitlines())
    assert 'crdgate_requests_total{route="ns/a",worker="0"} 3.0' in lines
    assert 'crdgate_requests_total{route="ns/a",worker="1"} 3.0' in lines
    assert "crdgate_leader 1.0" in lines and not any(line.startswith("crdgate_leader{") for line in lines)
    assert 'process_resident_memory_bytes{worker="controller"} 100000000.0' in lines
