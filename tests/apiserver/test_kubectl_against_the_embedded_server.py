"""Real kubectl against the embedded server: plain apply (no --validate=false), get with server-side
columns and short names, describe, label, wait for a condition, delete."""

from __future__ import annotations

import json
import subprocess
import threading

import yaml

from .conftest import GROUP, VERSION, KubectlRunner, make_crd, uniq, widget

NS = "default"


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def test_apply_creates_then_configures_a_custom_object(kubectl: KubectlRunner) -> None:
    name = uniq("w")
    assert "created" in ok(kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(widget(name))))
    assert "configured" in ok(
        kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(widget(name, vendor="acme")))
    )
    got = json.loads(ok(kubectl("get", "widget", name, "-n", NS, "-o", "json")))
    assert got["spec"]["vendor"] == "acme" and got["metadata"]["generation"] == 2
    assert "unchanged" in ok(
        kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(widget(name, vendor="acme")))
    )


def test_apply_and_reapply_a_configmap_by_strategic_merge(kubectl: KubectlRunner) -> None:
    name = uniq("cm")
    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS},
        "data": {"first": "1"},
    }
    ok(kubectl("apply", "-f", "-", input=yaml.safe_dump(doc)))
    doc["data"] = {"second": "2"}
    ok(kubectl("apply", "-f", "-", input=yaml.safe_dump(doc)))
    assert json.loads(ok(kubectl("get", "cm", name, "-n", NS, "-o", "json")))["data"] == {"second": "2"}
    assert "serverside-applied" in ok(kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(doc)))


def test_get_prints_printer_columns_and_takes_short_names(kubectl: KubectlRunner) -> None:
    name = uniq("w")
    ok(kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(widget(name, vendor="acme"))))
    table = ok(kubectl("get", "wid", "-n", NS))
    header, *rows = table.splitlines()
    assert header.split() == ["NAME", "VENDOR", "READY", "AGE"]
    assert any(row.split()[:2] == [name, "acme"] for row in rows)
    assert ok(kubectl("get", "nodes")).splitlines()[1].split()[:2] == ["dev-node", "Ready"]


def test_describe_a_node_a_configmap_and_a_custom_object(kubectl: KubectlRunner) -> None:
    name = uniq("w")
    ok(kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(widget(name))))
    ok(
        kubectl(
            "create",
            "-f",
            "-",
            input=json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": NS},
                    "data": {"k": "v"},
                }
            ),
        )
    )
    node = ok(kubectl("describe", "node", "dev-node"))
    assert "Ready" in node and "KubeletReady" in node and "Failed to get lease" not in node
    assert "k:" in ok(kubectl("describe", "configmap", name, "-n", NS))
    described = ok(kubectl("describe", "widget", name, "-n", NS))
    assert "hf://acme/tiny" in described and "Events:" in described


def test_label_a_node_and_a_custom_object(kubectl: KubectlRunner) -> None:
    ok(kubectl("label", "node", "dev-node", "models.ome/abc=Ready", "--overwrite"))
    assert "dev-node" in ok(kubectl("get", "nodes", "-l", "models.ome/abc=Ready", "-o", "name"))
    ok(kubectl("label", "node", "dev-node", "models.ome/abc-"))
    assert ok(kubectl("get", "nodes", "-l", "models.ome/abc", "-o", "name")) == ""
    name = uniq("w")
    ok(kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(widget(name))))
    ok(kubectl("label", "widget", name, "-n", NS, "team=a"))
    assert name in ok(kubectl("get", "widgets", "-n", NS, "-l", "team=a", "-o", "name"))


def test_wait_for_a_condition_set_through_the_status_subresource(kubectl: KubectlRunner) -> None:
    name = uniq("cbm")
    model = {
        "apiVersion": "ome.io/v1beta1",
        "kind": "ClusterBaseModel",
        "metadata": {"name": name},
        "spec": {
            "vendor": "acme",
            "version": "1",
            "storage": {"storageUri": "hf://acme/tiny", "path": f"/raid/models/{name}"},
        },
    }
    ok(kubectl("apply", "-f", "-", input=json.dumps(model)))
    waited: dict[str, str] = {}

    def wait() -> None:
        result = kubectl("wait", "--for=condition=Ready", f"clusterbasemodel/{name}", "--timeout=20s")
        waited["out"] = result.stdout + result.stderr

    waiter = threading.Thread(target=wait)
    waiter.start()
    status = {
        "status": {
            "state": "Ready",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Done",
                    "message": "ok",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
    }
    ok(kubectl("patch", "cbm", name, "--subresource=status", "--type=merge", "-p", json.dumps(status)))
    waiter.join(30)
    assert "condition met" in waited["out"]
    assert name in ok(kubectl("get", "cbm"))
    ok(kubectl("delete", "cbm", name, "--wait=true", "--timeout=30s"))
    assert kubectl("get", "cbm", name).returncode != 0


def test_a_crd_applied_by_kubectl_is_usable_at_once(kubectl: KubectlRunner) -> None:
    ok(kubectl("apply", "-f", "-", input=json.dumps(make_crd("sprockets", "Sprocket", "Namespaced"))))
    doc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Sprocket",
        "metadata": {"name": "s1", "namespace": NS},
    }
    ok(kubectl("apply", "-f", "-", input=json.dumps(doc)))
    assert "s1" in ok(kubectl("get", "sprockets", "-n", NS))
    ok(kubectl("delete", "crd", f"sprockets.{GROUP}"))
    assert kubectl("get", "sprockets", "-n", NS).returncode != 0


def test_apply_refuses_fields_the_crd_schema_does_not_know(kubectl: KubectlRunner) -> None:
    name = uniq("cbm")
    model = {
        "apiVersion": "ome.io/v1beta1",
        "kind": "ClusterBaseModel",
        "metadata": {"name": name},
        "spec": {"vendor": "acme", "storage": {"storageUri": "hf://a/b", "path": "/raid/x"}, "typo": 1},
    }
    result = kubectl("apply", "-f", "-", input=json.dumps(model))
    assert result.returncode != 0 and 'unknown field "spec.typo"' in result.stderr
