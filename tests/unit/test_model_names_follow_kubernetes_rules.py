"""Model and claim names follow Kubernetes' own rules (IsDNS1123Subdomain / IsDNS1123Label), with
messages that name the rule broken; and every name derived from a model's name stays within the
limit of where it goes, even for the longest name Kubernetes accepts.

Kubernetes limits a subdomain to 253 characters in all and puts no limit on its dot-separated
parts, so a 253-character name without dots is a valid custom resource name.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from modelferry.errors import InvalidStorageUriError
from modelferry.messages import ModelRef
from modelferry.names import ModelKind, configmap_key, model_workflow_id, node_label_key, node_workflow_id
from modelferry.nodejob import worker_job_name, worker_task_queue
from modelferry.nodestatus import entry_key
from modelferry.spec import check_resource
from modelferry.spec.rules import dns_label_problems, dns_subdomain_problems, is_dns_label, is_dns_subdomain
from modelferry.storage_uri import _is_dns_subdomain, parse_storage_uri

LONGEST = "a" * 253  # the longest name Kubernetes accepts: one 253-character part
# Kubernetes' regex, anchored the way Go anchors it (Python's `$` would also match before a '\n').
K8S_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
K8S_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

# Limits of where derived names go.
TEMPORAL_ID_MAX = 1000  # Temporal's default limit.maxIDLength (workflow IDs, task queues)
LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-_.A-Za-z0-9]{0,61}[A-Za-z0-9])?)?")
CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")


# (id, name, valid, words every problem message must contain)
SUBDOMAIN_CASES: list[tuple[str, str, bool, list[str]]] = [
    ("one character", "a", True, []),
    ("253 characters, no dots", LONGEST, True, []),
    ("a 64-character part", "a" * 64 + ".example", True, []),
    ("a 200-character part among others", "x." + "b" * 200 + ".y", True, []),
    ("253 characters with dots", ".".join(["a" * 50] * 5)[:253].rstrip("."), True, []),
    ("digits only", "123", True, []),
    ("254 characters", "a" * 254, False, ["no more than 253 characters", "it has 254"]),
    ("254 characters with dots", "a." * 126 + "bb", False, ["no more than 253 characters"]),
    (
        "too long and upper case",
        "A" * 300,
        False,
        ["no more than 253 characters", "lowercase letters, digits, '-' and '.'"],
    ),
    ("empty", "", False, ["must not be empty"]),
    ("upper case", "Llama", False, ["lowercase letters"]),
    ("underscore", "a_b", False, ["lowercase letters"]),
    ("leading dash", "-a", False, ["starting and ending with a letter or digit"]),
    ("trailing dash", "a-", False, ["starting and ending"]),
    ("dash before a dot", "a-.b", False, ["each dot-separated part"]),
    ("leading dot", ".a", False, ["each dot-separated part"]),
    ("trailing dot", "a.", False, ["each dot-separated part"]),
    ("double dot", "a..b", False, ["each dot-separated part"]),
    ("trailing newline", "abc\n", False, ["lowercase letters"]),
    ("NUL", "a\x00b", False, ["lowercase letters"]),
    ("slash", "a/b", False, ["lowercase letters"]),
    ("path escape", "../etc", False, ["lowercase letters"]),
    ("non-ASCII letter", "caf\u00e9", False, ["lowercase letters"]),
    ("full-width letter", "\uff41", False, ["lowercase letters"]),
    ("space", "a b", False, ["lowercase letters"]),
]


@pytest.mark.parametrize(
    ("name", "valid", "words"), [c[1:] for c in SUBDOMAIN_CASES], ids=[c[0] for c in SUBDOMAIN_CASES]
)
def test_name_is_a_kubernetes_subdomain(name: str, valid: bool, words: list[str]) -> None:
    assert is_dns_subdomain(name) is valid
    assert _is_dns_subdomain(name) is valid  # a PVC's name follows the same rule
    assert (len(name) <= 253 and K8S_SUBDOMAIN.fullmatch(name) is not None) is valid
    text = "; ".join(dns_subdomain_problems(name))
    for word in words:
        assert word in text


@pytest.mark.parametrize(
    ("name", "valid", "words"),
    [
        ("a" * 63, True, []),
        ("team-a", True, []),
        ("a" * 64, False, ["no more than 63 characters", "it has 64"]),
        ("a.b", False, ["lowercase letters, digits and '-'"]),
        ("", False, ["must not be empty"]),
        ("-a", False, ["starting and ending"]),
    ],
)
def test_namespace_is_a_kubernetes_label(name: str, valid: bool, words: list[str]) -> None:
    assert is_dns_label(name) is valid
    text = "; ".join(dns_label_problems(name))
    for word in words:
        assert word in text


def cbm(name: str, *, kind: str = "ClusterBaseModel", namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": kind,
        "metadata": meta,
        "spec": {"storage": {"storageUri": "hf://org/model", "path": "/models/org/model"}},
    }


@pytest.mark.parametrize(
    ("doc", "field", "words"),
    [
        (cbm(LONGEST), None, []),
        (cbm("a" * 64 + ".example"), None, []),
        (cbm("a" * 254), "metadata.name", ["not a DNS-1123 subdomain", "no more than 253 characters"]),
        (cbm("Llama"), "metadata.name", ["'Llama' is not a DNS-1123 subdomain", "lowercase letters"]),
        (cbm("a\x00b"), "metadata.name", ["'a\\x00b'"]),  # quoted escaped, never raw
        (cbm("A" * 5000), "metadata.name", ["AAAA...'", "it has 5000"]),  # quoted only in part
        (
            cbm("llama", kind="BaseModel", namespace="n" * 64),
            "metadata.namespace",
            ["not a DNS-1123 label", "no more than 63 characters"],
        ),
        (cbm("llama", kind="BaseModel", namespace="a.b"), "metadata.namespace", ["not a DNS-1123 label"]),
    ],
    ids=["253", "long part", "254", "upper", "nul", "huge", "long namespace", "dotted namespace"],
)
def test_resource_name_problem_names_the_rule(
    doc: dict[str, Any], field: str | None, words: list[str]
) -> None:
    check = check_resource(doc)
    if field is None:
        assert check.valid, check.problems
        return
    rules = [p.rule for p in check.problems if p.field == field]
    assert len(rules) == 1, check.problems
    for word in words:
        assert word in rules[0]
    assert len(rules[0]) < 400  # a hostile name does not blow up the status message


@pytest.mark.parametrize(
    ("uri", "ok"),
    [
        (f"pvc://ns:{LONGEST}/models", True),
        (f"pvc://ns:{'a' * 64}.claims/models", True),
        (f"pvc://ns:{'a' * 254}/models", False),
        ("pvc://ns:a..b/models", False),
        ("pvc://ns:Claim/models", False),
    ],
    ids=["253", "long part", "254", "double dot", "upper"],
)
def test_pvc_claim_name_is_a_kubernetes_subdomain(uri: str, ok: bool) -> None:
    if ok:
        assert parse_storage_uri(uri).claim_name == uri.split(":")[2].split("/")[0]  # type: ignore[union-attr]
    else:
        with pytest.raises(InvalidStorageUriError, match="claim name"):
            parse_storage_uri(uri)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(alphabet="ab-.Z_\n\x00", max_size=300) | st.from_regex(K8S_SUBDOMAIN, fullmatch=True))
@example("a" * 253)
@example("a" * 254)
def test_spec_rule_and_pvc_rule_agree_with_kubernetes(name: str) -> None:
    expected = len(name) <= 253 and K8S_SUBDOMAIN.fullmatch(name) is not None
    assert is_dns_subdomain(name) is expected
    assert _is_dns_subdomain(name) is expected


# --- names derived from the longest valid name --------------------------------------------------

LONG_NODE = "n" * 253  # node names are DNS-1123 subdomains too
LONG_NS = "s" * 63


@pytest.mark.parametrize("kind", list(ModelKind))
def test_workflow_ids_fit_temporal_limits(kind: ModelKind) -> None:
    workflow_id = model_workflow_id(kind=kind, namespace=LONG_NS, name=LONGEST)
    assert len(workflow_id) <= TEMPORAL_ID_MAX
    assert len(node_workflow_id(model_workflow_id=workflow_id, node_name=LONG_NODE)) <= TEMPORAL_ID_MAX


def test_node_worker_names_fit_kubernetes_and_temporal_limits() -> None:
    job = worker_job_name(node=LONG_NODE, claim_namespace=LONG_NS, claim_name=LONGEST)
    assert len(job) <= 63 and K8S_LABEL.fullmatch(job)  # the job-name label repeats it
    queue = worker_task_queue(node=LONG_NODE, claim_namespace=LONG_NS, claim_name=LONGEST)
    assert len(queue) <= TEMPORAL_ID_MAX


def test_node_label_key_uses_the_uid_not_the_name() -> None:
    key = node_label_key("0f8fad5b-d9cb-469f-a165-70867728950e")
    prefix, name = key.split("/")
    assert len(name) <= 63 and LABEL_VALUE.fullmatch(name) and is_dns_subdomain(prefix)


def test_cluster_scoped_configmap_key_fits() -> None:
    ref = ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name=LONGEST)
    assert CONFIGMAP_KEY.fullmatch(entry_key(ref))


@pytest.mark.xfail(
    strict=True,
    reason="OME's ConfigMap key `{namespace}_{name}` can reach 63 + 1 + 253 = 317 characters, over the "
    "253 Kubernetes allows for a ConfigMap key; changing it changes OME's format (see the OME label "
    "formats issue)",
)
def test_namespaced_configmap_key_fits() -> None:
    assert CONFIGMAP_KEY.fullmatch(configmap_key(kind=ModelKind.BASE_MODEL, namespace=LONG_NS, name=LONGEST))
