"""Our CRDs are a superset of OME's (tests/data/ome-crds/, OME's current controller-gen output):
every field OME's schema declares exists in ours with the same type, format, enum and default, so
every resource OME's CRD accepts is accepted and stored the same way by ours; ours only adds
(status conditions and observedGeneration, the `storageKey` alias, our rules).

The few differences are listed, each with why, so a new one fails here instead of at apply time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelferry.names import ModelKind
from modelferry.spec import crdgen

OME_CRDS = Path(__file__).resolve().parents[1] / "data" / "ome-crds"
COMPARED = ("type", "format", "default", "x-kubernetes-list-type", "x-kubernetes-map-type")

# Where ours is wider than OME's on purpose (each value: what OME's has, and why ours differs).
WIDER_TYPE = {
    # Some tools write the configuration as a JSON string; ours accepts both, so it is untyped.
    ".spec.modelConfiguration": "object",
}
EXTRA_ENUM = {
    # States other tools write (see modelferry/spec/status.py); modelferry itself writes none.
    ".status.state": {"Updating", "Deleting"},
}
EXTRA_REQUIRED = {
    # A model without a spec is meaningless; `modelferry validate` refuses it too.
    "": {"metadata", "spec"},
}
# Ours and only ours: the status fields of a Kubernetes controller, and the input alias.
OURS_ONLY = {".status.conditions", ".status.observedGeneration", ".spec.storage.storageKey"}


def fields(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (path, schema) below `node`: `.a.b` for properties, `[]` for items, `{}` for map values."""
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from fields(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from fields(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from fields(node["additionalProperties"], f"{path}{{}}")


def schema_of(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1beta1"
    return dict(version["schema"]["openAPIV3Schema"])


def ome_crd(kind: ModelKind) -> dict[str, Any]:
    return dict(yaml.safe_load((OME_CRDS / crdgen.crd_file_name(kind)).read_text()))


KINDS = list(ModelKind)


@pytest.mark.parametrize("kind", KINDS, ids=[k.value for k in KINDS])
def test_every_ome_field_is_ours_with_the_same_type_format_enum_and_default(kind: ModelKind) -> None:
    ours = dict(fields(schema_of(crdgen.build_crd(kind))))
    theirs = dict(fields(schema_of(ome_crd(kind))))
    assert len(theirs) > 50  # the comparison really walked OME's schema
    differences = []
    for path, node in theirs.items():
        if path not in ours:
            differences.append(f"{path}: missing")
            continue
        mine = ours[path]
        for key in COMPARED:
            if key == "type" and path in WIDER_TYPE:
                assert (node.get("type"), "type" in mine) == (WIDER_TYPE[path], False), path
                assert mine.get("x-kubernetes-preserve-unknown-fields") is True, path
                continue
            if node.get(key) != mine.get(key):
                differences.append(f"{path}: {key} is {mine.get(key)!r}, OME's {node.get(key)!r}")
        if set(node.get("enum") or ()) | EXTRA_ENUM.get(path, set()) != set(mine.get("enum") or ()):
            differences.append(f"{path}: enum {mine.get('enum')!r}, OME's {node.get('enum')!r}")
        extra_required = set(mine.get("required") or ()) - set(node.get("required") or ())
        if extra_required - EXTRA_REQUIRED.get(path, set()):
            differences.append(f"{path}: requires {sorted(extra_required)} too")
        if node.get("x-kubernetes-preserve-unknown-fields") and not mine.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            differences.append(f"{path}: prunes what OME's keeps")
    assert differences == []


@pytest.mark.parametrize("kind", KINDS, ids=[k.value for k in KINDS])
def test_ours_adds_only_status_fields_the_alias_and_rules(kind: ModelKind) -> None:
    ours = dict(fields(schema_of(crdgen.build_crd(kind))))
    theirs = dict(fields(schema_of(ome_crd(kind))))
    added = {p for p in ours if p not in theirs and not any(p.startswith(o) for o in OURS_ONLY)}
    assert added == set()
    assert set(ours) >= OURS_ONLY


@pytest.mark.parametrize("kind", KINDS, ids=[k.value for k in KINDS])
def test_names_and_scope_are_omes(kind: ModelKind) -> None:
    ours, theirs = crdgen.build_crd(kind), ome_crd(kind)
    assert ours["metadata"]["name"] == theirs["metadata"]["name"]
    assert ours["spec"]["scope"] == theirs["spec"]["scope"]
    assert ours["spec"]["group"] == theirs["spec"]["group"]
    for key in ("kind", "listKind", "plural", "singular"):
        assert ours["spec"]["names"][key] == theirs["spec"]["names"][key]
    assert ours["spec"]["versions"][0]["subresources"] == theirs["spec"]["versions"][0]["subresources"]
