"""Headless Chromium for the tests that load a page the way a user's browser would.

``ensure_chromium`` finds the browser, installing Debian's ``chromium`` package
with apt-get when it is missing (as tests/redis_server.py does for
redis-server); ``BrowserUnavailable`` says why when that is impossible, and
tests/conftest.py turns it into a skip, or a failure with ``CI=true``.
``dump_dom`` loads a URL, lets its scripts run for a bounded stretch of
virtual time (timers and network included), and returns the DOM as HTML.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from aptget import one_at_a_time

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserUnavailable(RuntimeError):
    """No headless Chromium here, and it could not be installed."""


def _which() -> str | None:
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium() -> str:
    path = _which()
    if path:
        return path
    with one_at_a_time():  # another pytest-xdist worker may be installing it
        return _install()


def _install() -> str:
    path = _which()
    if path:
        return path
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BrowserUnavailable(f"chromium is not on PATH and `{' '.join(cmd)}` failed: {exc}") from exc
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise BrowserUnavailable(f"chromium is not on PATH and `{' '.join(cmd)}` exited {done.returncode}: {' | '.join(tail)}")
    path = _which()
    if not path:
        raise BrowserUnavailable("apt-get installed chromium but it is still not on PATH")
    return path


def dump_dom(browser: str, url: str, budget_ms: int = 3000, timeout: float = 60.0) -> str:
    """The DOM of ``url`` after ``budget_ms`` of virtual time (the page's fetches and timers run)."""
    with tempfile.TemporaryDirectory(prefix="crdgate-chromium-") as profile:
        done = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
             f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
            capture_output=True, text=True, timeout=timeout,
        )
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout
