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
