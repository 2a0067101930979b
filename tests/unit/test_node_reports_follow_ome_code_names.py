"""Node labels and ConfigMap entries also in the formats OME's code reads today, and the setting that
picks documented, OME or both.

The vectors were derived from OME's `GetBaseModelLabel`, `GetClusterBaseModelLabel` and
`GetModelConfigMapKey` (pkg/constants/constants.go): label names get 49 characters after
`models.ome.io/`, ConfigMap keys 253; a name too long keeps its tail behind the first 8 hex digits
of its sha256 and a dash; when namespace and name must share, a namespace longer than 8 becomes its
8-digit hash and the name gets the rest. Each was cross-checked against an independent Go
reimplementation of that algorithm (standard library only).
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelferry.messages import ModelRef
from modelferry.names import ModelKind, ReportFormat, ome_configmap_key, ome_node_label_key
from modelferry.nodestatus import (
    NodeModelStatus,
    model_labels_patch,
    ome_entry_key,
    ome_entry_value,
    ome_model_config,
    with_entry,
    without_entry,
)
from modelferry.settings import load_settings

BM, CBM = ModelKind.BASE_MODEL, ModelKind.CLUSTER_BASE_MODEL
NAME_32 = "deepseek-r1-distill-qwen-32b-awq"  # exactly what a cluster-scoped label name leaves
NAME_33 = NAME_32 + "2"
NAME_40 = "meta-llama-3-1-405b-instruct-fp8-dynamic"
LONGEST = "model-" * 42 + "x"  # 253 characters, the longest Kubernetes name
NS_63 = "n" * 62 + "s"  # the longest namespace

# (id, kind, namespace, name, label key, ConfigMap key)
VECTORS: list[tuple[str, ModelKind, str | None, str, str, str]] = [
    (
        "cluster, short",
        CBM,
        None,
        "llama-3-8b",
        "models.ome.io/clusterbasemodel.llama-3-8b",
        "clusterbasemodel.llama-3-8b",
    ),
    (
        "cluster, 32 fits the label",
        CBM,
        None,
        NAME_32,
        "models.ome.io/clusterbasemodel.deepseek-r1-distill-qwen-32b-awq",
        "clusterbasemodel.deepseek-r1-distill-qwen-32b-awq",
    ),
    (
        # the hash starts with a digit and stays so: only OME's "tweaks" variant swaps in an "a"
        "cluster, 33 is shortened in the label only",
        CBM,
        None,
        NAME_33,
        "models.ome.io/clusterbasemodel.753d5121-1-distill-qwen-32b-awq2",
        "clusterbasemodel.deepseek-r1-distill-qwen-32b-awq2",
    ),
    (
        "cluster, 40",
        CBM,
        None,
        NAME_40,
        "models.ome.io/clusterbasemodel.d30d2100-5b-instruct-fp8-dynamic",
        "clusterbasemodel.meta-llama-3-1-405b-instruct-fp8-dynamic",
    ),
    (
        "cluster, 253",
        CBM,
        None,
        LONGEST,
        "models.ome.io/clusterbasemodel.2c93c338-del-model-model-model-x",
        "clusterbasemodel.2c93c338-" + LONGEST[-227:],
    ),
    (
        "cluster, 236 fits the key",
        CBM,
        None,
        "c" * 235 + "z",
        "models.ome.io/clusterbasemodel.2373578d-ccccccccccccccccccccccz",
        "clusterbasemodel." + "c" * 235 + "z",
    ),
    (
        "cluster, 237 is shortened in the key",
        CBM,
        None,
        "c" * 236 + "z",
        "models.ome.io/clusterbasemodel.19cdc64b-ccccccccccccccccccccccz",
        "clusterbasemodel.19cdc64b-" + "c" * 226 + "z",
    ),
    (
        "namespaced, short",
        BM,
        "team-a",
        "llama",
        "models.ome.io/team-a.basemodel.llama",
        "team-a.basemodel.llama",
    ),
    (
        "namespaced, 6 + 32 = 38 fits the label",
        BM,
        "team-a",
        NAME_32,
        "models.ome.io/team-a.basemodel.deepseek-r1-distill-qwen-32b-awq",
        "team-a.basemodel.deepseek-r1-distill-qwen-32b-awq",
    ),
    (
        "namespaced, 6 + 33: a short namespace stays, the name is shortened",
        BM,
        "team-a",
        NAME_33,
        "models.ome.io/team-a.basemodel.753d5121-1-distill-qwen-32b-awq2",
        "team-a.basemodel.deepseek-r1-distill-qwen-32b-awq2",
    ),
    (
        "namespaced, long namespace becomes its hash, the name fits the rest",
        BM,
        "research-team-alpha",
        "llama-3-70b-instruct",
        "models.ome.io/0d93e25f.basemodel.llama-3-70b-instruct",
        "research-team-alpha.basemodel.llama-3-70b-instruct",
    ),
    (
        "namespaced, both shortened",
        BM,
        "research-team-alpha",
        NAME_40,
        "models.ome.io/0d93e25f.basemodel.d30d2100--instruct-fp8-dynamic",
        "research-team-alpha.basemodel.meta-llama-3-1-405b-instruct-fp8-dynamic",
    ),
    (
        "namespaced, an 8-character namespace is kept",
        BM,
        "ml-infra",
        NAME_40,
        "models.ome.io/ml-infra.basemodel.d30d2100--instruct-fp8-dynamic",
        "ml-infra.basemodel.meta-llama-3-1-405b-instruct-fp8-dynamic",
    ),
    (
        "namespaced, a 9-character namespace is hashed",
        BM,
        "ml-infra2",
        NAME_40,
        "models.ome.io/4aa677d2.basemodel.d30d2100--instruct-fp8-dynamic",
        "ml-infra2.basemodel.meta-llama-3-1-405b-instruct-fp8-dynamic",
    ),
    (
        "namespaced, 63 + 253",
        BM,
        NS_63,
        LONGEST,
        "models.ome.io/9dba1594.basemodel.2c93c338-l-model-model-model-x",
        "9dba1594.basemodel.2c93c338-" + LONGEST[-225:],
    ),
    (
        "namespaced, 7 + 235 = 242 fits the key",
        BM,
        "default",
        "b" * 234 + "z",
        "models.ome.io/default.basemodel.5cf88ce0-bbbbbbbbbbbbbbbbbbbbbz",
        "default.basemodel." + "b" * 234 + "z",
    ),
    (
        "namespaced, 7 + 236 is shortened in the key",
        BM,
        "default",
        "b" * 235 + "z",
        "models.ome.io/default.basemodel.9dbb6f1e-bbbbbbbbbbbbbbbbbbbbbz",
        "default.basemodel.9dbb6f1e-" + "b" * 225 + "z",
    ),
]


@pytest.mark.parametrize(
    ("kind", "namespace", "name", "label", "key"), [v[1:] for v in VECTORS], ids=[v[0] for v in VECTORS]
)
def test_names_match_omes_functions(
    kind: ModelKind, namespace: str | None, name: str, label: str, key: str
) -> None:
    assert ome_node_label_key(kind=kind, namespace=namespace, name=name) == label
    assert ome_configmap_key(kind=kind, namespace=namespace, name=name) == key
    ref = ModelRef(kind=kind, namespace=namespace, name=name, uid="u")
    assert ome_entry_key(ref) == key


LABEL_NAME = re.compile(r"[A-Za-z0-9](?:[-_.A-Za-z0-9]{0,61}[A-Za-z0-9])?")
CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")
DNS_LABEL = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
DNS_SUBDOMAIN = st.from_regex(r"\A[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z").filter(
    lambda s: ".." not in s and ".-" not in s and "-." not in s
)


@given(namespace=st.one_of(st.none(), DNS_LABEL), name=DNS_SUBDOMAIN)
def test_every_name_fits_where_it_goes(namespace: str | None, name: str) -> None:
    kind = BM if namespace else CBM
    label = ome_node_label_key(kind=kind, namespace=namespace, name=name)
    domain, label_name = label.split("/")
    assert domain == "models.ome.io" and len(label_name) <= 49 and LABEL_NAME.fullmatch(label_name)
    assert CONFIGMAP_KEY.fullmatch(ome_configmap_key(kind=kind, namespace=namespace, name=name))


@pytest.mark.parametrize(("kind", "namespace"), [(ModelKind.FINE_TUNED_WEIGHT, None), (BM, None), (BM, "")])
def test_what_ome_does_not_name_is_refused(kind: ModelKind, namespace: str | None) -> None:
    with pytest.raises(ValueError):
        ome_node_label_key(kind=kind, namespace=namespace, name="x")
    with pytest.raises(ValueError):
        ome_configmap_key(kind=kind, namespace=namespace, name="x")


# --- entries and labels per format ----------------------------------------------------------

REF = ModelRef(kind=BM, namespace="team-a", name="llama", uid="u-1")
FTW = ModelRef(kind=ModelKind.FINE_TUNED_WEIGHT, name="lora", uid="u-3")
DOCS_KEY, OME_KEY = "team-a_llama", "team-a.basemodel.llama"
DOCS_LABEL, OME_LABEL = "models.ome/u-1", "models.ome.io/team-a.basemodel.llama"
PARSED = {
    "modelType": "llama",
    "modelArchitecture": "LlamaForCausalLM",
    "parameterCount": 8030261248,
    "modelParameterSize": "8.03B",
    "maxTokens": 131072,
    "dtype": "bfloat16",
    "quantization": "fp8",
    "modelCapabilities": ["TEXT_TO_TEXT"],
    "modelFramework": {"name": "transformers", "version": "4.43.0"},
    "modelFormat": {"name": "safetensors", "version": "1.0.0"},
}
OME_CONFIG = {
    "modelType": "llama",
    "modelArchitecture": "LlamaForCausalLM",
    "modelFramework": {"name": "transformers", "version": "4.43.0"},
    "modelFormat": {"name": "safetensors", "version": "1.0.0"},
    "modelParameterSize": "8.03B",
    "maxTokens": 131072,
    "modelCapabilities": ["TEXT_TO_TEXT"],
    "quantization": "fp8",
}


# (format, keys written, label values)
FORMAT_CASES = [
    (ReportFormat.DOCS, {DOCS_KEY}, {DOCS_LABEL: "Ready", OME_LABEL: None}),
    (ReportFormat.OME, {OME_KEY}, {DOCS_LABEL: None, OME_LABEL: "Ready"}),
    (ReportFormat.BOTH, {DOCS_KEY, OME_KEY}, {DOCS_LABEL: "Ready", OME_LABEL: "Ready"}),
]


@pytest.mark.parametrize(("formats", "keys", "labels"), FORMAT_CASES, ids=[c[0].value for c in FORMAT_CASES])
def test_each_format_writes_its_own_and_clears_the_other(
    formats: ReportFormat, keys: set[str], labels: dict[str, str | None]
) -> None:
    stale = {DOCS_KEY: "old", OME_KEY: "old", "other": "x"}  # e.g. written before a format switch
    data = with_entry(stale, ref=REF, status=NodeModelStatus.READY, config=PARSED, formats=formats)
    assert set(data) == keys | {"other"}
    assert model_labels_patch(ref=REF, status=NodeModelStatus.READY, formats=formats) == {
        "metadata": {"labels": labels}
    }
    assert without_entry(data, ref=REF) == {"other": "x"}


def test_removal_clears_every_format() -> None:
    for status in (None, NodeModelStatus.DELETED):
        assert model_labels_patch(ref=REF, status=status, formats=ReportFormat.DOCS) == {
            "metadata": {"labels": {DOCS_LABEL: None, OME_LABEL: None}}
        }


def test_ome_entry_is_a_model_entry_with_model_config_fields() -> None:
    data = with_entry({}, ref=REF, status=NodeModelStatus.READY, config=PARSED)
    assert json.loads(data[OME_KEY]) == {"name": "llama", "status": "Ready", "config": OME_CONFIG}
    assert json.loads(data[DOCS_KEY]) == {"name": "llama", "status": "Ready", "config": PARSED}
    # ModelEntry's field order, as OME's encoder writes it
    assert data[OME_KEY].startswith('{"name":"llama","status":"Ready","config":{"modelType":')


def test_ome_entry_keeps_its_config_across_status_changes_and_format_switches() -> None:
    data = with_entry({}, ref=REF, status=NodeModelStatus.READY, config=PARSED, formats=ReportFormat.DOCS)
    data = with_entry(data, ref=REF, status=NodeModelStatus.UPDATING, config=None, formats=ReportFormat.OME)
    assert set(data) == {OME_KEY}
    assert json.loads(data[OME_KEY]) == {"name": "llama", "status": "Updating", "config": OME_CONFIG}
    data = with_entry(data, ref=REF, status=NodeModelStatus.FAILED, config=None, formats=ReportFormat.BOTH)
    assert json.loads(data[DOCS_KEY])["config"] == OME_CONFIG  # the config recorded, as recorded
    assert json.loads(data[OME_KEY]) == {"name": "llama", "status": "Failed", "config": OME_CONFIG}


def test_entry_without_config_or_progress_leaves_them_out() -> None:
    assert json.loads(ome_entry_value(ref=REF, status=NodeModelStatus.FAILED, config=None)) == {
        "name": "llama",
        "status": "Failed",
    }
    progress = {"phase": "Downloading", "totalBytes": 10, "completedBytes": 4}
    value = ome_entry_value(ref=REF, status=NodeModelStatus.UPDATING, config=None, progress=progress)
    assert json.loads(value)["progress"] == progress


# (id, our config, OME's config): anything OME's decoder would choke on is left out
CONFIG_CASES = [
    ("empty", {}, {}),
    ("only our extras", {"parameterCount": 7, "dtype": "bfloat16"}, {}),
    ("empty values omitted", {"modelType": "", "modelCapabilities": [], "maxTokens": 0}, {}),
    ("maxTokens beyond int32", {"maxTokens": 2**31}, {}),
    ("maxTokens not a number", {"maxTokens": "4096", "modelType": 3}, {}),
    ("maxTokens a bool", {"maxTokens": True}, {}),
    (
        "spec-shaped format: operator and weight dropped",
        {"modelFormat": {"name": "safetensors", "version": "1.0.0", "operator": "Equal", "weight": 1}},
        {"modelFormat": {"name": "safetensors", "version": "1.0.0"}},
    ),
    (
        "framework without version",
        {"modelFramework": {"name": "transformers", "version": None}},
        {"modelFramework": {"name": "transformers"}},
    ),
    ("framework not a mapping", {"modelFramework": "transformers"}, {}),
    (
        "non-text capabilities dropped",
        {"modelCapabilities": ["RERANK", 1, None]},
        {"modelCapabilities": ["RERANK"]},
    ),
    (
        "api capabilities kept",
        {"apiCapabilities": ["OPENAI_V1_CHAT"]},
        {"apiCapabilities": ["OPENAI_V1_CHAT"]},
    ),
]


@pytest.mark.parametrize(("ours", "theirs"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_config_takes_model_config_names_and_types(ours: dict, theirs: dict) -> None:
    assert ome_model_config(ours) == theirs


def test_fine_tuned_weights_get_only_the_documented_formats() -> None:
    data = with_entry({}, ref=FTW, status=NodeModelStatus.READY, config=None)
    assert set(data) == {"lora"}
    assert with_entry({}, ref=FTW, status=NodeModelStatus.READY, config=None, formats=ReportFormat.OME) == {}
    assert model_labels_patch(ref=FTW, status=NodeModelStatus.READY) == {
        "metadata": {"labels": {"models.ome/u-3": "Ready"}}
    }


def test_without_a_uid_only_omes_label_is_written() -> None:
    ref = ModelRef(kind=CBM, name="llama")
    assert model_labels_patch(ref=ref, status=NodeModelStatus.READY) == {
        "metadata": {"labels": {"models.ome.io/clusterbasemodel.llama": "Ready"}}
    }


def test_setting_defaults_to_both_and_takes_each_format() -> None:
    assert load_settings(environ={}).kube.report_formats is ReportFormat.BOTH
    for value in ("docs", "ome", "both"):
        settings = load_settings(environ={}, overrides={"kube.report_formats": value})
        assert settings.kube.report_formats is ReportFormat(value)
    with pytest.raises(ValueError):
        load_settings(environ={}, overrides={"kube.report_formats": "all"})


def test_a_documented_key_past_the_kubernetes_limit_is_left_out_and_the_ome_key_carries_the_entry():
    from modelferry.messages import ModelRef
    from modelferry.names import ModelKind
    from modelferry.nodestatus import NodeModelStatus, ome_entry_key, with_entry

    ref = ModelRef(kind=ModelKind.BASE_MODEL, namespace="n" * 63, name="m" * 253, uid="u")
    data = with_entry({"other": "x"}, ref=ref, status=NodeModelStatus.READY, config=None)
    assert all(len(key) <= 253 for key in data)
    assert set(data) == {"other", ome_entry_key(ref)}
