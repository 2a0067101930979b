"""Continuous verification: a node worker keeps checking the models it holds, and reports damage.

A model that was Ready can rot on the node afterwards: someone deletes or truncates a file, a disk
flips a bit, a tool replaces a file with a symlink. Beside each node worker a loop finds the
models this node holds (every versions directory under the models roots whose `owner.json` names
a model and whose `storage.path` link points at one of its versions) and checks the served
version (`modelferry.verify_schedule` decides when):

- *cheap*: the manifest is present and readable, and every file it lists is a regular file inside
  the version with its recorded size (stat calls only);
- *deep*: the same, and every byte hashed against the manifest's digests (`activities.verify`),
  one model at a time in a thread, so a node's downloads keep the disk and the CPU.

After each check the version's check times are recorded in its state directory
(`activities.check_record`), so a restarted worker, or the next short-lived Job on the node,
resumes the schedule; a healthy model causes no other write and no signal. Each check runs inside
`busy()`, so a Job-mode worker does not take a long deep check for idleness and exit. Damage is
logged as one WARNING line and signalled to the model's workflow (`report_damage`, a
`DamageReport`), which repairs the model on this node; the same damage is not signalled again
within the verify interval. Damage seen while the link moved (an activation, a delete) or while a
download holds the version's lock is not damage, and is dropped.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.check_record import read_check_times, write_check_times
from activities.ownership import read_owner
from activities.storage.engine import LOCK_FILE_NAME
from activities.storage.manifest import StateLayout, read_manifest
from activities.verify import file_problem
from modelferry.errors import ForeignPathError
from modelferry.layout import VERSIONS_DIR_NAME, host_path
from modelferry.messages import DamageReport
from modelferry.names import SIGNAL_REPORT_DAMAGE, STATE_DIR_NAME, ModelKind, model_workflow_id
from modelferry.ownership import PathOwner, is_our_link_target
from modelferry.settings import Settings
from modelferry.verify_schedule import (
    CheckKind,
    CheckTimes,
    DamageKey,
    damage_key,
    due_check,
    next_due_in,
    report_window,
    should_report,
)

log = logging.getLogger(__name__)

DamageSender = Callable[[PathOwner, DamageReport], Awaitable[None]]

MAX_SLEEP = 60.0  # a new model is found within this long of its activation
_WALK_LIMIT = 20_000  # directories looked at under the models roots per pass
_MAX_DETAIL = 2_000  # characters of a report's detail (it lands in the workflow's history)


class _Stopped(Exception):
    """The verifier is stopping: a deep check gives up between two chunks."""


@dataclass(frozen=True, slots=True)
class HeldModel:
    """One model this node holds: who owns it, where its link is, which version it serves."""

    owner: PathOwner
    link: Path
    store: Path
    version_id: str

    @property
    def version_dir(self) -> Path:
        return self.store / self.version_id

    @property
    def key(self) -> tuple[str, str]:
        return (str(self.store), self.version_id)


@dataclass(frozen=True, slots=True)
class Damage:
    files: list[str]
    detail: str


# --- finding the models -----------------------------------------------------------------------


def models_roots_on_host(settings: Settings) -> list[Path]:
    return [host_path(node_root=settings.node.root, storage_path=r) for r in settings.policy.models_roots]


def find_held_models(models_roots: Iterable[Path]) -> list[HeldModel]:
    """Every model whose versions directory has an owner record and whose link is ours."""
    found: list[HeldModel] = []
    seen = 0
    for root in models_roots:
        if not root.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(root):  # never follows symlinks
            seen += 1
            if STATE_DIR_NAME in dirnames:
                dirnames.clear()  # a model directory (pre-staged): no model lies inside it
                continue
            if VERSIONS_DIR_NAME in dirnames:
                dirnames.remove(VERSIONS_DIR_NAME)
                found += _held_in(Path(dirpath) / VERSIONS_DIR_NAME)
            if seen > _WALK_LIMIT:
                log.warning("continuous verification looked at %d directories under %s; stopped", seen, root)
                break
    return sorted(found, key=lambda m: str(m.link))


def _held_in(versions: Path) -> list[HeldModel]:
    held: list[HeldModel] = []
    try:
        stores = sorted(versions.iterdir())
    except OSError:
        return held
    for store in stores:
        model = _held_model(store)
        if model is not None:
            held.append(model)
    return held


def _held_model(store: Path) -> HeldModel | None:
    if store.is_symlink() or not store.is_dir():
        return None
    try:
        owner = read_owner(store)
    except ForeignPathError:
        return None
    if owner is None or owner.kind not in set(ModelKind):
        return None
    link = store.parent.parent / store.name
    try:
        target = os.readlink(link)
    except OSError:
        return None  # no link (not activated yet, or deleted): nothing served
    if not is_our_link_target(target, link_name=link.name):
        return None
    return HeldModel(owner=owner, link=link, store=store, version_id=PurePosixPath(target).name)


def _still_serving(model: HeldModel) -> bool:
    """The link and the owner record are what they were when the check started."""
    again = _held_model(model.store)
    return again is not None and again == model


def _download_running(version_dir: Path) -> bool:
    """A download holds the version's lock (the engine healing it in place): its files move."""
    try:
        fd = os.open(StateLayout(version_dir).state_dir / LOCK_FILE_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases our shared lock at once
    return False


# --- checking one model -----------------------------------------------------------------------


def check_version(model: HeldModel, kind: CheckKind, *, stop: threading.Event | None = None) -> Damage | None:
    """What is wrong with the version `model` serves (None when it is healthy). Reads only."""
    directory = model.version_dir
    if directory.is_symlink() or not directory.is_dir():
        return Damage(files=[], detail=f"{directory} is missing or not a directory")
    state = StateLayout(directory)
    if state.state_dir.is_symlink() or state.manifest.is_symlink():
        return Damage(files=[], detail=f"{state.manifest} is reached through a symlink")
    manifest = read_manifest(state.manifest)
    if manifest is None:
        return Damage(files=[], detail=f"{state.manifest} is missing or unreadable")

    def heartbeat() -> None:
        if stop is not None and stop.is_set():
            raise _Stopped

    root = directory.resolve()
    files: list[str] = []
    problems: list[str] = []
    for record in manifest.files:
        heartbeat()
        try:
            problem, _ = file_problem(
                directory,
                record,
                root=root,
                deep=kind is CheckKind.DEEP,
                rehash_changed=False,
                heartbeat=heartbeat,
            )
        except OSError as error:
            problem = f"{record.name} cannot be read: {error}"
        if problem is not None:
            files.append(record.name)
            problems.append(problem)
    if not files:
        return None
    return Damage(files=files, detail="; ".join(problems)[:_MAX_DETAIL])


# --- reporting --------------------------------------------------------------------------------


def temporal_damage_sender(client: Client) -> DamageSender:
    """Signal the model's workflow; a workflow that is gone (the model was deleted) is logged."""

    async def send(owner: PathOwner, report: DamageReport) -> None:
        workflow_id = model_workflow_id(kind=owner.kind, namespace=owner.namespace, name=owner.name)
        try:
            await client.get_workflow_handle(workflow_id).signal(SIGNAL_REPORT_DAMAGE, report)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            log.info("damage of %s not reported: workflow %s not found", owner.describe(), workflow_id)

    return send


# --- the loop ---------------------------------------------------------------------------------


class ContinuousVerifier:
    """Checks the node's models on schedule and reports damage through `send`."""

    def __init__(
        self,
        *,
        node: str,
        models_roots: list[Path],
        verify_interval: float,
        deep_interval: float,
        send: DamageSender,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        busy: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        """`clock` schedules; `wall_clock` only converts the recorded times; `busy()` is entered
        around each check (the Job's idle tracker)."""
        self._node = node
        self._roots = list(models_roots)
        self._verify_interval = verify_interval
        self._deep_interval = deep_interval
        self._send = send
        self._clock = clock
        self._wall_clock = wall_clock
        self._mark_busy = busy
        self._unrecorded_warned = False
        self._times: dict[tuple[str, str], CheckTimes] = {}
        self._reported: dict[str, dict[DamageKey, float]] = {}  # per store: damage -> when reported
        self._busy: dict[tuple[str, str], float] = {}  # a download holds the version: not before
        self._stop = threading.Event()

    @property
    def enabled(self) -> bool:
        return self._verify_interval > 0 or self._deep_interval > 0

    def _due(self, now: float, times: CheckTimes) -> CheckKind | None:
        return due_check(
            now=now, times=times, verify_interval=self._verify_interval, deep_interval=self._deep_interval
        )

    async def run_pass(self) -> list[DamageReport]:
        """Find the models, run the checks that are due (one at a time), report new damage."""
        models = await asyncio.to_thread(find_held_models, self._roots)
        now = self._clock()
        held = {m.key for m in models}
        self._times = {k: t for k, t in self._times.items() if k in held}
        self._busy = {k: until for k, until in self._busy.items() if k in held and until > now}
        sent: list[DamageReport] = []
        for model in models:
            times = self._times.get(model.key)
            if times is None:
                times = await asyncio.to_thread(self._recorded_times, model, now=now)
                self._times[model.key] = times
            kind = self._due(self._clock(), times)
            if kind is None or model.key in self._busy:
                continue
            if await asyncio.to_thread(_download_running, model.version_dir):
                self._busy[model.key] = self._clock() + MAX_SLEEP  # look again in a while
                continue
            started = self._clock()
            try:
                with self._mark_busy():
                    damage = await asyncio.to_thread(check_version, model, kind, stop=self._stop)
            except _Stopped:
                return sent
            checked = self._clock()
            # Intervals run from a check's start: a Job-mode worker, woken every verify interval,
            # then finds the next check due however long this one took.
            times.cheap_at = started
            if kind is CheckKind.DEEP:
                times.deep_at = started
            serving = await asyncio.to_thread(_still_serving, model)
            if serving:
                await asyncio.to_thread(self._record, model, times)
            if damage is None or not serving:
                continue
            report = DamageReport(
                node=self._node,
                version_id=model.version_id,
                files=damage.files,
                check=kind.value,
                detail=damage.detail,
                uid=model.owner.uid,
            )
            if await self._report(model, report, now=checked):
                sent.append(report)
        return sent

    def _wall_offset(self) -> float:
        return self._wall_clock() - self._clock()

    def _recorded_times(self, model: HeldModel, *, now: float) -> CheckTimes:
        recorded = read_check_times(model.version_dir, now=now, wall_offset=self._wall_offset())
        return recorded if recorded is not None else CheckTimes(first_seen=now)

    def _record(self, model: HeldModel, times: CheckTimes) -> None:
        """Write the version's check times, unless a download now holds it (it may be healing it
        in place: the state directory is the engine's then). A failed write keeps them in memory."""
        if _download_running(model.version_dir):
            return
        try:
            write_check_times(model.version_dir, times, wall_offset=self._wall_offset())
        except OSError as error:
            level = logging.DEBUG if self._unrecorded_warned else logging.WARNING
            self._unrecorded_warned = True
            log.log(level, "could not record the checks of %s: %s", model.version_dir, error)

    async def _report(self, model: HeldModel, report: DamageReport, *, now: float) -> bool:
        window = report_window(verify_interval=self._verify_interval, deep_interval=self._deep_interval)
        reported = {k: at for k, at in self._reported.get(str(model.store), {}).items() if now - at < window}
        self._reported[str(model.store)] = reported
        key = damage_key(version_id=report.version_id, files=report.files)
        if not should_report(now=now, key=key, reported=reported, window=window):
            log.info(
                "%s at %s is still damaged (reported already): %s",
                model.owner.describe(),
                model.link,
                report.detail,
            )
            return False
        log.warning(
            "%s at %s: %s check found damage in version %s: %s",
            model.owner.describe(),
            model.link,
            report.check,
            report.version_id,
            report.detail,
        )
        try:
            await self._send(model.owner, report)
        except Exception as error:  # reported again on the next pass
            log.warning("could not report the damage of %s: %s", model.owner.describe(), error)
            return False
        reported[key] = now
        return True

    def seconds_to_next_check(self) -> float:
        now = self._clock()
        # Never past the shortest interval asked for: a model activated since the last pass (on a
        # node that held none, so nothing else is due) is found within it, not MAX_SLEEP later.
        intervals = [i for i in (self._verify_interval, self._deep_interval) if i > 0]
        waits = [
            max(
                next_due_in(
                    now=now, times=t, verify_interval=self._verify_interval, deep_interval=self._deep_interval
                ),
                self._busy.get(key, now) - now,
            )
            for key, t in self._times.items()
        ]
        return max(1.0, min([MAX_SLEEP, *intervals, *waits]))

    async def run(self, stop: asyncio.Event) -> None:
        """Pass after pass until `stop` is set; a failing pass is logged, never fatal. Disabled, it
        just waits for `stop`, so a stack that ends when one of its tasks ends runs on."""
        if not self.enabled:
            await stop.wait()
            return
        log.info(
            "continuous verification on %s: cheap every %ss, deep every %ss, under %s",
            self._node,
            self._verify_interval or "never",
            self._deep_interval or "never",
            ", ".join(map(str, self._roots)),
        )
        stopper = asyncio.create_task(stop.wait())
        stopper.add_done_callback(lambda _: self._stop.set())  # a deep check in its thread gives up
        try:
            while not stop.is_set():
                try:
                    await self.run_pass()
                except Exception:
                    log.exception("continuous verification pass failed; trying again later")
                await asyncio.wait({stopper}, timeout=self.seconds_to_next_check())
        finally:
            self._stop.set()
            stopper.cancel()
