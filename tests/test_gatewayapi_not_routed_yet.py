"""Gateway API objects are read into the store before the compile routes them: until it does,
they change nothing in the table, in statuses or in `crdgate validate` (which counts them with
the kinds it ignores), and a Gateway API kind does not hold back the first table."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import MappingProxyType

from gatewayapi.cases import MANIFESTS

from controller.compile import CompileOptions, compile_snapshot
from controller.files import load_manifests
from controller.publish import Publisher
from crdgate.report import validate_json, validate_report
from controller.store import GATEWAY, GATEWAYCLASS, HTTPROUTE, KINDS, NAMESPACE, Snapshot, Store
from gateway.tablejson import table_to_json

EXAMPLES = Path(__file__).resolve().parent.parent / "deploy" / "examples"
GATEWAY_API_KINDS = (GATEWAYCLASS, GATEWAY, HTTPROUTE, NAMESPACE)


def snapshot(objects: dict) -> Snapshot:
    return Snapshot(objects=MappingProxyType({k: MappingProxyType(v) for k, v in objects.items()}))


def examples_with(extra_kinds=()) -> dict:
    objects = {k: dict(v) for k, v in load_manifests(EXAMPLES).objects.items()}
    corpus = load_manifests(MANIFESTS).objects
    for kind in extra_kinds:
        objects[kind].update(corpus[kind])
    return objects


def compiled(objects: dict):
    result = compile_snapshot(snapshot(objects), CompileOptions())
    return table_to_json(result.table), dict(result.statuses)


def test_the_table_and_statuses_are_the_same_with_gateway_api_objects():
    without = {k: (v if k not in GATEWAY_API_KINDS else {}) for k, v in examples_with().items()}
    assert compiled(examples_with(GATEWAY_API_KINDS)) == compiled(without)
    assert compiled(without)[0]  # the examples do route


def test_a_gateway_api_change_publishes_nothing_new():
    async def run():
        store = Store()
        for kind, objects in examples_with().items():
            store.replace(kind, objects.values())
        pub = Publisher(store, CompileOptions(), required_kinds=KINDS)
        assert await pub.publish_once(store.take_changes())
        before = pub.generation, table_to_json(pub.table), dict(pub.result.statuses)
        corpus = load_manifests(MANIFESTS).objects
        store.update(HTTPROUTE, corpus[HTTPROUTE])
        store.update(NAMESPACE, corpus[NAMESPACE])
        assert not await pub.publish_once(store.take_changes())  # no compile, no new generation
        after_nothing = pub.generation, table_to_json(pub.table), dict(pub.result.statuses)
        # A recompile with them in the store: the same table and statuses.
        assert await pub.publish_once(None)
        return before, after_nothing, (table_to_json(pub.table), dict(pub.result.statuses))

    before, after_nothing, recompiled = asyncio.run(run())
    assert after_nothing == before
    assert recompiled == before[1:]


def test_gateway_api_kinds_are_part_of_the_first_sync():
    store = Store()
    for kind in KINDS:
        if kind not in GATEWAY_API_KINDS:
            store.replace(kind, [])
    assert not store.synced(KINDS)  # the sources list them (empty when the CRDs are missing)
    for kind in GATEWAY_API_KINDS:
        store.replace(kind, [])
    assert store.synced(KINDS)


def test_validate_counts_them_as_not_routed(tmp_path):
    (tmp_path / "routes.yaml").write_text((MANIFESTS / "10-matching.yaml").read_text())
    text, ok = validate_report(tmp_path)
    assert ok, text
    assert "IGNORED 6 object(s) of kinds crdgate does not read: HTTPRoute (6)" in text
    assert validate_json(tmp_path)["ignoredKinds"] == {"HTTPRoute": 6}
