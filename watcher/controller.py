"""The watcher's loop: informers feed events, each object's events are decided and acted on in
order, different objects in parallel.

One informer per model kind and one for Nodes. The Node informer is synced first, so the initial
node list is plain knowledge rather than a burst of "node appeared" placement nudges for models
that are then applied with the full node picture anyway.

Each object (a model key, or a node name) has its own FIFO drained by its own task, created on
demand and gone when the queue is empty. An event stays at the head of its queue while its
decisions are carried out, so a retrying act can see that a newer event is waiting
(`superseded`). Acting is bounded by `max_parallel` so a resync of thousands of objects does not
open thousands of Temporal calls at once; a slot is held per attempt, not while waiting to retry.
`known` is only updated after an act succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from modelferry.admission import AdmissionPolicy
from modelferry.names import ModelKey, ModelKind
from watcher.act import (
    DEFAULT_BACKOFF,
    Backoff,
    Outcome,
    carry_out_with_retry,
    describe_decisions,
)
from watcher.decide import (
    Decision,
    Event,
    EventType,
    Ignore,
    Known,
    ModelEvent,
    NodeEvent,
    decide,
    remember,
)
from watcher.gateway import WorkflowGateway
from watcher.informer import Informer, ListWatch
from watcher.kube import NODES, model_resource

log = logging.getLogger(__name__)

# Events for one model (by ModelKey) or one node (by name) are handled in order, one at a time.
QueueKey = ModelKey | str


class Controller:
    """Runs informers for `kinds` and Nodes, and decides and acts until cancelled."""

    def __init__(
        self,
        *,
        source: ListWatch,
        gateway: WorkflowGateway,
        kinds: Sequence[ModelKind] = tuple(ModelKind),
        resync_seconds: float = 300.0,
        watch_timeout_seconds: int = 300,
        backoff: Backoff = DEFAULT_BACKOFF,
        informer_backoff_max: float = 30.0,
        max_parallel: int = 16,
        on_decided: Callable[[Event, list[Decision], bool], None] | None = None,
        admission: AdmissionPolicy | None = None,
    ) -> None:
        """`on_decided(event, decisions, all_done)` is called after each event was handled."""
        self.known = Known()
        self._admission = admission or AdmissionPolicy()
        self._gateway = gateway
        self._backoff = backoff
        self._slots = asyncio.Semaphore(max_parallel)
        self._on_decided = on_decided
        self._queues: dict[QueueKey, deque[Event]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        common: dict[str, Any] = {
            "source": source,
            "resync_seconds": resync_seconds,
            "watch_timeout_seconds": watch_timeout_seconds,
            "backoff_max": informer_backoff_max,
        }
        self.node_informer = Informer(resource=NODES, on_event=self._on_node, **common)
        self.model_informers = {
            kind: Informer(resource=model_resource(kind), on_event=self._model_handler(kind), **common)
            for kind in kinds
        }

    async def run(self) -> None:
        tasks: list[asyncio.Task[None]] = []
        try:
            tasks.append(asyncio.create_task(self.node_informer.run(), name="informer-nodes"))
            await self._wait_synced(tasks[0])
            for kind, informer in self.model_informers.items():
                tasks.append(asyncio.create_task(informer.run(), name=f"informer-{kind.plural}"))
            await asyncio.gather(*tasks)
        finally:
            for task in [*tasks, *self._workers]:
                task.cancel()
            for task in [*tasks, *self._workers]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._queues.clear()

    async def _wait_synced(self, node_task: asyncio.Task[None]) -> None:
        synced = asyncio.create_task(self.node_informer.synced.wait())
        try:
            await asyncio.wait({synced, node_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            synced.cancel()
        if node_task.done():
            node_task.result()  # re-raise whatever ended the node informer

    # --- from informers to per-object queues ------------------------------------------------

    def _model_handler(self, kind: ModelKind) -> Callable[[EventType, dict[str, Any]], None]:
        def handle(event_type: EventType, obj: dict[str, Any]) -> None:
            event = ModelEvent(event_type, kind, obj)
            self._enqueue(event.key, event)

        return handle

    def _on_node(self, event_type: EventType, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        event = NodeEvent(event_type, str(meta.get("name", "")), dict(meta.get("labels") or {}))
        self._enqueue(event.name, event)

    def _enqueue(self, key: QueueKey, event: Event) -> None:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            worker = asyncio.create_task(self._drain(key, queue), name=f"watcher-{key}")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        queue.append(event)

    async def _drain(self, key: QueueKey, queue: deque[Event]) -> None:
        try:
            while queue:
                event = queue[0]
                try:
                    await self._handle(event, superseded=lambda: len(queue) > 1)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("handling %s for %s failed unexpectedly; moving on", event.type, key)
                queue.popleft()
        finally:
            if self._queues.get(key) is queue:
                del self._queues[key]

    # --- decide, act, remember --------------------------------------------------------------

    async def _handle(self, event: Event, *, superseded: Callable[[], bool]) -> None:
        decisions = decide(event, self.known, policy=self._admission)
        done: list[Decision] = []
        if isinstance(event, NodeEvent):
            # Nudges to different models are independent: send them side by side.
            outcomes = await asyncio.gather(*(self._act(d, superseded) for d in decisions))
            done = [d for d, outcome in zip(decisions, outcomes, strict=True) if outcome is Outcome.DONE]
            all_done = len(done) == len(decisions)
            if all_done:  # otherwise the next event for this node decides the nudges again
                remember(self.known, event, decisions)
        else:
            for decision in decisions:  # in order: a Delete of an old uid before the new Apply
                if await self._act(decision, superseded) is not Outcome.DONE:
                    break
                done.append(decision)
            all_done = len(done) == len(decisions)
            remember(self.known, event, done)
        self._log(event, decisions, all_done)
        if self._on_decided is not None:
            self._on_decided(event, decisions, all_done)

    async def _act(self, decision: Decision, superseded: Callable[[], bool]) -> Outcome:
        if isinstance(decision, Ignore):
            return Outcome.DONE
        return await carry_out_with_retry(
            decision,
            gateway=self._gateway,
            backoff=self._backoff,
            superseded=superseded,
            slots=self._slots,
        )

    @staticmethod
    def _log(event: Event, decisions: list[Decision], all_done: bool) -> None:
        if isinstance(event, ModelEvent):
            kind, namespace, name = event.key
            what = f"{event.type} {kind.value}/{namespace + '/' if namespace else ''}{name}"
        else:
            what = f"{event.type} Node/{event.name}"
        if all(isinstance(d, Ignore) for d in decisions):
            log.debug("%s: %s", what, describe_decisions(decisions))
        else:
            suffix = "" if all_done else " (not all done)"
            log.info("%s: %s%s", what, describe_decisions(decisions), suffix)
