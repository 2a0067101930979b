"""Status aggregation: state, nodesReady/nodesFailed, conditions, write-only-on-change."""

import pytest

from modelferry.messages import NodeOutcome
from modelferry.modelstatus import desired_status, merge_transition_times, status_changed


def outcome(node: str, state: str, reason: str = "", message: str = "") -> NodeOutcome:
    return NodeOutcome(node=node, state=state, reason=reason, message=message)


@pytest.mark.parametrize(
    ("eligible", "outcomes", "state", "ready_reason", "ready", "failed"),
    [
        (["a", "b"], {}, "Creating", "InProgress", [], []),
        (["a", "b"], {"a": outcome("a", "Ready")}, "Creating", "InProgress", ["a"], []),
        (["a"], {"a": outcome("a", "Updating")}, "Creating", "InProgress", [], []),
        (
            ["a", "b"],
            {"a": outcome("a", "Ready"), "b": outcome("b", "Ready")},
            "Ready",
            "AllNodesReady",
            ["a", "b"],
            [],
        ),
        (
            ["a", "b"],
            {"a": outcome("a", "Ready"), "b": outcome("b", "Failed", "X", "boom")},
            "Ready",
            "SomeNodesReady",
            ["a"],
            ["b"],
        ),
        (
            ["a"],
            {"a": outcome("a", "Failed", "GatedRepoError", "gated")},
            "Failed",
            "AllNodesFailed",
            [],
            ["a"],
        ),
        ([], {}, "Failed", "NoEligibleNodes", [], []),
        # an outcome for a node that is no longer eligible does not count
        (
            ["a"],
            {"a": outcome("a", "Ready"), "z": outcome("z", "Failed")},
            "Ready",
            "AllNodesReady",
            ["a"],
            [],
        ),
    ],
)
def test_state_and_ready_condition(eligible, outcomes, state, ready_reason, ready, failed):
    status = desired_status(generation=3, eligible=eligible, outcomes=outcomes)
    assert status["state"] == state
    assert status["nodesReady"] == ready
    assert status["nodesFailed"] == failed
    assert status["observedGeneration"] == 3
    cond = {c["type"]: c for c in status["conditions"]}
    assert cond["Ready"]["reason"] == ready_reason
    assert cond["Ready"]["status"] == ("True" if state == "Ready" else "False")
    assert cond["Degraded"]["status"] == ("True" if failed else "False")


def test_failure_reason_reaches_the_ready_condition_message():
    status = desired_status(
        generation=1,
        eligible=["n1"],
        outcomes={"n1": outcome("n1", "Failed", "GatedRepoError", "gated: request access")},
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert "n1: GatedRepoError: gated: request access" in ready["message"]


def test_disabled_reason_is_named():
    status = desired_status(
        generation=1,
        eligible=[],
        outcomes={},
        no_nodes_reason="Disabled",
        no_nodes_message="the model is disabled",
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["message"]) == ("Disabled", "the model is disabled")


def test_write_only_when_changed_ignores_timestamps():
    desired = desired_status(generation=2, eligible=["a"], outcomes={"a": outcome("a", "Ready")})
    current = merge_transition_times(None, desired, now="2026-01-01T00:00:00Z")
    assert not status_changed(current, desired)
    assert status_changed(current, {**desired, "observedGeneration": 3})
    assert status_changed(None, desired)
    # fields we do not own are left alone
    assert not status_changed({**current, "lifecycle": "x"}, desired)


def test_transition_time_kept_until_status_flips():
    first = desired_status(generation=1, eligible=["a"], outcomes={})
    written = merge_transition_times(None, first, now="T1")
    same = merge_transition_times(
        written, desired_status(generation=2, eligible=["a"], outcomes={}), now="T2"
    )
    assert {c["lastTransitionTime"] for c in same["conditions"]} == {"T1"}
    flipped = merge_transition_times(
        written, desired_status(generation=2, eligible=["a"], outcomes={"a": outcome("a", "Ready")}), now="T3"
    )
    times = {c["type"]: c["lastTransitionTime"] for c in flipped["conditions"]}
    assert times["Ready"] == "T3" and times["Progressing"] == "T3"


def test_deletion_is_reported_in_conditions_without_a_state_ome_does_not_know():
    status = desired_status(
        generation=4, eligible=["a"], outcomes={"a": outcome("a", "Ready")}, deleting=True
    )
    assert "state" not in status
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Deleting")


def _conditions(status: dict) -> dict[str, dict]:
    return {c["type"]: c for c in status["conditions"]}


@pytest.mark.parametrize(
    ("updating", "update_failures", "progressing", "degraded"),
    [
        # a Ready node fetching a newer version stays Ready; the model shows Progressing=Updating
        (["a"], {}, ("True", "Updating", "a"), ("False", "NoFailures")),
        # its newer version failed: still Ready, Degraded names the failure and the rollback
        (
            [],
            {"a": outcome("a", "Failed", "NotFound", "no such repo")},
            ("False", "Idle", ""),
            ("True", "UpdateFailed"),
        ),
        # a node not Ready is never "updating": it is simply in progress
        (["b"], {}, ("True", "Downloading", "b"), ("False", "NoFailures")),
    ],
)
def test_an_update_beside_a_serving_version_keeps_the_model_ready(
    updating, update_failures, progressing, degraded
):
    outcomes = {"a": outcome("a", "Ready")}
    status = desired_status(
        generation=4,
        eligible=["a", "b"] if "b" in updating else ["a"],
        outcomes=outcomes,
        updating=updating,
        update_failures=update_failures,
    )
    conditions = _conditions(status)
    assert "a" in status["nodesReady"]
    assert (
        conditions["Progressing"]["status"],
        conditions["Progressing"]["reason"],
        conditions["Progressing"]["message"],
    ) == progressing
    assert (conditions["Degraded"]["status"], conditions["Degraded"]["reason"]) == degraded
    if update_failures:
        assert "no such repo" in conditions["Degraded"]["message"]
        assert "previous version still serving" in conditions["Degraded"]["message"]
        assert status["state"] == "Ready" and conditions["Ready"]["status"] == "True"
