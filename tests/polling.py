"""Wait for a condition until a deadline, instead of sleeping "long enough" and asserting.

``wait_until`` (blocking) and ``eventually`` (async) call ``check`` until it
returns something truthy, and return that; past the deadline they raise
AssertionError naming ``what`` (a string, or a function that builds one then,
e.g. with the process log) and the last exception ``check`` raised, if any.
``check`` may be a coroutine function for ``eventually``. A short step keeps
tests quick on an idle machine; the deadline, not the step, is what keeps them
reliable on a loaded one.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Callable

STEP = 0.02


def _timed_out(what, timeout: float, last_error: BaseException | None) -> AssertionError:
    if callable(what):
        what = what()
    detail = f": last check raised {last_error!r}" if last_error is not None else ""
    return AssertionError(f"timed out after {timeout} s waiting for {what or 'a condition'}{detail}")


def wait_until(check: Callable[[], Any], timeout: float = 10.0, what: str | Callable[[], str] = "", step: float = STEP,
               ignore: tuple[type[BaseException], ...] = ()) -> Any:
    """Blocking: call ``check`` until truthy; exceptions in ``ignore`` count as not yet."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            result = check()
            if result:
                return result
        except ignore as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last_error)
        time.sleep(step)


async def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str | Callable[[], str] = "", step: float = STEP,
                     ignore: tuple[type[BaseException], ...] = ()) -> Any:
    """Async: call (and await, if need be) ``check`` until truthy; the loop runs meanwhile."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
        except ignore as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last_error)
        await asyncio.sleep(step)
