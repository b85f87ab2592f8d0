"""controller/inotify.py: the folder watch on the event loop (Linux)."""

from __future__ import annotations

import asyncio
import shutil
import sys

import pytest

from controller.inotify import InotifyWatch

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux only")


def watch(root, **kw) -> InotifyWatch:
    kw.setdefault("quiet", 0.05)
    kw.setdefault("debounce", 1.0)
    return InotifyWatch(str(root), ignore_dirs=(".git",), **kw)


async def next_batch(it, timeout: float = 10.0) -> set[str]:
    return await asyncio.wait_for(anext(it), timeout)


async def test_a_burst_of_writes_is_one_batch(tmp_path):
    it = aiter(watch(tmp_path))
    pending = asyncio.ensure_future(next_batch(it))
    await asyncio.sleep(0.05)  # the iterator has registered its reader
    with open(tmp_path / "a.yaml", "w") as f:
        for i in range(20):
            f.write(f"line {i}\n")
            f.flush()
    (tmp_path / "b.yaml").write_text("x")
    assert await pending == {str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")}
    await it.aclose()


async def test_a_new_folder_is_watched_and_ignored_folders_are_not(tmp_path):
    (tmp_path / ".git").mkdir()
    it = aiter(watch(tmp_path))
    pending = asyncio.ensure_future(next_batch(it))
    await asyncio.sleep(0.05)
    (tmp_path / "sub").mkdir()
    assert await pending == {str(tmp_path / "sub")}
    (tmp_path / ".git" / "index").write_text("x")  # not watched: no batch for it
    (tmp_path / "sub" / "c.yaml").write_text("x")
    assert await next_batch(it) == {str(tmp_path / "sub" / "c.yaml")}
    await it.aclose()


async def test_idle_gives_an_empty_batch_and_a_removed_folder_ends_the_watch(tmp_path):
    root = tmp_path / "m"
    root.mkdir()
    it = aiter(watch(root, idle_timeout=0.1))
    assert await next_batch(it) == set()
    shutil.rmtree(root)
    with pytest.raises(StopAsyncIteration):
        while True:  # the deletion's own batch may come first
            await next_batch(it)


async def test_the_unwanted_paths_are_dropped(tmp_path):
    it = aiter(watch(tmp_path, wanted=lambda path: path.endswith(".yaml")))
    pending = asyncio.ensure_future(next_batch(it))
    await asyncio.sleep(0.05)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "a.yaml").write_text("x")
    assert await pending == {str(tmp_path / "a.yaml")}
    await it.aclose()
