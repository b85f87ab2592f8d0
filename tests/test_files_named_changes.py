"""A change the watcher names costs what it touches: the named files are read,
the rest of the folder is not scanned, and small ones are read on the event loop."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

import controller.files as files
from controller.files import ManifestSource
from controller.store import Store
from polling import eventually

SVC = "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{ports: [{{port: {port}}}]}}\n"


def svc(name: str, port: int = 80) -> str:
    return SVC.format(name=name, port=port)


def port(store: Store, name: str) -> int | None:
    obj = store.get("Service", "shop", name)
    return obj["spec"]["ports"][0]["port"] if obj else None


class Spy:
    """Counts scans of the whole folder and records which files were parsed, on which thread."""

    def __init__(self, monkeypatch):
        self.scans = 0
        self.parsed: list[tuple[str, bool]] = []  # (file name, on the main thread)
        scan, parse = files._scan, files.parse_file

        def counting_scan(root):
            self.scans += 1
            return scan(root)

        def recording_parse(abs_path, shown):
            self.parsed.append((os.path.basename(abs_path), threading.current_thread() is threading.main_thread()))
            return parse(abs_path, shown)

        monkeypatch.setattr(files, "_scan", counting_scan)
        monkeypatch.setattr(files, "parse_file", recording_parse)


@pytest.fixture
async def watched(tmp_path, monkeypatch):
    # No periodic rescan of the whole folder while a test runs (it has its own test below).
    monkeypatch.setattr(files, "RESYNC_MS", 600_000)
    for i in range(30):
        (tmp_path / f"s{i}.yaml").write_text(svc(f"s{i}", 80))
    store = Store()
    source = ManifestSource(store, tmp_path, debounce=0.02)
    task = asyncio.ensure_future(source.run())
    await eventually(store.synced)
    await asyncio.sleep(0.2)  # let the watch settle before the test writes
    yield tmp_path, store, source
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_edited_file_is_read_alone_on_the_event_loop(watched, monkeypatch):
    root, store, _ = watched
    spy = Spy(monkeypatch)
    (root / "s7.yaml").write_text(svc("s7", 81))
    await eventually(lambda: port(store, "s7") == 81)
    assert spy.scans == 0
    assert spy.parsed == [("s7.yaml", True)]


async def test_new_and_deleted_files_are_read_alone(watched, monkeypatch):
    root, store, _ = watched
    spy = Spy(monkeypatch)
    tmp = root / ".new.yaml.tmp"  # written aside, then renamed: the hidden name changes nothing
    tmp.write_text(svc("new", 90))
    os.replace(tmp, root / "new.yaml")
    await eventually(lambda: port(store, "new") == 90)
    (root / "s3.yaml").unlink()
    await eventually(lambda: port(store, "s3") is None)
    assert spy.scans == 0
    assert [name for name, _ in spy.parsed] == ["new.yaml"]


async def test_a_big_file_is_read_in_a_thread(watched, monkeypatch):
    root, store, _ = watched
    spy = Spy(monkeypatch)
    big = "---\n".join(svc(f"b{i}", 100 + i) for i in range(40))
    assert len(big) > files.INLINE_BYTES
    (root / "big.yaml").write_text(big)
    await eventually(lambda: port(store, "b39") == 139)
    assert spy.parsed == [("big.yaml", False)]


async def test_folders_new_and_moved_away(watched, monkeypatch, tmp_path_factory):
    root, store, _ = watched
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    sub = root / "sub"
    sub.mkdir()
    (sub / "b.yml").write_text(svc("orders"))
    await eventually(lambda: port(store, "orders") == 80)
    os.rename(sub, elsewhere / "sub")  # one event, for the folder: its files go with it
    await eventually(lambda: port(store, "orders") is None)
    assert port(store, "s0") == 80


def test_the_whole_folder_is_still_scanned_every_resync_period(tmp_path, monkeypatch):
    """Events the kernel dropped are found by the periodic scan even while changes keep coming."""
    (tmp_path / "a.yaml").write_text(svc("a"))
    store = Store()
    source = ManifestSource(store, tmp_path)
    source.load()
    (tmp_path / "unseen.yaml").write_text(svc("unseen"))  # a write whose event was lost
    (tmp_path / "a.yaml").write_text(svc("a", 81))
    monkeypatch.setattr(files, "RESYNC_MS", 600_000)
    assert source._rescan({str(tmp_path / "a.yaml")})
    source._publish()
    assert port(store, "a") == 81 and port(store, "unseen") is None  # read alone
    monkeypatch.setattr(files, "RESYNC_MS", 0)  # the period is over
    (tmp_path / "a.yaml").write_text(svc("a", 82))
    assert source._rescan({str(tmp_path / "a.yaml")})
    source._publish()
    assert port(store, "a") == 82 and port(store, "unseen") == 80
