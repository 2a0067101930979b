"""The Grafana dashboard (deploy/grafana) queries only metrics the registry defines, with label
names they carry: a renamed metric or label fails here, not on an operator's empty panel."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from modelferry import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "modelferry-dashboard.json"
_OURS = re.compile(r"\b(?:model_agent|modelferry)_[a-z0-9_]+")
_BY = re.compile(r"\bby \(([^)]*)\)")
_MATCHERS = re.compile(r"\{([^}]*)\}")


def _queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            queries.append(query["query"])
    return queries


def _labels_of_registry() -> set[str]:
    labels = {"le"}
    for collector in metrics.REGISTRY._names_to_collectors.values():  # every metric object
        labels |= set(getattr(collector, "_labelnames", ()))
    return labels


def test_every_metric_the_dashboard_queries_is_in_the_registry() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = _queries(dashboard)
    assert len(queries) >= 10
    known = metrics.metric_names()
    named = {name for q in queries for name in _OURS.findall(q)}
    assert named - known == set()
    # Every metric defined is on the dashboard, by its sample name or a histogram's bucket.
    assert {m.split("_bucket")[0] for m in named} >= {
        "model_agent_downloads_success_total",
        "model_agent_downloads_failed_total",
        "model_agent_download_duration_seconds",
        "model_agent_download_bytes_total",
        "model_agent_verifications_total",
        "model_agent_verification_duration_seconds",
        "model_agent_md5_checksum_failed_total",
        "modelferry_kube_write_conflicts_total",
        "modelferry_worker_activity_slots",
        "modelferry_worker_activity_slots_used",
        "modelferry_workflows_running",
        "modelferry_node_reports_total",
    }


def test_every_label_the_dashboard_groups_or_filters_by_exists() -> None:
    queries = _queries(json.loads(DASHBOARD.read_text()))
    labels = _labels_of_registry()
    used: set[str] = set()
    for q in queries:
        for group in _BY.findall(q):
            used |= {label.strip() for label in group.split(",")}
        for matchers in _MATCHERS.findall(q):
            used |= {m.split("=")[0].rstrip("!~").strip() for m in matchers.split(",") if m.strip()}
        used |= set(re.findall(r"label_values\([^,]+,\s*(\w+)\)", q))
    assert used and used - labels == set()


def test_ome_names_and_label_names_are_kept() -> None:
    """OME's dashboards select by these: same names, same types, OME's labels still there."""
    families = {c.name: c for c in metrics.REGISTRY.collect()}
    expected = {
        "model_agent_downloads_success": ("counter", {"model_type", "namespace", "name"}),
        "model_agent_downloads_failed": ("counter", {"model_type", "namespace", "name"}),
        "model_agent_verifications": ("counter", {"model_type", "namespace", "name", "result"}),
        "model_agent_md5_checksum_failed": ("counter", {"model_type", "namespace", "name"}),
        "model_agent_download_bytes": ("counter", {"model_type", "namespace", "name"}),
        "model_agent_download_duration_seconds": ("histogram", {"model_type", "namespace", "name"}),
        "model_agent_verification_duration_seconds": ("histogram", set()),
    }
    collectors = {
        c._name: c  # type: ignore[attr-defined]
        for c in set(metrics.REGISTRY._names_to_collectors.values())
    }
    for name, (kind, ome_labels) in expected.items():
        assert families[name].type == kind
        assert ome_labels <= set(collectors[name]._labelnames)
