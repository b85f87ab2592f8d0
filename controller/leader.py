"""Lease-based leader election: which replica writes status.

Every replica routes traffic; only the holder of one ``coordination.k8s.io/v1``
Lease writes to the API (controller/status.py asks ``is_leader`` before each
write). The algorithm is client-go's leaderelection:

- a candidate reads the Lease; it may take it when nobody holds it
  (``holderIdentity`` empty, i.e. released) or when the record has not
  changed for ``leaseDurationSeconds`` of *local* time since this replica
  last saw it change — so clocks of different machines are never compared;
- every write is a PUT carrying the ``resourceVersion`` read (optimistic
  concurrency): of two candidates, one gets 409 Conflict and stays follower;
- the leader renews every ``renew_interval``; if it cannot renew for
  ``renew_deadline`` (shorter than the lease duration) it steps down before
  anyone else may take over;
- on shutdown the leader releases: ``holderIdentity`` empty, and a one-second
  duration from now, so a successor takes over at once.

A failure to read or write the Lease is logged once, when it starts (a missing
Lease namespace at error level, with what to do), and once more when it ends;
meanwhile a follower retries with a growing delay, so that it picks up as soon
as the cause is fixed without filling the log. With ``--leader-elect off`` no
Lease is used at all (``without_election``): a single replica writes status.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
import time
import uuid
from datetime import datetime, timezone
from typing import Callable

from kubernetes_asyncio.client import ApiClient

from controller.backoff import Backoff
from controller.kubeapi import LEASES, ApiError, KubeAPI
from gateway.errors import LeaseNamespaceMissing
from gateway.metrics import LEADER

log = logging.getLogger("crdgate.controller.leader")


async def without_election() -> None:
    """``--leader-elect off``: this replica is the one status writer, with no Lease; runs until cancelled."""
    log.info("leader election off: this replica writes status without a Lease")
    LEADER.set(1)
    try:
        await asyncio.Future()
    finally:
        LEADER.set(0)


def default_identity() -> str:
    """The pod name (HOSTNAME in a pod) plus a random suffix, unique across restarts."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def micro_time(at: datetime) -> str:
    """The API's MicroTime format."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api: KubeAPI | ApiClient,
        namespace: str = "crdgate-system",
        name: str = "crdgate-leader",
        identity: str | None = None,
        *,
        lease_duration: float = 15.0,
        renew_interval: float = 5.0,
        renew_deadline: float = 10.0,
        retry_interval: float = 2.0,
        release_timeout: float = 5.0,
        failure_backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        """``failure_backoff``: delays between a follower's attempts while the API fails
        (a leader keeps renewing every ``renew_interval`` to keep its deadline)."""
        if not renew_interval < renew_deadline < lease_duration:
            raise ValueError(
                "leader election needs renew_interval < renew_deadline < lease_duration, got "
                f"{renew_interval} / {renew_deadline} / {lease_duration}"
            )
        self.api = KubeAPI.of(api)
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_interval = renew_interval
        self.renew_deadline = renew_deadline
        # A follower's attempts (client-go's RetryPeriod, 2 s): how soon a standby takes
        # over a lease that ran out, or this replica one whose namespace was just created.
        self.retry_interval = retry_interval
        self.release_timeout = release_timeout
        self.failure_backoff = failure_backoff or Backoff(base=1.0, cap=30.0)
        self.clock = clock
        self._problem: str | None = None  # the failure being retried, reported once
        self._missing_namespace = False  # that failure is the Lease's namespace not existing
        self._path = LEASES.path(namespace, name)
        self._lease: dict | None = None  # the last Lease read or written
        self._observed_spec: dict | None = None
        self._observed_at = 0.0  # local clock when the Lease record last changed
        self._renewed_at = 0.0  # local clock at the start of our last successful renew
        self._leading = asyncio.Event()
        self._following = asyncio.Event()
        self._following.set()

    # -- what others read ------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def wait_leading(self) -> None:
        await self._leading.wait()

    async def wait_following(self) -> None:
        await self._following.wait()

    def _set_leader(self, leading: bool) -> None:
        if leading == self.is_leader:
            return
        if leading:
            self._following.clear()
            self._leading.set()
            log.info("%s is now the leader (Lease %s/%s)", self.identity, self.namespace, self.name)
        else:
            self._leading.clear()
            self._following.set()
            log.info("%s is no longer the leader", self.identity)
        LEADER.set(1 if leading else 0)

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Acquire, then renew, forever; release on cancellation."""
        try:
            while True:
                started = self.clock()
                failed = False
                try:
                    held = await self._try_acquire_or_renew(started)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 — any failure just means "not renewed"
                    self._report_failure(exc)
                    self._missing_namespace = isinstance(exc, LeaseNamespaceMissing)
                    held, failed = None, True
                else:
                    self._report_recovery()
                    self._missing_namespace = False
                if held:
                    self._renewed_at = started
                    self._set_leader(True)
                elif held is False:
                    self._set_leader(False)  # someone else holds a valid lease
                elif self.is_leader and self.clock() - self._renewed_at > self.renew_deadline:
                    log.warning("could not renew Lease %s/%s for %.0fs; stepping down",
                                self.namespace, self.name, self.renew_deadline)
                    self._set_leader(False)
                if self.is_leader:
                    delay = self.renew_interval
                elif failed and self._missing_namespace:
                    # The API server answered: nothing to back off from. The fix is a
                    # user's `kubectl create namespace`, to be picked up at once.
                    delay = self.retry_interval * random.uniform(1.0, 1.2)
                elif failed:
                    delay = self.failure_backoff.next_delay()
                else:
                    delay = self.retry_interval * random.uniform(1.0, 1.2)
                await asyncio.sleep(delay)
        finally:
            if self.is_leader:
                try:
                    await asyncio.wait_for(self.release(), self.release_timeout)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    log.warning("could not release Lease %s/%s in time", self.namespace, self.name)

    def _report_failure(self, exc: Exception) -> None:
        """Log a failure once when it starts (or changes), at debug level while it repeats."""
        problem = f"{type(exc).__name__}: {exc}"
        if problem == self._problem:
            log.debug("Lease %s/%s: still failing: %s", self.namespace, self.name, exc)
            return
        self._problem = problem
        if isinstance(exc, LeaseNamespaceMissing):
            log.error("Lease %s/%s: %s", self.namespace, self.name, exc)
        else:
            log.warning("Lease %s/%s: %s (retrying quietly)", self.namespace, self.name, str(exc) or type(exc).__name__)

    def _report_recovery(self) -> None:
        self.failure_backoff.reset()
        if self._problem is not None:
            self._problem = None
            log.info("Lease %s/%s: reachable again", self.namespace, self.name)

    async def _try_acquire_or_renew(self, now_local: float) -> bool | None:
        """True: we hold the Lease; False: another holder's lease is valid; None: a retryable failure."""
        now = datetime.now(timezone.utc)
        try:
            lease = await self.api.request("GET", self._path)
        except ApiError as exc:
            if exc.status != 404:
                raise
            return await self._create(now)
        spec = lease.get("spec") or {}
        if spec != self._observed_spec:
            self._observed_spec = spec
            self._observed_at = now_local
        self._lease = lease
        holder = spec.get("holderIdentity") or ""
        duration = spec.get("leaseDurationSeconds") or self.lease_duration
        if holder and holder != self.identity and now_local < self._observed_at + duration:
            return False
        new_spec = dict(spec)
        if holder != self.identity:
            new_spec["acquireTime"] = micro_time(now)
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        new_spec["holderIdentity"] = self.identity
        new_spec["leaseDurationSeconds"] = math.ceil(self.lease_duration)
        new_spec["renewTime"] = micro_time(now)
        return await self._update(lease, new_spec, now_local)

    async def _create(self, now: datetime) -> bool | None:
        body = {
            "apiVersion": LEASES.api_version,
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": math.ceil(self.lease_duration),
                "acquireTime": micro_time(now),
                "renewTime": micro_time(now),
                "leaseTransitions": 0,
            },
        }
        try:
            self._lease = await self.api.request("POST", LEASES.path(self.namespace), body=body)
        except ApiError as exc:
            if exc.status == 409:  # another candidate created it first
                return None
            if exc.status == 404:  # a create 404s only for want of the namespace
                raise LeaseNamespaceMissing(self.namespace) from exc
            raise
        self._observed_spec = self._lease.get("spec") or {}
        self._observed_at = self.clock()
        return True

    async def _update(self, lease: dict, spec: dict, now_local: float) -> bool | None:
        # The body carries the resourceVersion we read: a concurrent writer makes this 409.
        body = {**lease, "spec": spec}
        try:
            self._lease = await self.api.request("PUT", self._path, body=body)
        except ApiError as exc:
            if exc.status == 409:
                log.debug("Lease %s/%s changed under us; retrying later", self.namespace, self.name)
                return None
            raise
        self._observed_spec = self._lease.get("spec") or {}
        self._observed_at = now_local
        return True

    async def release(self) -> None:
        """Give the Lease up now (stop writing first), so a successor need not wait for expiry."""
        if not self.is_leader:
            return
        self._set_leader(False)
        if self._lease is None:
            return
        now = datetime.now(timezone.utc)
        spec = dict(self._lease.get("spec") or {})
        if spec.get("holderIdentity") != self.identity:
            return
        spec.update(
            holderIdentity="",
            leaseDurationSeconds=1,
            renewTime=micro_time(now),
            acquireTime=micro_time(now),
        )
        try:
            self._lease = await self.api.request("PUT", self._path, body={**self._lease, "spec": spec})
            log.info("%s released Lease %s/%s", self.identity, self.namespace, self.name)
        except Exception as exc:  # noqa: BLE001 — API or transport errors; shutdown goes on
            log.warning("could not release Lease %s/%s: %s", self.namespace, self.name, exc)
