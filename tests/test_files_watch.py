"""Watching the folder: edits, atomic renames, new and deleted files reach the store."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from controller import files
from controller.files import ManifestFolderError, ManifestSource
from gateway.errors import InotifyUnavailable
from controller.store import Store
from polling import eventually

SVC = "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{ports: [{{port: {port}}}]}}\n"


def svc(name: str, port: int = 80) -> str:
    return SVC.format(name=name, port=port)


def port(store: Store, name: str) -> int | None:
    obj = store.get("Service", "shop", name)
    return obj["spec"]["ports"][0]["port"] if obj else None


def no_inotify(*args, **kwargs):
    raise InotifyUnavailable("not in this test")


@pytest.fixture(params=["inotify", "polling"])
def watcher(request, monkeypatch):
    """Both watchers (inotify on the loop, watchfiles' polling where inotify is missing);
    the periodic rescan pushed out of the test's time, so each change must arrive
    through the watcher's events."""
    monkeypatch.setattr(files, "RESYNC_MS", 600_000)
    if request.param == "polling":
        monkeypatch.setattr(files, "InotifyWatch", no_inotify)
    return request.param


@pytest.fixture
async def watched(tmp_path, watcher):
    (tmp_path / "a.yaml").write_text(svc("users", 80))
    store = Store()
    source = ManifestSource(store, tmp_path, debounce=0.02)
    task = asyncio.ensure_future(source.run())
    await eventually(store.synced)
    await asyncio.sleep(0.2)  # let the watch settle before the test writes
    yield tmp_path, store, source
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_in_place_edit_reaches_the_store(watched):
    root, store, _ = watched
    assert port(store, "users") == 80
    (root / "a.yaml").write_text(svc("users", 81))
    await eventually(lambda: port(store, "users") == 81)


async def test_atomic_rename_write_reaches_the_store(watched):
    root, store, _ = watched
    for n in (82, 83):  # twice: the second write replaces the inode the first one made
        tmp = root / ".a.yaml.tmp-save"
        tmp.write_text(svc("users", n))
        os.replace(tmp, root / "a.yaml")
        await eventually(lambda: port(store, "users") == n)


async def test_new_file_in_a_new_subfolder_and_deletion(watched):
    root, store, _ = watched
    (root / "sub").mkdir()
    (root / "sub" / "b.yml").write_text(svc("orders"))
    await eventually(lambda: store.get("Service", "shop", "orders") is not None)
    (root / "sub" / "b.yml").unlink()
    await eventually(lambda: store.get("Service", "shop", "orders") is None)
    assert port(store, "users") == 80


async def test_broken_save_keeps_serving_then_the_fix_applies(watched):
    root, store, source = watched
    (root / "a.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: users\n")
    await eventually(lambda: len(source.errors) == 1)
    assert port(store, "users") == 80
    assert source.errors[0].path == str(root / "a.yaml")
    (root / "a.yaml").write_text(svc("users", 90))
    await eventually(lambda: port(store, "users") == 90 and source.errors == ())


async def test_configmap_style_symlink_swap_reaches_the_store(tmp_path, watcher):
    # A mounted ConfigMap: a.yaml -> ..data/a.yaml, ..data -> ..v1; an update
    # swaps ..data atomically and touches only hidden entries.
    (tmp_path / "..v1").mkdir()
    (tmp_path / "..v1" / "a.yaml").write_text(svc("users", 80))
    os.symlink("..v1", tmp_path / "..data")
    os.symlink("..data/a.yaml", tmp_path / "a.yaml")
    store = Store()
    source = ManifestSource(store, tmp_path, debounce=0.02)
    task = asyncio.ensure_future(source.run())
    try:
        await eventually(lambda: port(store, "users") == 80)
        (tmp_path / "..v2").mkdir()
        (tmp_path / "..v2" / "a.yaml").write_text(svc("users", 81))
        os.symlink("..v2", tmp_path / "..data_tmp")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
        await eventually(lambda: port(store, "users") == 81)
        assert store.keys("Service") == ["shop/users"]  # the hidden ..v1/..v2 copies are not read
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_on_a_missing_folder_fails_clearly(tmp_path):
    with pytest.raises(ManifestFolderError, match="does not exist"):
        await ManifestSource(Store(), Path(tmp_path / "missing")).run()


async def test_a_single_file_root_is_watched_through_its_folder(tmp_path, watcher):
    one = tmp_path / "one.yaml"
    one.write_text(svc("users", 80))
    (tmp_path / "other.yaml").write_text(svc("orders"))  # beside it, not part of the source
    store = Store()
    source = ManifestSource(store, one, debounce=0.02)
    task = asyncio.ensure_future(source.run())
    try:
        await eventually(lambda: port(store, "users") == 80)
        one.write_text(svc("users", 81))  # in place
        await eventually(lambda: port(store, "users") == 81)
        tmp = tmp_path / ".one.yaml.swp"
        tmp.write_text(svc("users", 82))
        os.replace(tmp, one)  # an editor's atomic save: a new inode
        await eventually(lambda: port(store, "users") == 82)
        assert store.get("Service", "shop", "orders") is None
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_folder_removed_then_made_again_is_watched_again(tmp_path, watcher):
    root = tmp_path / "m"
    root.mkdir()
    (root / "a.yaml").write_text(svc("users", 80))
    store = Store()
    source = ManifestSource(store, root, debounce=0.02)
    task = asyncio.ensure_future(source.run())
    try:
        await eventually(lambda: port(store, "users") == 80)
        shutil.rmtree(root)
        await eventually(lambda: any("gone" in e.message for e in source.errors))
        assert port(store, "users") == 80  # the last objects are kept
        root.mkdir()
        (root / "a.yaml").write_text(svc("users", 81))
        await eventually(lambda: port(store, "users") == 81 and source.errors == ())
        (root / "a.yaml").write_text(svc("users", 82))  # and the new folder is watched
        await eventually(lambda: port(store, "users") == 82)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
