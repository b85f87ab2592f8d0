"""Shared fixtures. Each block is self-contained; the machinery lives beside it."""

from __future__ import annotations

import os

import pytest

# -- a real redis-server (tests/redis_server.py) ---------------------------------


def _redis_or_skip():
    from redis_server import RedisUnavailable, start_server

    try:
        return start_server()
    except RedisUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"redis-server is required in CI: {exc}")
        pytest.skip(f"no redis-server: {exc}")


@pytest.fixture(scope="session")
def redis_server():
    """The URL of a redis-server on 127.0.0.1 shared by the whole session."""
    server = _redis_or_skip()
    yield server.url
    server.close()


@pytest.fixture
def redis_restartable():
    """A redis-server of this test alone: ``.url``, ``.stop()``, ``.start()``, ``.pause(ms)``."""
    server = _redis_or_skip()
    yield server
    server.close()


# -- headless Chromium (tests/browser.py) -----------------------------------------


@pytest.fixture(scope="session")
def chromium():
    """The path of a headless-capable Chromium (installed with apt-get if missing)."""
    from browser import BrowserUnavailable, ensure_chromium

    try:
        return ensure_chromium()
    except BrowserUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"chromium is required in CI: {exc}")
        pytest.skip(f"no chromium: {exc}")


# -- pytest-xdist: how many workers `-n auto` (pyproject.toml's addopts) starts -----

# Tests wait on processes and sockets much of the time (one process: 11.6 min wall for
# 5.4 min CPU), so two workers on two cores nearly halve the suite. Every test is isolated: ports are bound to 0 (free_port), files
# are in tmp_path, session fixtures (redis, chromium) are per worker, apt-get installs take
# a lock (tests/aptget.py).
FEW_FILES = 8


@pytest.hookimpl(optionalhook=True)  # known only while pytest-xdist is loaded (not with -p no:xdist)
def pytest_xdist_auto_num_workers(config):
    """One worker per core; none for a run of a few named test files (starting workers costs more)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own reading of it
    named = [a for a in config.args if ".py" in a]
    if named and len(named) == len(config.args) and len(named) <= FEW_FILES:
        return 0
    return os.cpu_count() or 1
