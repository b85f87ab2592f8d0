"""Exponential backoff with jitter, shared by everything that retries the API server.

Used by controller/reflector.py (list and watch retries), controller/status.py
(failed patches) and controller/leader.py. ``sleep`` is injectable so tests
can see the delays chosen without timing anything.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Awaitable, Callable


@dataclass
class Backoff:
    """Delays of ``base * 2**n`` capped at ``cap``, with "equal jitter".

    Half of each delay is fixed and half random: replicas that lost the API
    server together do not come back in step, and no delay is ever near zero,
    so a failing call can never turn into a busy loop.
    """

    base: float = 0.5
    cap: float = 30.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    attempt: int = 0
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return ceiling / 2 + self._random.uniform(0, ceiling / 2)

    async def wait(self, at_least: float | None = None) -> float:
        """Sleep the next delay, or ``at_least`` (a server's Retry-After) if that is longer."""
        delay = self.next_delay()
        if at_least is not None and at_least > delay:
            delay = at_least
        await self.sleep(delay)
        return delay

    def reset(self) -> None:
        self.attempt = 0
