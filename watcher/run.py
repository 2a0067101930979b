"""Run the watcher: informers, decide, act, optionally under leader election, until `stop` is set.

`modelferry watch` calls `run_watcher`; tests call it too (or build a `Controller` directly). It
takes everything by keyword and reads no environment: the command line builds the API client and
the Temporal gateway and passes them in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from modelferry.admission import AdmissionPolicy
from modelferry.names import AGENT_NAMESPACE_DEFAULT, ModelKind
from watcher.act import DEFAULT_BACKOFF, Backoff
from watcher.controller import Controller
from watcher.decide import Decision, Event
from watcher.gateway import WorkflowGateway
from watcher.kube import KubeClient
from watcher.leader import LEASE_NAME, LeaderElector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaderTiming:
    """Lease timing (Kubernetes controllers' defaults); tests shorten it."""

    lease_duration: int = 15
    renew_deadline: float = 10.0
    retry_period: float = 2.0


async def run_watcher(
    *,
    api_client: Any,
    gateway: WorkflowGateway,
    stop: asyncio.Event,
    agent_namespace: str = AGENT_NAMESPACE_DEFAULT,
    identity: str,
    resync_seconds: float = 300.0,
    leader_election: bool = True,
    leader_timing: LeaderTiming = LeaderTiming(),
    lease_name: str = LEASE_NAME,
    watch_timeout_seconds: int = 300,
    kinds: Sequence[ModelKind] = tuple(ModelKind),
    backoff: Backoff = DEFAULT_BACKOFF,
    on_decided: Callable[[Event, list[Decision], bool], None] | None = None,
    admission: AdmissionPolicy | None = None,
) -> None:
    """Watch BaseModel, ClusterBaseModel, FineTunedWeight and Nodes and drive `gateway` until
    `stop` is set.

    - `api_client`: a `kubernetes.client.ApiClient` (`modelferry.kubeclient.load_api_client`).
    - `identity`: this replica's name in the Lease (the pod name in a cluster).
    - `leader_election`: with several replicas, only the Lease holder in `agent_namespace` acts;
      False runs unconditionally (one replica, or local development).
    - `resync_seconds`: how often every known object is re-checked (cheap: no Temporal call for
      a generation already applied).
    - `on_decided(event, decisions, all_done)`: called after each event (metrics, tests).
    - `admission`: this installation's policy (`modelferry.admission.admission_policy(settings)`);
      a resource it refuses is marked InvalidSpec with the field at fault.
    """
    kube = KubeClient(api_client)

    async def work() -> None:
        controller = Controller(
            source=kube,
            gateway=gateway,
            kinds=kinds,
            resync_seconds=resync_seconds,
            watch_timeout_seconds=watch_timeout_seconds,
            backoff=backoff,
            on_decided=on_decided,
            admission=admission,
        )
        await controller.run()

    if not leader_election:
        await run_until_stopped(work, stop=stop)
        return
    elector = LeaderElector(
        api=kube,
        namespace=agent_namespace,
        name=lease_name,
        identity=identity,
        lease_duration=leader_timing.lease_duration,
        renew_deadline=leader_timing.renew_deadline,
        retry_period=leader_timing.retry_period,
    )
    await elector.run(work, stop=stop)


async def run_until_stopped(work: Callable[[], Any], *, stop: asyncio.Event) -> None:
    """Run `work()` until it ends or `stop` is set (then cancel it and wait for it)."""
    task = asyncio.ensure_future(work())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
