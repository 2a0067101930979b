"""Every ClusterBaseModel in OME's own catalogue (tests/data/ome-models) validates and round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelferry.names import API_GROUP_VERSION, ModelKind
from modelferry.spec import ClusterBaseModelResource, check_resource, parse_resource

CORPUS = Path(__file__).resolve().parents[1] / "data" / "ome-models"
CORPUS_FILES = sorted(CORPUS.rglob("*.yaml"))


def test_corpus_is_complete() -> None:
    assert len(CORPUS_FILES) == 207
    assert len({p.parent.name for p in CORPUS_FILES}) > 40  # vendor subfolders kept


def test_every_corpus_resource_parses_and_round_trips() -> None:
    failures = []
    for path in CORPUS_FILES:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert len(docs) == 1, path
        doc = docs[0]
        check = check_resource(doc)
        if not check.valid or check.resource is None:
            failures.append(f"{path.relative_to(CORPUS)}: {check.problems}")
            continue
        resource = check.resource
        assert isinstance(resource, ClusterBaseModelResource)
        assert resource.model_kind is ModelKind.CLUSTER_BASE_MODEL
        assert resource.api_version == API_GROUP_VERSION
        # What we write back is exactly what OME wrote (including `key`, not `storageKey`).
        assert resource.to_wire() == doc, path
    assert failures == []


def test_corpus_values_are_typed() -> None:
    path = CORPUS / "meta" / "Llama-3.1-8B-Instruct.yaml"
    resource = parse_resource(yaml.safe_load(path.read_text()), source=str(path))
    assert resource.metadata.name == "llama-3-1-8b-instruct"
    assert resource.storage.storage_uri == "hf://meta-llama/Llama-3.1-8B-Instruct"
    assert resource.storage.storage_key == "hf-token"
    assert resource.storage.path == "/raid/models/meta/llama-3-1-8b-instruct"
    assert resource.spec.disabled is False


@pytest.mark.parametrize("path", CORPUS_FILES[:: len(CORPUS_FILES) // 5], ids=lambda p: p.stem)
def test_corpus_resource_parses_as_namespaced_base_model_too(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    doc = {**doc, "kind": "BaseModel", "metadata": {**doc["metadata"], "namespace": "team-a"}}
    assert parse_resource(doc).model_kind is ModelKind.BASE_MODEL
