"""Run a `Controller` over a test backend with fast backoff, recording every handled event."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from watcher_fakes import RecordingGateway, until

from watcher.act import Backoff
from watcher.controller import Controller
from watcher.decide import Decision, Event, ModelEvent

FAST = Backoff(initial=0.01, maximum=0.05)
Handled = tuple[Event, list[Decision], bool]


@dataclass
class Watching:
    controller: Controller
    gateway: RecordingGateway
    handled: list[Handled] = field(default_factory=list)

    def handled_for(self, name: str) -> list[Handled]:
        return [h for h in self.handled if isinstance(h[0], ModelEvent) and h[0].key[2] == name]

    async def settled(self, name: str, count: int, timeout: float = 5.0) -> list[Handled]:
        """Wait until `count` events for model `name` were handled; return them all."""
        await until(lambda: len(self.handled_for(name)) >= count, timeout, f"{count} events for {name}")
        return self.handled_for(name)


@asynccontextmanager
async def watching(
    backend: Any, gateway: RecordingGateway | None = None, **kwargs: Any
) -> AsyncIterator[Watching]:
    gateway = gateway or RecordingGateway(statuses=backend.status_writer)  # writes InvalidSpec
    handled: list[Handled] = []
    options: dict[str, Any] = {"backoff": FAST, "informer_backoff_max": 0.2, **kwargs}
    controller = Controller(
        source=backend.source,
        gateway=gateway,
        on_decided=lambda event, decisions, done: handled.append((event, decisions, done)),
        **options,
    )
    task = asyncio.create_task(controller.run())
    informers = [controller.node_informer, *controller.model_informers.values()]
    try:
        await until(lambda: all(i.synced.is_set() for i in informers), 10.0, "informers synced")
        yield Watching(controller, gateway, handled)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
