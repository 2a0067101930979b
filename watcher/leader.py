"""Leader election over a `coordination.k8s.io/v1` Lease, so that of several watcher replicas
exactly one lists, watches and acts.

The rules are those of Kubernetes' own controllers:
- a replica takes the Lease when it is absent, released (no holder), or expired
  (`renewTime + leaseDurationSeconds < now`), and then renews it every `retry_period`;
- every write is a replace carrying the resourceVersion that was read, so two replicas racing for
  the same Lease cannot both win: the loser gets 409 and re-reads;
- a leader that cannot renew within `renew_deadline` (shorter than the lease duration, so it steps
  down before anyone else may take over) or finds someone else holding the Lease stops its work at
  once, and tries to acquire again like any other replica;
- on shutdown the leader releases the Lease (no holder, 1 s duration) so a standby takes over
  without waiting for expiry.

Expiry compares the Lease's renewTime with this replica's clock, so the clocks of the replicas
must roughly agree (they do on a cluster with NTP); the margin is lease_duration - renew_deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from modelferry.errors import KubeConflictError, KubeNotFoundError

log = logging.getLogger(__name__)

LEASE_NAME = "modelferry-watcher"


class LeaseApi(Protocol):
    """Blocking Lease calls (implemented by `watcher.kube.KubeClient`)."""

    def read_lease(self, *, namespace: str, name: str) -> dict[str, Any]: ...
    def create_lease(self, *, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...
    def replace_lease(self, *, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]: ...


def format_micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def lease_expired(spec: dict[str, Any], *, now: datetime) -> bool:
    """True when nobody holds the Lease or its holder failed to renew in time."""
    if not spec.get("holderIdentity"):
        return True
    renewed = parse_time(spec.get("renewTime"))
    duration = spec.get("leaseDurationSeconds")
    if renewed is None or not isinstance(duration, int):
        return True
    return renewed + timedelta(seconds=duration) < now


class LeaderElector:
    """Acquires and renews one Lease; `run(work, stop=...)` runs `work` only while leading."""

    def __init__(
        self,
        *,
        api: LeaseApi,
        namespace: str,
        identity: str,
        name: str = LEASE_NAME,
        lease_duration: int = 15,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not 0 < retry_period < renew_deadline < lease_duration:
            raise ValueError("need 0 < retry_period < renew_deadline < lease_duration")
        self._api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._duration = int(lease_duration)
        self._renew_deadline = renew_deadline
        self._retry_period = retry_period
        self._clock = clock
        self.is_leader = False
        self.terms = 0  # how many times this replica became leader

    async def run(self, work: Callable[[], Awaitable[None]], *, stop: asyncio.Event) -> None:
        """Until `stop` is set: acquire, run `work()` while renewing, cancel it on loss.

        An exception from `work` releases the Lease and is raised to the caller.
        """
        while not stop.is_set():
            if not await self._try(acquire=True):
                await _sleep_unless(stop, self._retry_period)
                continue
            self.is_leader = True
            self.terms += 1
            log.info("%s is now the leader (lease %s/%s)", self.identity, self.namespace, self.name)
            work_task = asyncio.ensure_future(work())
            try:
                await self._keep_renewing(work_task, stop)
            finally:
                self.is_leader = False
                work_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(_settle(work_task))
                if stop.is_set() or (work_task.done() and not work_task.cancelled()):
                    await self.release()
            if work_task.done() and not work_task.cancelled() and work_task.exception() is not None:
                raise work_task.exception()  # type: ignore[misc]
            if not stop.is_set():
                log.warning(
                    "%s lost the lease %s/%s; stopped acting", self.identity, self.namespace, self.name
                )

    async def _keep_renewing(self, work_task: asyncio.Future[None], stop: asyncio.Event) -> None:
        last_renewed = time.monotonic()
        while True:
            stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait(
                    [stopping, work_task], timeout=self._retry_period, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                stopping.cancel()
            if stop.is_set() or work_task.done():
                return
            if await self._try(acquire=False):
                last_renewed = time.monotonic()
            elif self._held_by_other or time.monotonic() - last_renewed > self._renew_deadline:
                return

    async def _try(self, *, acquire: bool) -> bool:
        """One acquire-or-renew round (re-reading once after a 409); never raises."""
        self._held_by_other = False
        for _ in range(2):
            try:
                return await asyncio.to_thread(self._acquire_or_renew)
            except KubeConflictError:
                continue
            except Exception as error:
                log.warning(
                    "%s lease %s/%s: %s",
                    "acquiring" if acquire else "renewing",
                    self.namespace,
                    self.name,
                    error,
                )
                return False
        return False

    def _acquire_or_renew(self) -> bool:
        now = self._clock()
        try:
            lease = self._api.read_lease(namespace=self.namespace, name=self.name)
        except KubeNotFoundError:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec_for({}, now=now),
            }
            try:
                self._api.create_lease(namespace=self.namespace, body=body)
            except KubeConflictError:
                return False  # another replica created it first
            return True
        spec = dict(lease.get("spec") or {})
        holder = spec.get("holderIdentity")
        if holder and holder != self.identity and not lease_expired(spec, now=now):
            self._held_by_other = True
            return False
        body = copy.deepcopy(lease)
        body["spec"] = self._spec_for(spec, now=now)
        self._api.replace_lease(namespace=self.namespace, name=self.name, body=body)  # 409 when stale
        return True

    def _spec_for(self, spec: dict[str, Any], *, now: datetime) -> dict[str, Any]:
        stamp = format_micro_time(now)
        new = dict(spec)
        if spec.get("holderIdentity") != self.identity:
            new["acquireTime"] = stamp
            new["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if spec else 0)
        new.update(holderIdentity=self.identity, renewTime=stamp, leaseDurationSeconds=self._duration)
        return new

    async def release(self) -> None:
        """Give the Lease up if we hold it, so a standby need not wait for it to expire."""

        def _release() -> None:
            lease = self._api.read_lease(namespace=self.namespace, name=self.name)
            spec = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return
            spec.pop("holderIdentity", None)
            spec.update(leaseDurationSeconds=1, renewTime=format_micro_time(self._clock()))
            body = copy.deepcopy(lease)
            body["spec"] = spec
            self._api.replace_lease(namespace=self.namespace, name=self.name, body=body)

        try:
            await asyncio.to_thread(_release)
            log.info("%s released the lease %s/%s", self.identity, self.namespace, self.name)
        except Exception as error:
            log.warning("releasing lease %s/%s failed: %s", self.namespace, self.name, error)

    _held_by_other = False


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _settle(future: asyncio.Future[None]) -> None:
    with contextlib.suppress(BaseException):
        await future
