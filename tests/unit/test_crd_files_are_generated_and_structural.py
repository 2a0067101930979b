"""deploy/crd/ is exactly what the generator makes from the models, and the schemas are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from modelferry.names import ModelKind
from modelferry.spec import crdgen

CRD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "crd"


def test_checked_in_files_match_the_generator() -> None:
    rendered = crdgen.render_files()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in CRD_DIR.glob("*.yaml")}
    # On a mismatch run: python -m modelferry.spec.crdgen
    assert on_disk == rendered


def test_check_mode_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / crdgen.crd_file_name(ModelKind.BASE_MODEL)).write_text("edited\n")
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1
    assert "ome.io_basemodels.yaml" in capsys.readouterr().out


def test_kustomization_lists_every_crd() -> None:
    kustomization = yaml.safe_load((CRD_DIR / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in CRD_DIR.glob("ome.io_*.yaml"))


@pytest.mark.parametrize(
    ("kind", "scope", "short"),
    [
        (ModelKind.BASE_MODEL, "Namespaced", "bm"),
        (ModelKind.CLUSTER_BASE_MODEL, "Cluster", "cbm"),
        (ModelKind.FINE_TUNED_WEIGHT, "Cluster", "ftw"),
    ],
)
def test_crd_names_scope_columns_and_status(kind: ModelKind, scope: str, short: str) -> None:
    crd = yaml.safe_load((CRD_DIR / crdgen.crd_file_name(kind)).read_text())
    assert crd["metadata"]["name"] == f"{kind.plural}.ome.io"
    spec = crd["spec"]
    assert spec["scope"] == scope
    assert short in spec["names"]["shortNames"] and "ome" in spec["names"]["categories"]
    (version,) = spec["versions"]
    assert version["name"] == "v1beta1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Type"] == ".spec.modelType"
    assert columns["State"] == ".status.state"
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Reason"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert columns["Age"] == ".metadata.creationTimestamp"
    if kind is not ModelKind.FINE_TUNED_WEIGHT:
        assert columns["Vendor"] == ".spec.vendor"
        assert columns["Params"] == ".spec.modelParameterSize"
    defaults: dict[str, Any] = {}
    assert_structural(version["schema"]["openAPIV3Schema"], path="", defaults=defaults)
    # Only OME's own defaults: anything else would change stored objects OME leaves alone.
    expected = {
        f".spec.{field}.{key}": value
        for field in ("modelFormat", "modelFramework")
        for key, value in (("operator", "Equal"), ("weight", 1))
    }
    assert defaults == ({} if kind is ModelKind.FINE_TUNED_WEIGHT else expected)


def assert_structural(node: dict[str, Any], *, path: str, defaults: dict[str, Any] | None = None) -> None:
    """Kubernetes' structural-schema rules, as far as our generator could break them; the
    defaults found are collected in `defaults` by path."""
    for forbidden in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title"):
        assert forbidden not in node, f"{path}: {forbidden}"
    if "default" in node and defaults is not None:
        defaults[path] = node["default"]
    untyped_ok = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
    assert "type" in node or untyped_ok, f"{path}: no type"
    assert not ("properties" in node and "additionalProperties" in node), f"{path}: both"
    assert not isinstance(node.get("additionalProperties"), bool), f"{path}: boolean additionalProperties"
    for name, sub in node.get("properties", {}).items():
        assert_structural(sub, path=f"{path}.{name}", defaults=defaults)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            assert_structural(node[key], path=f"{path}.{key}", defaults=defaults)


def test_free_form_and_any_json_fields_preserve_unknown_fields() -> None:
    spec = crdgen.openapi_schema(ModelKind.FINE_TUNED_WEIGHT)["properties"]["spec"]["properties"]
    assert spec["hyperParameters"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    base = crdgen.openapi_schema(ModelKind.BASE_MODEL)["properties"]["spec"]["properties"]
    assert "type" not in base["modelConfiguration"]  # object or JSON string
    assert base["modelConfiguration"]["x-kubernetes-preserve-unknown-fields"] is True
    assert base["storage"]["properties"]["storageKey"]["type"] == "string"  # the input alias


class _IntOrString(BaseModel):
    port: int | str
    maybe: int | str | None = None


class _Union(BaseModel):
    value: int | list[str]


def test_int_or_string_union_becomes_the_kubernetes_extension() -> None:
    raw = _IntOrString.model_json_schema()
    schema = crdgen._translate(raw, raw.pop("$defs", {}), path="")
    assert schema["properties"]["port"] == {"x-kubernetes-int-or-string": True}
    assert schema["properties"]["maybe"] == {"x-kubernetes-int-or-string": True}


def test_a_union_without_structural_form_is_refused() -> None:
    raw = _Union.model_json_schema()
    with pytest.raises(crdgen.SchemaTranslationError, match=r"\.value"):
        crdgen._translate(raw, {}, path="")
