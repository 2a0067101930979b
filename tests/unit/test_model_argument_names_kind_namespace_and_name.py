"""The CLI's MODEL argument: short and long kind names, case-insensitive, namespaced only for a
BaseModel; a bad value is named in the error with the accepted forms."""

from __future__ import annotations

import pytest

from modelferry.messages import ModelRef
from modelferry.modelarg import parse_model_arg, short_name
from modelferry.names import ModelKind

BM, CBM, FTW = ModelKind.BASE_MODEL, ModelKind.CLUSTER_BASE_MODEL, ModelKind.FINE_TUNED_WEIGHT


@pytest.mark.parametrize(
    ("text", "kind", "namespace", "name"),
    [
        ("cbm/llama", CBM, None, "llama"),
        ("CBM/llama", CBM, None, "llama"),
        ("clusterbasemodel/llama", CBM, None, "llama"),
        ("ClusterBaseModel/llama", CBM, None, "llama"),
        ("clusterbasemodels/llama", CBM, None, "llama"),
        ("bm/team-a/llama", BM, "team-a", "llama"),
        ("BaseModel/team-a/llama", BM, "team-a", "llama"),
        ("ftw/adapter", FTW, None, "adapter"),
        ("FineTunedWeight/adapter", FTW, None, "adapter"),
        (" cbm/llama ", CBM, None, "llama"),
    ],
)
def test_accepted_forms(text: str, kind: ModelKind, namespace: str | None, name: str) -> None:
    assert parse_model_arg(text) == ModelRef(kind=kind, namespace=namespace, name=name)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("llama", "unknown kind 'llama'"),
        ("model/llama", "unknown kind 'model'"),
        ("", "unknown kind ''"),
        ("bm/llama", "BaseModel is namespaced, so write KIND/NAMESPACE/NAME"),
        ("bm/ns/", "BaseModel is namespaced"),
        ("cbm/ns/llama", "ClusterBaseModel is cluster-scoped, so write KIND/NAME"),
        ("ftw/ns/adapter", "FineTunedWeight is cluster-scoped"),
        ("cbm/", "cluster-scoped"),
    ],
)
def test_refusals_name_the_value_and_the_forms(text: str, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_model_arg(text)
    message = str(caught.value)
    assert says in message
    assert repr(text) in message
    assert "cbm/NAME, bm/NAMESPACE/NAME or ftw/NAME" in message


@pytest.mark.parametrize("text", ["cbm/llama", "bm/team-a/llama", "ftw/adapter"])
def test_short_name_reads_back(text: str) -> None:
    assert short_name(parse_model_arg(text)) == text
