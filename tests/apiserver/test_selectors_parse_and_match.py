"""Label and field selectors: the Kubernetes grammar, table-driven."""

from __future__ import annotations

import pytest

from modelferry.apiserver.errors import ApiError
from modelferry.apiserver.selectors import (
    fields_match,
    labels_match,
    make_matcher,
    parse_field_selector,
    parse_label_selector,
)


def obj(labels: dict[str, str] | None = None, **fields: object) -> dict[str, object]:
    return {"metadata": {"name": "x", "namespace": "ns", "labels": labels or {}}, **fields}


GOLD = obj({"tier": "gold", "suite": "a"})
SILVER = obj({"tier": "silver", "suite": "a"})
NONE = obj({"suite": "a"})
NUMBERED = obj({"replicas": "3"})


@pytest.mark.parametrize(
    ("selector", "matching"),
    [
        ("", {"GOLD", "SILVER", "NONE", "NUMBERED"}),
        ("tier=gold", {"GOLD"}),
        ("tier==gold", {"GOLD"}),
        ("tier!=gold", {"SILVER", "NONE", "NUMBERED"}),
        ("tier in (gold,silver)", {"GOLD", "SILVER"}),
        ("tier in ( gold , silver )", {"GOLD", "SILVER"}),
        ("tier notin (gold)", {"SILVER", "NONE", "NUMBERED"}),
        ("tier", {"GOLD", "SILVER"}),
        ("!tier", {"NONE", "NUMBERED"}),
        ("suite=a,tier in (gold,silver),tier!=silver", {"GOLD"}),
        ("replicas>2", {"NUMBERED"}),
        ("replicas<3", set()),
        ("example.com/key=v", set()),
    ],
)
def test_label_selector(selector: str, matching: set[str]) -> None:
    reqs = parse_label_selector(selector)
    objects = {"GOLD": GOLD, "SILVER": SILVER, "NONE": NONE, "NUMBERED": NUMBERED}
    assert {name for name, o in objects.items() if labels_match(reqs, o)} == matching


@pytest.mark.parametrize("selector", ["tier in ()", "=x", "tier===x", "bad key=1", "tier=in valid", "k>x"])
def test_bad_label_selector_is_400(selector: str) -> None:
    with pytest.raises(ApiError) as e:
        parse_label_selector(selector)
    assert e.value.code == 400


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("metadata.name=x", True),
        ("metadata.name==x", True),
        ("metadata.name!=x", False),
        ("metadata.namespace=ns,metadata.name=x", True),
        ("spec.nodeName=n1", True),
        ("spec.nodeName=n1,status.phase!=Failed,status.phase!=Succeeded", True),
        ("status.phase=Running", False),
        ("spec.unschedulable=false", False),
        ("spec.hostNetwork=true", True),
    ],
)
def test_field_selector(selector: str, expected: bool) -> None:
    pod = obj(spec={"nodeName": "n1", "hostNetwork": True}, status={"phase": "Pending"})
    allowed = (
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "status.phase",
        "spec.unschedulable",
        "spec.hostNetwork",
    )
    assert fields_match(parse_field_selector(selector, allowed, kind="Pod"), pod) is expected


def test_field_selector_on_an_unsupported_field_is_400() -> None:
    with pytest.raises(ApiError) as e:
        parse_field_selector("spec.vendor=acme", ("metadata.name", "metadata.namespace"), kind="Widget")
    assert e.value.code == 400 and "spec.vendor" in e.value.message


def test_field_selector_values_may_escape_commas() -> None:
    reqs = parse_field_selector(r"metadata.name=a\,b", ("metadata.name",), kind="ConfigMap")
    assert fields_match(reqs, {"metadata": {"name": "a,b"}})


def test_matcher_combines_namespace_labels_and_fields() -> None:
    match = make_matcher(
        namespace="ns",
        labels=parse_label_selector("tier=gold"),
        fields=parse_field_selector("metadata.name=x", ("metadata.name",), kind="ConfigMap"),
    )
    assert match(GOLD)
    assert not match(SILVER)
    assert not make_matcher(namespace="other", labels=(), fields=())(GOLD)
