"""Where a node's report entries go (`modelferry.reportsplit`, pure): OME's entries in the ConfigMap
named after the node, documented ones there while it has room and else in overflow ConfigMaps, an
entry left where it is while it fits, writes that add before writes that remove, emptied overflows
deleted, and overflow names that never look like another node's ConfigMap."""

from __future__ import annotations

import pytest

from modelferry.names import overflow_configmap_name, overflow_label_value
from modelferry.reportsplit import (
    NodeReport,
    Write,
    data_size,
    merged_report,
    overflow_index,
    place_entries,
    plan_writes,
)

NODE = "worker"
O2, O3 = overflow_configmap_name(NODE, 2), overflow_configmap_name(NODE, 3)


def v(n: int) -> str:
    return "x" * n


@pytest.mark.parametrize(
    ("report", "entries", "ome_keys", "expected"),
    [
        pytest.param(
            NodeReport(NODE, None),
            {"ns.basemodel.a": v(10), "ns_a": v(10)},
            ["ns.basemodel.a"],
            {NODE: {"ns.basemodel.a": v(10), "ns_a": v(10)}},
            id="room-in-the-primary",
        ),
        pytest.param(
            NodeReport(NODE, {"other": v(50)}),
            {"ns.basemodel.a": v(10), "ns_a": v(10)},
            ["ns.basemodel.a"],
            {NODE: {"other": v(50), "ns.basemodel.a": v(10)}, O2: {"ns_a": v(10)}},
            id="documented-past-its-share-overflows",
        ),
        pytest.param(
            NodeReport(NODE, {"other": v(50)}, {O2: {"big": v(115)}}),
            {"ns.basemodel.a": v(10), "ns_a": v(10)},
            ["ns.basemodel.a"],
            {NODE: {"other": v(50), "ns.basemodel.a": v(10)}, O2: {"big": v(115)}, O3: {"ns_a": v(10)}},
            id="a-full-overflow-gets-a-next-one",
        ),
        pytest.param(
            NodeReport(NODE, {"other": v(50)}, {O2: {"ns_a": v(5)}}),
            {"ns_a": v(20)},
            [],
            {NODE: {"other": v(50)}, O2: {"ns_a": v(20)}},
            id="an-entry-stays-where-it-is",
        ),
        pytest.param(
            NodeReport(NODE, {"ns_a": v(5)}),
            {"ns_a": v(70)},
            [],
            {NODE: {}, O2: {"ns_a": v(70)}},
            id="an-entry-that-outgrows-its-place-moves",
        ),
        pytest.param(
            NodeReport(NODE, {"ns_a": v(5), "x": v(1)}, {O2: {"ns_a": v(5)}}),
            {},
            [],
            {NODE: {"x": v(1)}, O2: {}},
            id="removal-clears-every-copy",
        ),
        pytest.param(
            NodeReport(NODE, {"other": v(110)}),
            {"ns.basemodel.a": v(10)},
            ["ns.basemodel.a"],
            {NODE: {"other": v(110)}, O2: {"ns.basemodel.a": v(10)}},
            id="ome-entry-overflows-only-when-the-primary-is-full",
        ),
    ],
)
def test_entries_go_where_they_are_read(report, entries, ome_keys, expected) -> None:
    keys = ["ns.basemodel.a", "ns_a"]
    layout = place_entries(report, keys=keys, entries=entries, ome_keys=ome_keys, limit=128, primary_docs=64)
    assert layout.objects == expected
    assert all(data_size(d) <= 128 for d in layout.objects.values())


def test_an_entry_bigger_than_a_configmap_is_left_out() -> None:
    layout = place_entries(
        NodeReport(NODE, {}), keys=["k"], entries={"k": v(500)}, limit=128, primary_docs=64
    )
    assert layout.left_out == ("k",) and layout.objects == {NODE: {}}


def test_a_taken_name_is_skipped() -> None:
    layout = place_entries(
        NodeReport(NODE, {"o": v(100)}),
        keys=["k"],
        entries={"k": v(20)},
        taken=[O2],
        limit=128,
        primary_docs=64,
    )
    assert layout.objects[O3] == {"k": v(20)} and O2 not in layout.objects


def test_a_key_held_twice_is_read_from_the_primary_then_the_lowest_overflow() -> None:
    report = NodeReport(NODE, {"a": "1"}, {O3: {"a": "3", "b": "3"}, O2: {"b": "2"}})
    assert merged_report(report) == {"a": "1", "b": "2"}


def test_writes_that_add_come_before_writes_that_only_remove() -> None:
    report = NodeReport(NODE, {"ns_a": v(5), "x": v(1)}, {O2: {"y": v(1)}, O3: {"z": v(1)}})
    layout = place_entries(report, keys=["ns_a"], entries={"ns_a": v(70)}, limit=128, primary_docs=64)
    layout.objects[O3] = {}  # as if z had gone too
    assert plan_writes(report, layout) == [
        Write("replace", O2, {"y": v(1), "ns_a": v(70)}),
        Write("replace", NODE, {"x": v(1)}),
        Write("delete", O3, {}),
    ]


@pytest.mark.parametrize(("delete_empty_primary", "op"), [(False, "replace"), (True, "delete")])
def test_an_emptied_primary_goes_only_with_its_node(delete_empty_primary: bool, op: str) -> None:
    report = NodeReport(NODE, {"ns_a": "1"})
    layout = place_entries(report, keys=["ns_a"], entries={})
    assert plan_writes(report, layout, delete_empty_primary=delete_empty_primary) == [Write(op, NODE, {})]


def test_nothing_changed_writes_nothing() -> None:
    report = NodeReport(NODE, {"ns_a": "1"}, {O2: {"b": "2"}})
    assert plan_writes(report, place_entries(report, keys=["ns_a"], entries={"ns_a": "1"})) == []


@pytest.mark.parametrize(
    "node",
    ["worker", "ip-10-0-0-1.ec2.internal", "n" * 253, "a" * 230 + "." + "b" * 22, "x" * 62 + "-" + "y" * 100],
)
def test_overflow_names_and_labels_are_valid_and_never_another_nodes_name(node: str) -> None:
    import re

    subdomain = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
    label_value = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
    for index in (2, 3, 12):
        name = overflow_configmap_name(node, index)
        assert len(name) <= 253 and subdomain.fullmatch(name)
        assert overflow_index(name) == index
        assert name != f"{node}-{index}"  # `worker` and `worker-2` are both common node names
    value = overflow_label_value(node)
    assert len(value) <= 63 and label_value.fullmatch(value)
    assert overflow_index(node) == 0
    with pytest.raises(ValueError):
        overflow_configmap_name(node, 1)
