"""Checking a hostile spec stays bounded: nesting past MAX_DEPTH is refused on the field that
holds it (before anything recurses over it), and only MAX_PROBLEMS problems are described."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from modelferry.errors import InvalidSpecError
from modelferry.spec import check_resource, parse_resource
from modelferry.spec.parse import MAX_DEPTH, MAX_PROBLEMS


def cbm(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": "ClusterBaseModel",
        "metadata": {"name": "model"},
        "spec": {"storage": {"storageUri": "hf://org/model", "path": "/models/org/model"}, **spec},
    }


def nest(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):  # objects and lists in turn, an object outermost
        value = {"a": value} if (depth - 1 - i) % 2 == 0 else [value]
    return value


@pytest.mark.parametrize(
    ("spec", "field", "valid"),
    [
        # The root is level 0, spec 1, the value's outermost object 2 and its innermost MAX_DEPTH.
        ({"modelConfiguration": nest(MAX_DEPTH - 1)}, "", True),
        ({"modelConfiguration": nest(MAX_DEPTH)}, "spec.modelConfiguration", False),
        ({"modelConfiguration": nest(50_000)}, "spec.modelConfiguration", False),
        ({"modelConfiguration": {"layers": nest(5_000)}}, "spec.modelConfiguration", False),
        ({"modelFormat": nest(5_000)}, "spec.modelFormat", False),
    ],
    ids=["at the limit", "one past", "50000 deep", "deep inside", "deep where an object belongs"],
)
def test_nesting_is_refused_past_the_limit(spec: dict[str, Any], field: str, valid: bool) -> None:
    check = check_resource(cbm(**spec))
    assert check.valid is valid
    if not valid:
        assert [p.field for p in check.problems] == [field]
        assert check.problems[0].rule == f"nests deeper than {MAX_DEPTH} levels from the document's root"


def test_self_referencing_yaml_alias_is_refused() -> None:
    doc = yaml.safe_load(
        "apiVersion: ome.io/v1beta1\nkind: ClusterBaseModel\nmetadata: {name: model}\n"
        "spec:\n  storage: {storageUri: 'hf://org/model'}\n  modelConfiguration: &loop {self: *loop}\n"
    )
    assert doc["spec"]["modelConfiguration"]["self"] is doc["spec"]["modelConfiguration"]
    check = check_resource(doc)
    assert [p.field for p in check.problems] == ["spec.modelConfiguration"]


def test_json_string_nested_too_deeply_is_a_problem_not_a_crash() -> None:
    check = check_resource(cbm(modelConfiguration="[" * 100_000))
    assert [p.field for p in check.problems] == ["spec"]


def test_many_unknown_fields_are_counted_not_each_described() -> None:
    unknown = {f"field{i}": i for i in range(20_000)}
    check = check_resource(cbm(**unknown))
    assert len(check.problems) == MAX_PROBLEMS
    assert check.omitted == 20_000 - MAX_PROBLEMS
    assert check.problems[0].field == "spec.field0"
    with pytest.raises(InvalidSpecError, match=r"\(and 19999 more problems\)"):
        parse_resource(cbm(**unknown))


def test_non_string_key_names_the_entry_not_pydantic_marker() -> None:
    doc = cbm()
    doc["spec"]["storage"]["nodeSelector"] = {1: "a"}
    (problem,) = check_resource(doc).problems
    assert problem.field == "spec.storage.nodeSelector[1]"
    assert problem.rule == "the key 1 must be a string"
