"""Continuous verification beside a node worker: a model delivered to the node is checked cheaply
when the worker starts and every verify interval, and hashed in full every deep interval. A
healthy model causes no write and no signal; a deleted file (cheap) and a flipped byte (deep)
are reported to the model's workflow as a DamageReport, once per verify interval. The only write
is the version's check record (`.modelferry/checks.json`)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from temporalio.service import RPCError, RPCStatusCode

from activities.continuous_verify import (
    ContinuousVerifier,
    find_held_models,
    models_roots_on_host,
    temporal_damage_sender,
)
from modelferry.messages import DamageReport
from modelferry.names import SIGNAL_REPORT_DAMAGE
from modelferry.ownership import PathOwner
from modelferry.settings import Settings, load_settings
from tests.activities.node_work import MEMORY_MODEL as INPUT
from tests.activities.node_work import MEMORY_MODEL_PATH as PATH
from tests.activities.node_work import deliver, remove
from tests.storage.fakes import MemoryBackend

FILES = {"config.json": b'{"model_type": "llama"}', "model.safetensors": bytes(range(256)) * 400}
VERIFY, DEEP = 600.0, 7 * 86400.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "node").mkdir()
    return load_settings(environ={}, overrides={"node.root": str(tmp_path / "node")})


class Harness:
    def __init__(self, settings: Settings, *, verify: float = VERIFY, deep: float = DEEP) -> None:
        self.now = 1000.0
        self.sent: list[tuple[PathOwner, DamageReport]] = []

        async def send(owner: PathOwner, report: DamageReport) -> None:
            self.sent.append((owner, report))

        self.verifier = ContinuousVerifier(
            node="node-1",
            models_roots=models_roots_on_host(settings),
            verify_interval=verify,
            deep_interval=deep,
            send=send,
            clock=lambda: self.now,
        )

    async def after(self, seconds: float) -> list[DamageReport]:
        self.now += seconds
        return await self.verifier.run_pass()


@pytest.fixture
def model(settings: Settings, source: dict[str, MemoryBackend]) -> Path:
    """The served version directory of a model delivered to this node."""
    source["backend"] = MemoryBackend(dict(FILES), revision="main")
    version = deliver(settings, INPUT)
    link = settings.node.root / PATH.lstrip("/")
    return link.parent / ".modelferry-versions" / link.name / version


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under the node root with its mtime and size: what a write would change."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.join(dirpath, name)] = (st.st_mtime_ns, st.st_size)
    return out


async def test_the_models_this_node_holds_are_found_by_owner_record_and_link(settings, model):
    (held,) = find_held_models(models_roots_on_host(settings))
    assert held.version_id == model.name and held.owner.uid == "u1" and held.owner.name == "llama"
    remove(settings, INPUT)
    assert find_held_models(models_roots_on_host(settings)) == []


async def test_a_healthy_model_on_worker_start_causes_no_signal_and_no_write_but_its_check_record(
    settings, model
):
    before = snapshot(settings.node.root)
    for _ in range(2):  # a worker start, then a restarted worker
        h = Harness(settings)
        assert await h.after(0) == []
        assert await h.after(DEEP) == []  # the deep check, too
        assert h.sent == []
    after = snapshot(settings.node.root)
    state, record = str(model / ".modelferry"), str(model / ".modelferry" / "checks.json")
    assert record in after and record not in before
    # Only the state directory changed: the version directory's mtime orders the prune.
    assert {k: v for k, v in after.items() if k not in (state, record)} == {
        k: v for k, v in before.items() if k != state
    }


async def test_a_deleted_file_is_found_by_the_cheap_check_and_reported(settings, model, caplog):
    h = Harness(settings)
    assert await h.after(0) == []
    (model / "model.safetensors").unlink()
    assert await h.after(VERIFY / 2) == []  # no check due yet
    with caplog.at_level(logging.WARNING, logger="activities.continuous_verify"):
        (report,) = await h.after(VERIFY / 2)
    assert report == DamageReport(
        node="node-1",
        version_id=model.name,
        files=["model.safetensors"],
        check="cheap",
        detail=report.detail,
        uid="u1",
    )
    assert "model.safetensors" in report.detail
    ((owner, sent),) = h.sent
    assert sent == report and (owner.kind, owner.name, owner.namespace) == ("ClusterBaseModel", "llama", None)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "model.safetensors" in warnings[0].getMessage()


async def test_a_flipped_byte_is_found_by_the_deep_check_only(settings, model):
    target = model / "model.safetensors"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[1234] ^= 0x01
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: only bytes differ
    h = Harness(settings)
    assert await h.after(0) == []  # the cheap check at start cannot see it
    assert await h.after(VERIFY) == []
    (report,) = await h.after(DEEP)
    assert (report.check, report.files, report.version_id, report.uid) == (
        "deep",
        ["model.safetensors"],
        model.name,
        "u1",
    )
    assert "sha256" in report.detail


async def test_the_same_damage_is_not_signalled_again_within_the_verify_interval(settings, model):
    # Deep checks every minute find the damage more often than the verify interval allows reports.
    h = Harness(settings, verify=VERIFY, deep=60.0)
    await h.after(0)
    (model / "config.json").unlink()
    assert len(await h.after(60.0)) == 1
    assert await h.after(60.0) == []  # the same damage, found again: not signalled
    assert await h.after(60.0) == []
    (model / "model.safetensors").unlink()
    (other,) = await h.after(60.0)  # other damage is news
    assert other.files == ["config.json", "model.safetensors"]
    assert len(await h.after(VERIFY)) == 1  # still there a verify interval later: reported again
    assert len(h.sent) == 3


async def test_a_failed_send_is_tried_again_on_the_next_pass(settings, model):
    h = Harness(settings)
    attempts: list[DamageReport] = []

    async def flaky(owner: PathOwner, report: DamageReport) -> None:
        attempts.append(report)
        if len(attempts) == 1:
            raise ConnectionError("temporal unreachable")

    h.verifier._send = flaky
    (model / "config.json").unlink()
    assert await h.after(0) == []
    assert len(await h.after(VERIFY)) == 1
    assert len(attempts) == 2


async def test_verification_disabled_checks_nothing(settings, model):
    (model / "config.json").unlink()
    h = Harness(settings, verify=0, deep=0)
    assert not h.verifier.enabled
    assert await h.after(0) == [] and await h.after(DEEP) == []


class _Handle:
    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.signals: list[tuple[str, Any]] = []

    async def signal(self, name: str, arg: Any) -> None:
        if self.error:
            raise self.error
        self.signals.append((name, arg))


class _Client:
    def __init__(self, error: Exception | None = None) -> None:
        self.handles: dict[str, _Handle] = {}
        self.error = error

    def get_workflow_handle(self, workflow_id: str) -> _Handle:
        return self.handles.setdefault(workflow_id, _Handle(self.error))


async def test_the_sender_signals_the_models_workflow_and_a_missing_one_is_not_fatal():
    owner = PathOwner(kind="BaseModel", name="llama", namespace="team-a", uid="u9")
    report = DamageReport(node="n1", version_id="v1", files=["a"], uid="u9")
    client = _Client()
    await temporal_damage_sender(client)(owner, report)  # type: ignore[arg-type]
    assert client.handles["ome/basemodel/team-a/llama"].signals == [(SIGNAL_REPORT_DAMAGE, report)]
    gone = _Client(RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b""))
    await temporal_damage_sender(gone)(owner, report)  # type: ignore[arg-type]
    down = _Client(RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b""))
    with pytest.raises(RPCError):
        await temporal_damage_sender(down)(owner, report)  # type: ignore[arg-type]


async def test_a_node_holding_no_model_looks_again_within_the_verify_interval(settings):
    """A model activated after the worker started on an empty node is checked within the
    shortest interval asked for, not MAX_SLEEP later (`modelferry dev --verify-interval 1s`)."""
    from activities.continuous_verify import MAX_SLEEP

    h = Harness(settings, verify=5.0, deep=30.0)
    assert await h.after(0) == []
    assert h.verifier.seconds_to_next_check() == 5.0
    assert Harness(settings, verify=0.0, deep=20.0).verifier.seconds_to_next_check() == 20.0
    assert Harness(settings).verifier.seconds_to_next_check() == MAX_SLEEP  # the defaults: 10 min, 7 d


async def test_the_loop_checks_at_start_and_stops_when_told(settings, model):
    (model / "config.json").unlink()
    h = Harness(settings)
    h.verifier._clock = time.monotonic  # the loop's own clock
    stop = asyncio.Event()
    task = asyncio.create_task(h.verifier.run(stop))
    for _ in range(100):
        if h.sent:
            break
        await asyncio.sleep(0.02)
    assert [r.files for _, r in h.sent] == [["config.json"]]
    stop.set()
    await asyncio.wait_for(task, timeout=5)


async def test_damage_seen_while_the_link_moved_is_not_reported(settings, model, monkeypatch):
    import activities.continuous_verify as cv

    original = cv.check_version
    link = settings.node.root / PATH.lstrip("/")

    def check_then_activate(held, kind, *, stop=None):
        found = original(held, kind, stop=stop)
        (model.parent / "newer").mkdir()
        tmp = link.with_name("swap")
        os.symlink(f".modelferry-versions/{link.name}/newer", tmp)
        os.replace(tmp, link)  # an activation ran meanwhile
        return found

    monkeypatch.setattr(cv, "check_version", check_then_activate)
    (model / "config.json").unlink()  # e.g. an old version being pruned under the check
    assert await Harness(settings).after(0) == []


async def test_a_version_a_download_is_healing_in_place_is_left_alone_until_it_is_done(settings, model):
    import fcntl

    from activities.continuous_verify import MAX_SLEEP

    (model / "config.json").unlink()
    fd = os.open(model / ".modelferry" / "lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as the engine holds it while it writes
    h = Harness(settings)
    try:
        assert await h.after(0) == []
        assert h.verifier.seconds_to_next_check() == MAX_SLEEP
    finally:
        os.close(fd)
    assert await h.after(1) == []  # not looked at again at once
    (report,) = await h.after(MAX_SLEEP)
    assert report.files == ["config.json"]
