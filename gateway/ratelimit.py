"""Rate limiting: GCRA per (route, key), in this process or shared through Redis.

The proxy (gateway/policies.py, for the exchange) asks ``RateLimiter.admit`` after auth and before
forwarding, and adds ``RateLimiter.headers`` to the answer; the compiler
(controller/compile/) builds the ``RateLimitPolicy`` (gateway/routing.py) and
may call ``policy_error`` to reject a bad one with a message naming the field.

Semantics (the same for both scopes)
------------------------------------
The algorithm is GCRA (the generic cell rate algorithm, a token bucket without
a refill timer: one timestamp per key). With ``T = 60 / requestsPerMinute``
seconds (the emission interval):

- at rest a client may send ``1 + burst`` requests at once, then one every T;
  over any stretch of L seconds that starts at rest it gets at most
  ``1 + burst + floor(L / T)`` requests; ``burst: 0`` means strictly one
  request per T;
- a denied request costs nothing: it does not push the client further back.

A ``Decision`` says ``allowed``; ``limit`` (``1 + burst``, the most requests
admitted back to back); ``remaining`` (how many more would be admitted right
now, back to back); ``reset_after`` (seconds until the client is at rest
again); ``retry_after`` (seconds until the next request will be admitted, when
denied; 0 otherwise); ``outcome`` (``allowed`` | ``limited`` | ``failopen`` |
``failclosed``: the label of the RATELIMIT_DECISIONS metric).

Headers follow draft-ietf-httpapi-ratelimit-headers-11 (the current draft:
``RateLimit-Policy`` and ``RateLimit`` as structured-field lists; the older
``RateLimit-Limit/-Remaining/-Reset`` trio is not sent):

    RateLimit-Policy: "default";q=<requestsPerMinute>;w=60[;crdgate-burst=<burst>]
    RateLimit: "default";r=<remaining>;t=<seconds until remaining next grows>
    Retry-After: <ceil(retry_after), at least 1>        (denied only)

``t`` is the draft's "effective window": the time during which the client can
use no more than ``r``. On a denial it equals Retry-After, as the draft asks
(Retry-After no earlier than the end of the effective window).

Keys (``rate_limit_key``): ``ClientAddress`` is the effective client address
(the proxy resolves X-Forwarded-For against its trusted proxies first);
``Consumer`` is the authenticated consumer, or the client address when the
request carries none (anonymous callers are then limited per address, in a
namespace apart from consumer names); ``Header`` is the header's value, and
every request without the header shares one "missing" bucket; ``Route`` is one
bucket for the whole route. Keys longer than 64 characters are stored as a
digest, so a huge header value costs no more memory than a short one.

Local scope: memory
-------------------
One ``OrderedDict`` maps (route, key) to the key's theoretical arrival time,
least recently admitted first. An entry whose time has passed is at rest and
means the same as no entry, so idle keys are dropped from the old end as new
keys arrive (a key still owing time at the old end, e.g. on a route with a
long interval, holds back that reclaiming until it is at rest or evicted). The store never holds more than ``max_keys`` entries: past that the
least recently admitted key is evicted even if it still owes time. The
trade-off: evicting a key forgets its debt, so a flood of distinct keys can
give each evicted key's owner at most ``1 + burst`` extra requests; it cannot
exhaust memory (about 300 bytes per key: 30 MB at the default 100,000).

Global scope: Redis
-------------------
One Lua script (loaded with SCRIPT LOAD, run with EVALSHA, reloaded on
NOSCRIPT, e.g. after a Redis restart) does the whole decision in one round
trip with Redis's own clock (TIME), so replicas' clocks do not matter. The
checks made during one loop iteration travel together as one script call over
all their keys (``_RedisBatch``), so concurrency costs one round trip and one
command's client work per batch, not per request. Keys are
``crdgate:rl:<route>:<blake2b of the key>`` (no credential from a header ever
lands in Redis) and expire when the client is back at rest. Each check has a
deadline (``timeout``); on any error or timeout the failure mode decides:
``open`` admits, ``closed`` denies with Retry-After 1 (a call that timed out
may still be counted by Redis when it wakes up). Errors bump
RATELIMIT_REDIS_ERRORS and are logged at most once per 10 s with a count; the
connection pool reconnects by itself. With no Redis configured, Global
policies are enforced per replica (logged once per route).

Leases: a busy key takes several requests from Redis at once (the script
charges g requests as g arrivals at that instant, granting fewer when the
bucket holds fewer) and admits them from memory, with no round trip. A process
holds at most ``lease_max = min(--ratelimit-redis-lease, (1 + burst) // 16)``
requests of a key (1, i.e. exact, below a burst of 31), so R replicas admit
at most ``R * lease_max`` more than the exact count over any stretch (see
docs/rate-limiting.md#leases). ``--redis-url`` forms: gateway/redisurl.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import OrderedDict
from typing import Awaitable, Callable, Mapping

from .metrics import RATELIMIT_REDIS_ERRORS, RATELIMIT_REDIS_SECONDS
from .redisurl import connect
from .routing import RateLimitPolicy

log = logging.getLogger("crdgate.ratelimit")

KEY_CLIENT_ADDRESS = "ClientAddress"
KEY_CONSUMER = "Consumer"
KEY_HEADER = "Header"
KEY_ROUTE = "Route"
KEYS = (KEY_CLIENT_ADDRESS, KEY_CONSUMER, KEY_HEADER, KEY_ROUTE)
SCOPE_LOCAL = "Local"
SCOPE_GLOBAL = "Global"
SCOPES = (SCOPE_LOCAL, SCOPE_GLOBAL)
FAILURE_MODES = ("open", "closed")

OUTCOME_ALLOWED = "allowed"
OUTCOME_LIMITED = "limited"
OUTCOME_FAILOPEN = "failopen"
OUTCOME_FAILCLOSED = "failclosed"

DEFAULT_MAX_KEYS = 100_000
DEFAULT_TIMEOUT = 0.05
DEFAULT_MAX_INFLIGHT = 8  # Redis script calls out at once per process
DEFAULT_LEASE_MAX = 1024  # --ratelimit-redis-lease: most Global requests one process takes at once
LEASE_SHARE = 16  # a lease never exceeds 1/16 of the policy's 1 + burst
LEASE_SECONDS = 1.0  # leased requests unused for this long are dropped (the lease shrinks)
MAX_BATCH = 256  # checks per script call: one call never holds Redis for long

# Header values never contain NUL, so these cannot collide with a real value.
MISSING_HEADER_KEY = "\x00missing"
_ADDRESS_PREFIX = "\x00addr:"

REDIS_PREFIX = "crdgate:rl:"
_LONG_KEY = 64
# The CRD's maximum for requestsPerMinute and burst: larger values mean nothing
# to a clock in microseconds, and the compiled plan holds them in C integers.
MAX_RATE_VALUE = 1_000_000_000
_EPS = 1e-6  # seconds of float slack: a burst's sums must not lose its last request
_SWEEP = 4  # at rest entries dropped per new key: keeps up with any arrival rate
_LOG_EVERY = 10.0  # seconds between two log lines about Redis errors

# Lower-case, as every header name the proxy writes (field names are case-insensitive).
_H_POLICY = b"ratelimit-policy"
_H_RATELIMIT = b"ratelimit"
_H_RETRY_AFTER = b"retry-after"


def policy_error(policy: RateLimitPolicy) -> str | None:
    """What is wrong with a policy, naming the spec field; None when it is valid."""
    rpm = policy.requests_per_minute
    if isinstance(rpm, bool) or not isinstance(rpm, int) or not 1 <= rpm <= MAX_RATE_VALUE:
        return f"rateLimit.requestsPerMinute must be an integer from 1 to {MAX_RATE_VALUE}, got {rpm!r}"
    burst = policy.burst
    if isinstance(burst, bool) or not isinstance(burst, int) or not 0 <= burst <= MAX_RATE_VALUE:
        return f"rateLimit.burst must be an integer from 0 to {MAX_RATE_VALUE}, got {burst!r}"
    if policy.key not in KEYS:
        return f"rateLimit.key must be one of {', '.join(KEYS)}, got {policy.key!r}"
    if policy.key == KEY_HEADER and not policy.key_header:
        return "rateLimit.keyHeader is required when rateLimit.key is Header"
    if policy.scope not in SCOPES:
        return f"rateLimit.scope must be one of {', '.join(SCOPES)}, got {policy.scope!r}"
    return None


def rate_limit_key(
    policy: RateLimitPolicy,
    client_address: str,
    consumer: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> str:
    """The bucket key of one request under ``policy`` (see the module docstring).

    ``client_address`` is the effective client address (after trusted proxies);
    ``consumer`` the authenticated identity, if any; ``headers`` maps lower-case
    names to values, as ``RouteTable.match`` takes them.
    """
    kind = policy.key
    if kind == KEY_CLIENT_ADDRESS:
        return client_address
    if kind == KEY_CONSUMER:
        return consumer if consumer else _ADDRESS_PREFIX + client_address
    if kind == KEY_HEADER:
        value = headers.get(policy.key_header) if headers is not None and policy.key_header else None
        return value if value is not None else MISSING_HEADER_KEY
    return ""


def _digest(key: str) -> str:
    return hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


class _Tat:
    """A key's theoretical arrival time in the Local store.

    Updated in place: a request of a known key then writes one number instead
    of storing a new float object in the ordered dict (compiled, a C double).
    """

    __slots__ = ("tat",)

    def __init__(self, tat: float):
        self.tat = tat


class Decision:
    """The answer of one check. Read-only by convention (built on the hot path)."""

    __slots__ = ("allowed", "limit", "remaining", "reset_after", "retry_after", "outcome")

    def __init__(
        self,
        allowed: bool,
        limit: int,
        remaining: int,
        reset_after: float,
        retry_after: float,
        outcome: str,
    ):
        self.allowed = allowed
        self.limit = limit
        self.remaining = remaining
        self.reset_after = reset_after
        self.retry_after = retry_after
        self.outcome = outcome

    def __repr__(self) -> str:
        return (
            f"Decision(allowed={self.allowed}, limit={self.limit}, remaining={self.remaining}, "
            f"reset_after={self.reset_after:.6f}, retry_after={self.retry_after:.6f}, "
            f"outcome={self.outcome!r})"
        )


class _Plan:
    """What one policy needs per request, computed once per policy object."""

    __slots__ = (
        "policy", "interval", "window", "limit", "is_global", "policy_header",
        "interval_us", "window_us", "fail_open", "fail_closed", "lease_max",
    )

    def __init__(self, policy: RateLimitPolicy, lease_max: int = 1):
        problem = policy_error(policy)
        if problem is not None:
            raise ValueError(problem)
        self.policy = policy  # held so that id(policy) stays unique while cached
        self.limit = policy.burst + 1
        self.interval = 60.0 / policy.requests_per_minute
        self.window = self.limit * self.interval
        self.is_global = policy.scope == SCOPE_GLOBAL
        value = b'"default";q=%d;w=60' % policy.requests_per_minute
        if policy.burst:
            value += b";crdgate-burst=%d" % policy.burst
        self.policy_header = (_H_POLICY, value)
        # Redis works in whole microseconds; rounding the interval up keeps
        # the shared limit on the strict side of the configured rate.
        self.interval_us = math.ceil(60_000_000 / policy.requests_per_minute)
        self.window_us = self.limit * self.interval_us
        self.fail_open = Decision(True, self.limit, self.limit - 1, 0.0, 0.0, OUTCOME_FAILOPEN)
        self.fail_closed = Decision(False, self.limit, 0, 1.0, 1.0, OUTCOME_FAILCLOSED)
        # Leases bound what a process holds ahead of use (the over-admission
        # bound): below 2 * LEASE_SHARE requests of burst every request asks Redis.
        self.lease_max = max(1, min(lease_max, self.limit // LEASE_SHARE))

    def twin(self, policy: RateLimitPolicy) -> "_Plan":
        """This plan for an equal policy object (of another table)."""
        twin = _Plan.__new__(_Plan)
        for name in _Plan.__slots__:
            setattr(twin, name, getattr(self, name))
        twin.policy = policy
        return twin


# One call checks a whole batch: KEYS[i] is a bucket; ARGV[3i-2], ARGV[3i-1]
# and ARGV[3i] its emission interval and (1 + burst) intervals, in
# microseconds, and how many requests to take at once (a lease, see
# RateLimiter). Returns {granted_1, ahead_1, granted_2, ahead_2, ...}: how many
# were taken (at most the asked number, 0 if denied), and the bucket's time
# ahead of now. Taking g at once charges exactly what g requests arriving now
# would. Keys are handled in order, so a key that occurs twice in a batch sees
# its first check's update.
_GCRA_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[3 * i - 2])
  local window = tonumber(ARGV[3 * i - 1])
  local want = tonumber(ARGV[3 * i])
  local tat = tonumber(redis.call('GET', key))
  if tat == nil or tat < now then tat = now end
  local granted = math.min(want, math.floor((now + window - tat) / interval))
  local ahead
  if granted >= 1 then
    ahead = tat + granted * interval - now
    redis.call('SET', key, string.format('%d', now + ahead), 'PX', math.ceil(ahead / 1000))
  else
    granted = 0
    ahead = tat - now
    if ahead > window then
      -- Debt left by a looser earlier policy: keep no more than this one allows.
      ahead = window
      redis.call('SET', key, string.format('%d', now + ahead), 'PX', math.ceil(ahead / 1000))
    end
  end
  out[2 * i - 1] = granted
  out[2 * i] = ahead
end
return out
"""


GCRA_SHA = hashlib.sha1(_GCRA_LUA.encode()).hexdigest()


class _Lease:
    """Requests of one Global key that this process took from Redis ahead of use.

    ``tokens`` are already charged in Redis (so admitting them needs no round
    trip); ``size`` is how many the next refill asks for, doubling while the
    key drains its lease within ``LEASE_SECONDS`` and halving when tokens were
    left unused, never above the plan's ``lease_max``; ``tat`` is Redis's
    bucket time as of the last grant, on this process's clock (for the
    headers); ``fetching`` is set while a refill of more than one is out, so
    that only one is.
    """

    __slots__ = ("tokens", "size", "expires", "tat", "fetching")

    def __init__(self):
        self.tokens = 0
        self.size = 1
        self.expires = 0.0
        self.tat = 0.0
        self.fetching = False


class _RedisBatch:
    """Sends the checks of one loop iteration to Redis as one script call.

    Checks made while the loop is busy wait in ``pending``; a callback on the
    next loop iteration sends them all as a single EVALSHA of the GCRA script
    over one pooled connection (at most ``MAX_BATCH`` keys per call, so one
    call never holds Redis for long). With one check in flight this adds a
    single loop hop; under concurrency N checks cost one round trip and one
    command's worth of client work instead of N. At most ``max_inflight`` calls
    are out at once; later checks queue behind them. Each check has its own
    deadline (``timeout``): a timer resolves its future to the failure mode's
    decision, whether the check is still queued or already sent. A lease
    refill that no request waits for (``fut`` None) has no deadline: the
    socket timeout ends it.
    """

    __slots__ = (
        "client", "pending", "scheduled", "inflight", "max_inflight", "tasks", "timeout", "limiter", "by_slot",
        "slot_calls", "init_lock", "client_ready",
    )

    def __init__(self, client, max_inflight: int, timeout: float, limiter: "RateLimiter", by_slot: bool = False):
        self.client = client
        # (future or None, Redis key, plan, deadline timer or None, lease, requests wanted)
        self.pending: list[tuple] = []
        self.scheduled = False
        self.inflight = 0
        self.max_inflight = max_inflight
        self.tasks: set[asyncio.Task] = set()
        self.timeout = timeout
        self.limiter = limiter
        self.by_slot = by_slot  # Redis Cluster: one script call per hash slot of the batch
        self.slot_calls = asyncio.Semaphore(max_inflight)  # those calls out at once, over all batches
        self.init_lock = asyncio.Lock()
        self.client_ready = not by_slot

    def submit(self, key: str, plan: "_Plan", lease: _Lease, want: int, waiting: bool = True) -> asyncio.Future | None:
        """A future of the Decision (None when not ``waiting``: a refill ahead of
        need). It never fails: errors and the deadline resolve it to the failure
        mode's decision (RateLimiter._failed)."""
        loop = asyncio.get_running_loop()
        if waiting:
            fut = loop.create_future()
            self.pending.append((fut, key, plan, loop.call_later(self.timeout, self._expire, fut, plan), lease, want))
        else:
            fut = None
            self.pending.append((None, key, plan, None, lease, want))
        if not self.scheduled and self.inflight < self.max_inflight:
            self.scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self.scheduled = False
        # Skip the timed out (a refill no request waits for always goes).
        pending = [entry for entry in self.pending if entry[0] is None or not entry[0].done()]
        batch, rest = pending[:MAX_BATCH], pending[MAX_BATCH:]
        self.pending = rest
        if not batch:
            return
        self.inflight += 1
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._send(batch))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        if rest and self.inflight < self.max_inflight:
            self.scheduled = True
            loop.call_soon(self._flush)

    def _expire(self, fut: asyncio.Future, plan: "_Plan") -> None:
        if not fut.done():
            fut.set_result(self.limiter._failed(plan, TimeoutError("rate limit check timed out")))

    async def _send(self, batch: list) -> None:
        limiter = self.limiter
        started = time.perf_counter()
        try:
            flat = await self._run(batch)
        except BaseException as exc:  # noqa: BLE001 - every waiting caller gets the failure mode
            cancelled = not isinstance(exc, Exception)
            for fut, _, plan, deadline, lease, want in batch:
                if want > 1:
                    lease.fetching = False
                if fut is None:
                    if not cancelled:
                        limiter._failed(plan, exc)  # counted and logged: nobody waits for it
                    continue
                deadline.cancel()
                if not fut.done():
                    if cancelled:
                        fut.cancel()
                    else:
                        fut.set_result(limiter._failed(plan, exc))
            if cancelled:
                raise
        else:
            limiter._succeeded()
            for i, (fut, _, plan, deadline, lease, want) in enumerate(batch):
                if deadline is not None:
                    deadline.cancel()
                limiter._granted(fut, plan, lease, want, flat[2 * i], flat[2 * i + 1])
        finally:
            RATELIMIT_REDIS_SECONDS.observe(time.perf_counter() - started)
            self.inflight -= 1
            if self.pending and not self.scheduled:
                self.scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

    async def _run(self, batch: list) -> list:
        if self.by_slot:
            from redis.crc import key_slot

            # A script may only touch keys of one hash slot (redis-py's cluster
            # pipeline refuses scripts): one call per slot, at most
            # max_inflight out at once, so no master's pool runs dry.
            slots: dict[int, list[int]] = {}
            for i, entry in enumerate(batch):
                slots.setdefault(key_slot(entry[1].encode()), []).append(i)
            if len(slots) > 1:
                groups = list(slots.values())
                parts = await asyncio.gather(*(self._slot_call([batch[i] for i in group]) for group in groups))
                flat = [0] * (2 * len(batch))
                for group, part in zip(groups, parts):
                    for j, i in enumerate(group):
                        flat[2 * i] = part[2 * j]
                        flat[2 * i + 1] = part[2 * j + 1]
                return flat
            return await self._slot_call(batch)
        return await self._script(batch)

    async def _slot_call(self, batch: list) -> list:
        async with self.slot_calls:
            if not self.client_ready:
                # redis-py's cluster client learns the slot map on first use; several calls
                # starting it at once race (seen as "Connection closed by server" under
                # uvloop). One call learns it, the others wait for it.
                async with self.init_lock:
                    if not self.client_ready:
                        await self.client.initialize()
                        self.client_ready = True
            return await self._script(batch)

    async def _script(self, batch: list) -> list:
        from redis.exceptions import NoScriptError

        keys, args = _script_args(batch)
        try:
            flat = await self.client.evalsha(GCRA_SHA, len(keys), *keys, *args)
        except NoScriptError:
            # Redis restarted or flushed its scripts: load ours once, run it again.
            await self.client.script_load(_GCRA_LUA)
            flat = await self.client.evalsha(GCRA_SHA, len(keys), *keys, *args)
        if not isinstance(flat, list) or len(flat) != 2 * len(keys):
            raise ValueError(f"unexpected rate-limit script reply: {flat!r:.80}")
        return flat

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


def _script_args(batch: list) -> tuple[list[str], list[int]]:
    """KEYS and ARGV of one GCRA script call over ``batch``."""
    keys = [entry[1] for entry in batch]
    args: list[int] = []
    for _, _, plan, _, _, want in batch:
        args += (plan.interval_us, plan.window_us, want)
    return keys, args


class _ErrorLog:
    """One warning per ``_LOG_EVERY`` seconds about Redis, however many calls fail."""

    __slots__ = ("clock", "failed", "last", "total")

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.failed = 0  # since the last line
        self.total = 0  # since the last success
        self.last: float | None = None

    def error(self, exc: BaseException, where: str) -> None:
        self.failed += 1
        self.total += 1
        now = self.clock()
        if self.last is None or now - self.last >= _LOG_EVERY:
            log.warning(
                "rate limit: Redis at %s failed %d time(s) since the last report (last: %s); failure mode applies",
                where, self.failed, type(exc).__name__ + (f": {exc}" if str(exc) else ""),
            )
            self.last = now
            self.failed = 0

    def success(self, where: str) -> None:
        log.warning("rate limit: Redis at %s answers again after %d failed call(s)", where, self.total)
        self.total = 0
        self.failed = 0
        self.last = None


def _denied(plan: _Plan, ahead: float) -> Decision:
    """A Local denial: the next request gets in once ``ahead`` is back within the window."""
    return Decision(False, plan.limit, 0, ahead, ahead - plan.window + plan.interval, OUTCOME_LIMITED)


def _ratelimit_field(plan: _Plan, remaining: int, ahead: float) -> tuple[bytes, bytes]:
    """The RateLimit field of an admission: ``t`` is the seconds until ``remaining`` grows by one."""
    r = remaining
    x = ahead - (plan.limit - r - 1) * plan.interval - _EPS
    t = int(x)  # ceil(x), on C numbers when compiled (math.ceil is a Python call there)
    if t < x:
        t += 1
    if t < 0:
        t = 0
    # Compiled, the f-string formats C integers directly (bytes % was a tenth of a request).
    return _H_RATELIMIT, f'"default";r={r};t={t}'.encode()


class RateLimiter:
    """Rate-limit decisions for every route of this process.

    ``check`` returns a plain ``Decision`` for Local policies (no coroutine is
    made) and for Global ones admitted on a lease, and an awaitable when a
    Global check goes to Redis::

        d = limiter.check(route.name, policy, key)
        if d.__class__ is not Decision:
            d = await d
    """

    def __init__(
        self,
        *,
        redis=None,
        failure_mode: str = "open",
        timeout: float = DEFAULT_TIMEOUT,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
        redis_where: str = "redis",
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        lease_max: int = DEFAULT_LEASE_MAX,
        redis_cluster: bool = False,
    ):
        if failure_mode not in FAILURE_MODES:
            raise ValueError(f"--ratelimit-redis-failure must be open or closed, got {failure_mode!r}")
        if max_keys < 1:
            raise ValueError(f"--ratelimit-max-keys must be >= 1, got {max_keys!r}")
        if timeout <= 0:
            raise ValueError(f"--ratelimit-redis-timeout must be > 0, got {timeout!r}")
        if isinstance(lease_max, bool) or not isinstance(lease_max, int) or lease_max < 1:
            raise ValueError(f"--ratelimit-redis-lease must be an integer >= 1, got {lease_max!r}")
        self._clock = clock
        self._store: OrderedDict[tuple[str, str], _Tat] = OrderedDict()  # least recently used first
        self._max_keys = max_keys
        self._plans: dict[int, _Plan] = {}
        self._plans_by_value: dict[RateLimitPolicy, _Plan] = {}
        self._redis = redis
        self._batch = _RedisBatch(redis, max_inflight, timeout, self, redis_cluster) if redis is not None else None
        self._timeout = timeout
        self._fail_open = failure_mode == "open"
        self._where = redis_where
        self._errors = _ErrorLog(clock)
        self._warned_no_redis: set[str] = set()
        self._lease_max = lease_max
        # (route, key) -> _Lease of a Global key, oldest first; bounded like the Local store.
        self._leases: OrderedDict[tuple[str, str], _Lease] = OrderedDict()
        self.evictions = 0  # keys dropped with debt because the store was full

    @classmethod
    def from_config(
        cls,
        redis_url: str | None,
        failure_mode: str = "open",
        timeout: float = DEFAULT_TIMEOUT,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        lease_max: int = DEFAULT_LEASE_MAX,
    ) -> "RateLimiter":
        """The limiter the gateway runs with; no Redis when ``redis_url`` is None.

        Nothing connects here: the pool connects on the first Global check
        (call ``ping`` at startup to know early).
        """
        if not redis_url:
            return cls(failure_mode=failure_mode, timeout=timeout, max_keys=max_keys, clock=clock,
                       lease_max=lease_max)
        target = connect(redis_url, timeout=timeout, max_connections=max_inflight + 2)  # calls out, plus ping
        return cls(
            redis=target.client, failure_mode=failure_mode, timeout=timeout, max_keys=max_keys,
            clock=clock, redis_where=target.where, max_inflight=max_inflight, lease_max=lease_max,
            redis_cluster=target.cluster,
        )

    # -- plans ---------------------------------------------------------------

    def _plan(self, policy: RateLimitPolicy) -> _Plan:
        plan = self._plans_by_value.get(policy)
        if plan is None:
            if len(self._plans_by_value) >= 65536:
                self._plans_by_value.clear()
            plan = self._plans_by_value[policy] = _Plan(policy, self._lease_max)
        if len(self._plans) >= 65536:  # old tables' policies: let them go
            self._plans.clear()
        if plan.policy is not policy:  # an equal policy from another table
            plan = plan.twin(policy)
        self._plans[id(policy)] = plan
        return plan

    # -- decisions -----------------------------------------------------------

    def check(self, route_name: str, policy: RateLimitPolicy, key: str) -> Decision | Awaitable[Decision]:
        """Count one request of ``key`` on ``route_name`` against ``policy``."""
        plan = self._plans.get(id(policy))
        if plan is None or plan.policy is not policy:
            plan = self._plan(policy)
        if len(key) > _LONG_KEY:
            key = _digest(key)
        if plan.is_global:
            if self._redis is not None:
                return self._global(plan, route_name, key)
            if route_name not in self._warned_no_redis:
                self._warned_no_redis.add(route_name)
                log.warning("rate limit: route %s asks for a Global limit but no Redis is configured; "
                            "limiting per replica", route_name)
        allowed, ahead, remaining = self._local(plan, (route_name, key))
        if allowed:
            return Decision(True, plan.limit, remaining, ahead, 0.0, OUTCOME_ALLOWED)
        return _denied(plan, ahead)

    def admit(
        self, route_name: str, policy: RateLimitPolicy, key: str, with_headers: bool = True
    ) -> list[tuple[bytes, bytes]] | Decision | Awaitable[Decision]:
        """The proxy's call: ``check`` and ``headers`` in one.

        A Local policy that admits returns the response fields to add (a list,
        empty without ``with_headers``) and builds no Decision: this runs on
        every request of a limited route. Anything else returns what ``check``
        does (a Decision, or a future of one for a Global policy).
        """
        plan = self._plans.get(id(policy))
        if plan is None or plan.policy is not policy:
            plan = self._plan(policy)
        if plan.is_global:
            if self._redis is not None:
                if len(key) > _LONG_KEY:
                    key = _digest(key)
                lease = self._leases.get((route_name, key))
                if lease is not None and lease.tokens > 0:
                    now = self._clock()
                    if now < lease.expires:  # admitted on a leased request: no round trip
                        ahead, remaining = self._take(plan, lease, route_name, key, now)
                        if not with_headers:
                            return []
                        return [plan.policy_header, _ratelimit_field(plan, remaining, ahead)]
                return self._global(plan, route_name, key)
            return self.check(route_name, policy, key)
        if len(key) > _LONG_KEY:
            return self.check(route_name, policy, key)
        allowed, ahead, remaining = self._local(plan, (route_name, key))
        if not allowed:
            return _denied(plan, ahead)
        if not with_headers:
            return []
        return [plan.policy_header, _ratelimit_field(plan, remaining, ahead)]

    def _global(self, plan: _Plan, route_name: str, key: str) -> Decision | Awaitable[Decision]:
        """A Global check: on a leased request if this process holds one, else through Redis.

        Returns a Decision, or a future of one (not a coroutine: the proxy
        waits on it with a callback, no task).
        """
        k = (route_name, key)
        now = self._clock()
        leases = self._leases
        lease = leases.get(k)
        if lease is None:
            lease = self._new_lease(k, now)
        elif lease.tokens > 0:
            if now < lease.expires:
                ahead, remaining = self._take(plan, lease, route_name, key, now)
                return Decision(True, plan.limit, remaining, ahead, 0.0, OUTCOME_ALLOWED)
            lease.tokens = 0  # unused for LEASE_SECONDS: too big a lease for this key
            lease.size = max(1, lease.size // 2)
        want = 1
        if plan.lease_max > 1 and not lease.fetching:
            if now < lease.expires:  # the last lease ran out within LEASE_SECONDS
                lease.size = min(lease.size * 2, plan.lease_max)
            want = min(lease.size, plan.lease_max)
            if want > 1:
                lease.fetching = True
        return self._batch.submit(REDIS_PREFIX + route_name + ":" + _digest(key), plan, lease, want)

    def _take(self, plan: _Plan, lease: _Lease, route_name: str, key: str, now: float) -> tuple[float, int]:
        """Admit one request on ``lease`` (tokens > 0, not expired): (time ahead, remaining).

        The headers see Redis's bucket as of the last grant, moved on by the
        time since and without the requests still held here. When half the
        lease is left, the rest is asked for in the background (a round trip
        takes a few loop turns), so a busy key rarely waits for Redis.
        """
        tokens = lease.tokens - 1
        lease.tokens = tokens
        interval = plan.interval
        ahead = lease.tat - now - tokens * interval
        if ahead < interval:
            ahead = interval
        if tokens * 2 <= lease.size and not lease.fetching and plan.lease_max > 1:
            size = lease.size * 2
            if size > plan.lease_max:
                size = plan.lease_max
            lease.size = size
            if size > tokens:
                lease.fetching = True
                self._batch.submit(REDIS_PREFIX + route_name + ":" + _digest(key), plan, lease, size - tokens, False)
        return ahead, int((plan.window - ahead + _EPS) / interval)

    def _new_lease(self, k: tuple[str, str], now: float) -> _Lease:
        leases = self._leases
        # Leases idle past their time hold nothing: drop a few from the old end.
        for _ in range(_SWEEP):
            if not leases:
                break
            oldest = next(iter(leases))
            if leases[oldest].expires > now or leases[oldest].fetching:
                break
            del leases[oldest]
        if len(leases) >= self._max_keys:
            leases.popitem(last=False)  # its leased requests are lost: fewer admitted, never more
        lease = leases[k] = _Lease()
        return lease

    def _granted(self, fut: asyncio.Future | None, plan: _Plan, lease: _Lease, want: int, granted: int,
                 ahead_us: int) -> None:
        """Redis took ``granted`` of ``want`` requests: one for the waiting request, if any, the rest leased."""
        if want > 1:
            lease.fetching = False
        waiting = fut is not None and not fut.done()
        if granted >= 1:
            now = self._clock()
            # A request that timed out meanwhile had its answer: its request is
            # dropped, never stored, so a process holds at most lease_max.
            lease.tokens += granted if fut is None else granted - 1
            lease.tat = now + ahead_us / 1e6
            lease.expires = now + LEASE_SECONDS
            if waiting:
                ahead = lease.tat - now - lease.tokens * plan.interval
                if ahead < plan.interval:
                    ahead = plan.interval
                remaining = int((plan.window - ahead + _EPS) / plan.interval)
                fut.set_result(Decision(True, plan.limit, remaining, ahead, 0.0, OUTCOME_ALLOWED))
        elif waiting:
            fut.set_result(self._decided(plan, 0, ahead_us))

    def _local(self, plan: _Plan, k: tuple[str, str]) -> tuple[bool, float, int]:
        """GCRA on the Local store: (admitted, time ahead of now, remaining)."""
        now = self._clock()
        store = self._store
        cell = store.get(k)
        if cell is None:
            ahead = plan.interval
            self._insert(k, now + ahead, now)
            return True, ahead, plan.limit - 1
        tat = cell.tat
        if tat < now:
            tat = now
        ahead = tat + plan.interval - now
        window = plan.window
        if ahead <= window + _EPS:
            cell.tat = now + ahead
            store.move_to_end(k)
            return True, ahead, int((window - ahead + _EPS) / plan.interval)
        ahead = tat - now
        if ahead > window:  # debt left by a looser earlier policy
            ahead = window
            cell.tat = now + ahead
        return False, ahead, 0

    def _insert(self, k: tuple[str, str], tat: float, now: float) -> None:
        store = self._store
        # Entries at rest (time passed) mean nothing: drop a few from the old end.
        for _ in range(_SWEEP):
            if not store:
                break
            oldest = next(iter(store))
            if store[oldest].tat > now:
                break
            del store[oldest]
        if len(store) >= self._max_keys:
            store.popitem(last=False)
            self.evictions += 1
        store[k] = _Tat(tat)

    def _failed(self, plan: _Plan, exc: BaseException) -> Decision:
        """A Global check that Redis did not answer in time: the failure mode decides."""
        RATELIMIT_REDIS_ERRORS.inc()
        self._errors.error(exc, self._where)
        return plan.fail_open if self._fail_open else plan.fail_closed

    def _succeeded(self) -> None:
        if self._errors.total:
            self._errors.success(self._where)

    @staticmethod
    def _decided(plan: _Plan, admitted: int, ahead_us: int) -> Decision:
        ahead = ahead_us / 1e6
        if admitted:
            remaining = (plan.window_us - ahead_us) // plan.interval_us
            return Decision(True, plan.limit, remaining, ahead, 0.0, OUTCOME_ALLOWED)
        retry = (ahead_us - plan.window_us + plan.interval_us) / 1e6
        return Decision(False, plan.limit, 0, ahead, retry, OUTCOME_LIMITED)

    # -- headers -------------------------------------------------------------

    def headers(self, policy: RateLimitPolicy, decision: Decision) -> list[tuple[bytes, bytes]]:
        """The RateLimit-Policy, RateLimit and (when denied) Retry-After fields.

        A fail-open decision knows nothing about the client: only the policy
        is sent.
        """
        plan = self._plans.get(id(policy))
        if plan is None or plan.policy is not policy:
            plan = self._plan(policy)
        if decision.outcome == OUTCOME_FAILOPEN:
            return [plan.policy_header]
        if not decision.allowed:
            # The effective window of a denial ends when the next request gets in.
            retry = b"%d" % max(math.ceil(decision.retry_after - _EPS), 1)
            return [plan.policy_header, (_H_RATELIMIT, b'"default";r=0;t=' + retry), (_H_RETRY_AFTER, retry)]
        return [plan.policy_header, _ratelimit_field(plan, decision.remaining, decision.reset_after)]

    # -- state ---------------------------------------------------------------

    @property
    def local_keys(self) -> int:
        """Keys held by the Local store (some may already be at rest)."""
        return len(self._store)

    async def ping(self) -> bool:
        """Whether Redis answers within the timeout (True when none is configured)."""
        if self._redis is None:
            return True
        try:
            async with asyncio.timeout(self._timeout * 20):
                return bool(await self._redis.ping())
        except asyncio.CancelledError:
            raise
        except Exception:
            return False

    async def close(self) -> None:
        if self._redis is not None:
            await self._batch.close()
            await self._redis.aclose()
