"""The watcher end to end over a cluster backend, with a recording gateway: what reaches Temporal
for each kind of change, and that one stuck object blocks no other. The watcher writes no status:
the gateway stands in for the model's workflow, which writes a refused spec's InvalidSpec."""

from __future__ import annotations

import asyncio
from typing import Any

from watcher_builders import model_obj
from watcher_fakes import RecordingGateway, until
from watcher_harness import watching

from modelferry.names import FINALIZER, ModelKind
from watcher.decide import Apply, Delete, Ignore

BM = ModelKind.BASE_MODEL
NS = "team-a"


def fresh(name: str, **kwargs: Any) -> dict[str, Any]:
    obj = model_obj(name, namespace=NS, **kwargs)
    obj["metadata"].pop("uid")
    obj["metadata"].pop("resourceVersion")
    return obj


async def test_apply_once_status_ignored_generation_bump_applies(backend: Any) -> None:
    backend.set_node("n1", {"gpu": "a100"})
    backend.create(fresh("llama"))
    async with watching(backend) as w:
        await until(lambda: len(w.gateway.of("apply")) == 1)
        backend.write_status(BM, "llama", NS, {"state": "Importing"})
        handled = await w.settled("llama", 2)
        assert [type(d) for d in handled[1][1]] == [Ignore]  # our own kind of write: nothing to do
        spec = backend.get(BM, "llama", NS)["spec"]
        spec["storage"]["storageUri"] = "hf://meta-llama/Llama-3-8B@main"
        backend.update_spec(BM, "llama", NS, spec)
        await until(lambda: len(w.gateway.of("apply")) == 2)
        generations = [call[2].generation for call in w.gateway.of("apply")]
        assert generations[1] == generations[0] + 1
        assert w.gateway.of("apply")[1][2].spec.storage.storage_uri.endswith("@main")
        assert w.gateway.calls == w.gateway.of("apply")  # nothing else was sent


async def test_delete_with_finalizer_deletes_once(backend: Any) -> None:
    backend.create(fresh("llama", finalizer=True))
    async with watching(backend) as w:
        await until(lambda: len(w.gateway.of("apply")) == 1)
        backend.delete(BM, "llama", NS)
        await until(lambda: len(w.gateway.of("delete")) == 1)
        ref = w.gateway.of("delete")[0][1]
        assert (ref.kind, ref.namespace, ref.name) == (BM, NS, "llama")
        assert ref.uid == w.gateway.of("apply")[0][1].uid
        backend.remove_finalizers(BM, "llama", NS)  # what the workflow does when cleanup is done
        handled = await w.settled("llama", 3)
        assert [type(d) for d in handled[-1][1]] == [Ignore]
        assert len(w.gateway.of("delete")) == 1


async def test_gone_without_finalizer_still_cleans_up(backend: Any) -> None:
    backend.create(fresh("llama"))
    async with watching(backend) as w:
        await until(lambda: len(w.gateway.of("apply")) == 1)
        backend.delete(BM, "llama", NS)
        await until(lambda: len(w.gateway.of("delete")) == 1)


async def test_node_relabel_nudges_exactly_the_affected_model(backend: Any) -> None:
    backend.set_node("n1", {"gpu": "a100"})
    backend.set_node("n2", {"gpu": "h100"})
    backend.create(fresh("on-a100", node_selector={"gpu": "a100"}))
    backend.create(fresh("on-h100", node_selector={"gpu": "h100"}))
    backend.create(fresh("big-disk", node_selector={"disk": "big"}))
    async with watching(backend) as w:
        await until(lambda: len(w.gateway.of("apply")) == 3)
        assert w.gateway.of("placement") == []  # the initial node list is knowledge, not news
        backend.set_node("n1", {"gpu": "a100", "disk": "big"})
        await until(lambda: len(w.gateway.of("placement")) >= 1)
        backend.set_node("n2", {"gpu": "h100", "zone": "b"})  # irrelevant to every model
        backend.set_node("n3", {"disk": "big"})  # a new node for big-disk only
        await until(lambda: len(w.gateway.of("placement")) >= 2)
        await asyncio.sleep(0.2)
        placements = [(call[1].name, call[2]) for call in w.gateway.of("placement")]
        assert [name for name, _ in placements] == ["big-disk", "big-disk"]
        assert "node n1 changed labels: eligible" in placements[0][1]
        assert "node n3 appeared: eligible" in placements[1][1]
        backend.remove_node("n3")
        await until(lambda: len(w.gateway.of("placement")) == 3)
        assert w.gateway.of("placement")[2][1].name == "big-disk"


async def test_malformed_resource_is_marked_failed_and_the_next_one_still_applies(backend: Any) -> None:
    # Refused by the watcher, not at apply time: no CRD rule can see the resource's own namespace.
    backend.create(fresh("broken", uri="pvc://someone-else:claim/model"))
    async with watching(backend) as w:
        await until(lambda: (backend.get(BM, "broken", NS).get("status") or {}).get("state") == "Failed")
        backend.create(fresh("fine"))
        await until(lambda: [c[1].name for c in w.gateway.of("apply")] == ["fine"])
        status = backend.get(BM, "broken", NS)["status"]
        [ready] = [c for c in status["conditions"] if c["type"] == "Ready"]
        assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
        assert ready["message"].startswith("spec.storage.storageUri: ")
        assert "someone-else" in ready["message"]
        assert ready["observedGeneration"] == status["observedGeneration"] == 1
        [(_, ref, invalid)] = w.gateway.of("invalid")  # the workflow was told, and only it wrote
        assert (ref.name, invalid.generation, invalid.field) == ("broken", 1, "spec.storage.storageUri")
        # The workflow's status write comes back as MODIFIED with the same generation: no second signal.
        await w.settled("broken", 2)
        await asyncio.sleep(0.2)
        assert [type(d) for d in w.handled_for("broken")[1][1]] == [Ignore]
        assert sum(1 for h in w.handled_for("broken") for d in h[1] if not isinstance(d, Ignore)) == 1


async def test_a_failing_act_is_retried_without_blocking_other_objects(backend: Any) -> None:
    gateway = RecordingGateway(down={"stuck"})
    backend.create(fresh("stuck"))
    async with watching(backend, gateway) as w:
        await until(lambda: gateway.attempts >= 3)  # retried with backoff ...
        backend.create(fresh("free"))
        await until(lambda: [c[1].name for c in gateway.of("apply")] == ["free"])  # ... others go on
        gateway.down.clear()  # Temporal is back
        await until(lambda: sorted(c[1].name for c in gateway.of("apply")) == ["free", "stuck"])
        assert len(w.handled_for("stuck")) == 1  # one event, carried out after several attempts


async def test_objects_waiting_to_retry_hold_no_slot(backend: Any) -> None:
    gateway = RecordingGateway(down={"stuck-1", "stuck-2"})
    backend.create(fresh("stuck-1"))
    backend.create(fresh("stuck-2"))
    async with watching(backend, gateway, max_parallel=1):
        await until(lambda: gateway.attempts >= 4)
        backend.create(fresh("free"))
        await until(lambda: [c[1].name for c in gateway.of("apply")] == ["free"])


async def test_a_restarted_watcher_applies_the_same_generation_again(backend: Any) -> None:
    """A new watcher knows nothing, so it re-applies every model; the gateway sees the same
    generation and uid again, and the workflow (stable ID, signal-with-start) drops it."""
    backend.create(fresh("llama", finalizer=True))
    async with watching(backend) as first:
        await until(lambda: len(first.gateway.of("apply")) == 1)
    async with watching(backend) as second:
        await until(lambda: len(second.gateway.of("apply")) == 1)
    one, two = first.gateway.of("apply")[0], second.gateway.of("apply")[0]
    assert one[1] == two[1]
    assert (one[2].generation, one[2].uid, one[2].spec) == (two[2].generation, two[2].uid, two[2].spec)
    assert FINALIZER in backend.get(BM, "llama", NS)["metadata"]["finalizers"]


async def test_recreated_under_the_same_name_deletes_the_old_incarnation(backend: Any) -> None:
    backend.create(fresh("llama"))
    async with watching(backend) as w:
        await until(lambda: len(w.gateway.of("apply")) == 1)
        old_uid = w.gateway.of("apply")[0][1].uid
        backend.delete(BM, "llama", NS)
        backend.create(fresh("llama"))
        await until(lambda: len(w.gateway.of("apply")) == 2)
        deletes = w.gateway.of("delete")
        assert [c[1].uid for c in deletes] == [old_uid]
        assert w.gateway.of("apply")[1][1].uid != old_uid
        kinds = [type(d) for h in w.handled_for("llama") for d in h[1]]
        assert kinds == [Apply, Delete, Apply]
