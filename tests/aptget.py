"""Programs the tests drive, installed with apt-get when missing (Debian packages).

Outside CI a failed install skips the test that needs the program; under
``CI=true`` it fails it: there the program must be there. ``one_at_a_time``
serialises installs across the pytest-xdist workers (and tests/redis_server.py,
tests/browser.py): two apt-gets at once would fail on dpkg's lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile

import pytest

SBIN = "/usr/sbin:/sbin"


def which(program: str) -> str | None:
    return shutil.which(program) or shutil.which(program, path=SBIN)


@contextlib.contextmanager
def one_at_a_time():
    """Held while checking for and installing packages: one test process at a time on this machine."""
    with open(os.path.join(tempfile.gettempdir(), "crdgate-tests-apt.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure(programs: dict[str, str]) -> dict[str, str]:
    """``programs``: program -> Debian package. Their paths, installing the missing ones first."""
    if any(which(prog) is None for prog in programs):
        with one_at_a_time():  # another worker may be installing them: look again once it is done
            missing = sorted({pkg for prog, pkg in programs.items() if which(prog) is None})
            if missing:
                try:
                    subprocess.run(["apt-get", "install", "-y", *missing], check=True, capture_output=True,
                                   timeout=300)
                except (OSError, subprocess.SubprocessError) as exc:
                    msg = f"{', '.join(programs)} needed and `apt-get install -y {' '.join(missing)}` failed: {exc}"
                    if os.environ.get("CI", "").lower() == "true":
                        pytest.fail(msg)
                    pytest.skip(msg)
    paths = {prog: which(prog) for prog in programs}
    absent = [p for p, path in paths.items() if path is None]
    if absent:
        msg = f"{', '.join(absent)} still missing after apt-get install"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return paths
