"""The three PATCH formats as pure functions: RFC 7386, RFC 6902 and strategic merge patch."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelferry.apiserver.patch import PatchError, json_patch, merge_patch, strategic_merge_patch

DOC: dict[str, Any] = {
    "metadata": {"name": "n", "labels": {"a": "1", "b": "2"}, "finalizers": ["x/one"]},
    "spec": {"list": [1, 2], "nested": {"k": "v"}},
}


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"metadata": {"labels": {"a": None, "c": "3"}}}, {"a": None, "b": "2", "c": "3"}),
        ({"metadata": {"labels": None}}, None),
        ({"metadata": {"labels": {"a": {"deep": "x"}}}}, {"a": {"deep": "x"}, "b": "2"}),
    ],
)
def test_merge_patch_labels(patch: dict[str, Any], expected: dict[str, Any] | None) -> None:
    result = merge_patch(DOC, patch)
    if expected is None:
        assert "labels" not in result["metadata"]
    else:
        assert result["metadata"]["labels"] == {k: v for k, v in expected.items() if v is not None}


def test_merge_patch_replaces_lists_and_leaves_input_alone() -> None:
    before = copy.deepcopy(DOC)
    result = merge_patch(DOC, {"spec": {"list": [3]}})
    assert result["spec"]["list"] == [3] and before == DOC


@pytest.mark.parametrize(
    ("ops", "path", "value"),
    [
        ([{"op": "add", "path": "/spec/vendor", "value": "acme"}], ("spec", "vendor"), "acme"),
        ([{"op": "add", "path": "/spec/list/-", "value": 3}], ("spec", "list"), [1, 2, 3]),
        ([{"op": "add", "path": "/spec/list/0", "value": 0}], ("spec", "list"), [0, 1, 2]),
        ([{"op": "replace", "path": "/spec/nested/k", "value": "w"}], ("spec", "nested"), {"k": "w"}),
        ([{"op": "remove", "path": "/spec/list/1"}], ("spec", "list"), [1]),
        ([{"op": "move", "from": "/spec/nested/k", "path": "/spec/moved"}], ("spec", "moved"), "v"),
        ([{"op": "copy", "from": "/spec/nested", "path": "/spec/copy"}], ("spec", "copy"), {"k": "v"}),
        ([{"op": "test", "path": "/spec/nested/k", "value": "v"}], ("spec", "nested"), {"k": "v"}),
        (
            [{"op": "add", "path": "/metadata/labels/a~1b", "value": "x"}],
            ("metadata", "labels"),
            {"a": "1", "b": "2", "a/b": "x"},
        ),
    ],
)
def test_json_patch(ops: list[dict[str, Any]], path: tuple[str, ...], value: Any) -> None:
    result = json_patch(DOC, ops)
    for key in path:
        result = result[key]
    assert result == value


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/spec/nested/k", "value": "other"}],
        [{"op": "replace", "path": "/spec/missing", "value": 1}],
        [{"op": "remove", "path": "/spec/list/5"}],
        [{"op": "add", "path": "/nope/deeper", "value": 1}],
        [{"op": "frobnicate", "path": "/spec"}],
        {"op": "add"},
    ],
)
def test_json_patch_errors(ops: Any) -> None:
    with pytest.raises(PatchError):
        json_patch(DOC, ops)


def test_strategic_merge_patch_deletes_labels_with_null() -> None:
    result = strategic_merge_patch(DOC, {"metadata": {"labels": {"a": None, "z": "9"}}})
    assert result["metadata"]["labels"] == {"b": "2", "z": "9"}


def test_strategic_merge_patch_merges_containers_by_name_and_finalizers_as_a_set() -> None:
    pod = {
        "metadata": {"finalizers": ["x/one"]},
        "spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]},
    }
    patch = {
        "metadata": {"finalizers": ["x/two", "x/one"]},
        "spec": {
            "containers": [
                {"name": "b", "image": "2"},
                {"name": "c", "image": "1"},
                {"name": "a", "$patch": "delete"},
            ]
        },
    }
    result = strategic_merge_patch(pod, patch)
    assert result["metadata"]["finalizers"] == ["x/one", "x/two"]
    assert result["spec"]["containers"] == [{"name": "b", "image": "2"}, {"name": "c", "image": "1"}]


def test_strategic_merge_patch_directives() -> None:
    doc = {"spec": {"selector": {"a": "1", "b": "2"}, "args": ["x", "y"], "keep": {"k": 1}}}
    result = strategic_merge_patch(
        doc,
        {
            "spec": {
                "selector": {"$patch": "replace", "c": "3"},
                "$deleteFromPrimitiveList/args": ["x"],
                "$setElementOrder/args": ["y"],
                "keep": {"$patch": "delete"},
            }
        },
    )
    assert result == {"spec": {"selector": {"c": "3"}, "args": ["y"]}}


def test_strategic_merge_patch_replaces_lists_without_a_merge_key() -> None:
    doc = {"spec": {"tolerations": [{"operator": "Exists"}]}}
    result = strategic_merge_patch(doc, {"spec": {"tolerations": [{"key": "gpu"}]}})
    assert result["spec"]["tolerations"] == [{"key": "gpu"}]
