"""Temporal client credentials in a cluster: the manager and the DaemonSet mount the optional Secret
modelferry-temporal-credentials where the worker Jobs mount the one `temporal.credentials_secret`
names, and read the same key into the variable config.yaml's commented `api_key_env` names. So the
commented temporal lines of deploy/config/config.yaml, once uncommented, work in every role, and
each role's user can read the files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from modelferry.names import TEMPORAL_API_KEY_SECRET_KEY, TEMPORAL_CREDENTIALS_DIR
from modelferry.nodejob import build_worker_job
from modelferry.settings import Settings, TemporalSettings, load_settings

from .manifests import CONFIG_FILE, EXAMPLE_NODE, NAMESPACE, NODE_WORKER, find, kustomize, write_overlay

SECRET = "modelferry-temporal-credentials"


@pytest.fixture(scope="module")
def with_daemonset(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return kustomize(write_overlay(tmp_path_factory.mktemp("overlay"), components=[NODE_WORKER]))


@pytest.fixture(scope="module")
def uncommented(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """deploy/config/config.yaml with its commented `temporal` settings uncommented and tls on, as
    its comment tells a Temporal Cloud user to do."""
    text = CONFIG_FILE.read_text().replace("  tls: false\n", "  tls: true\n")
    keys = "|".join(TemporalSettings.model_fields)
    text = re.sub(rf"^  # ({keys}): ", r"  \1: ", text, flags=re.MULTILINE)
    path: Path = tmp_path_factory.mktemp("config") / "config.yaml"
    path.write_text(text)
    return load_settings(path, environ={})


def _pods(objects: list[dict[str, Any]], settings: Settings) -> dict[str, dict[str, Any]]:
    job = build_worker_job(settings=settings, node=EXAMPLE_NODE, namespace=NAMESPACE)
    return {
        "manager": find(objects, "Deployment", "modelferry-controller")["spec"]["template"]["spec"],
        "daemonset": find(objects, "DaemonSet", "modelferry-node-worker")["spec"]["template"]["spec"],
        "job": job["spec"]["template"]["spec"],
    }


def _credentials(pod: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the Secret volume, its mount) of the pod's one container."""
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    return volume["secret"], mount


def test_the_commented_settings_name_the_secret_and_files_every_role_mounts(
    uncommented: Settings, with_daemonset: list[dict[str, Any]]
) -> None:
    temporal = uncommented.temporal
    assert temporal.credentials_secret == SECRET and temporal.api_key_env
    for path in (temporal.tls_client_cert_path, temporal.tls_client_key_path, temporal.tls_server_ca_path):
        assert path is not None and path.parent == Path(TEMPORAL_CREDENTIALS_DIR)
    for role, pod in _pods(with_daemonset, uncommented).items():
        secret, mount = _credentials(pod)
        assert secret["secretName"] == SECRET, role
        assert (mount["mountPath"], mount["readOnly"]) == (TEMPORAL_CREDENTIALS_DIR, True), role
        assert secret["optional"] is (role != "job"), role  # a Job refuses to start without it
        (container,) = pod["containers"]
        (key,) = [e for e in container["env"] if e["name"] == temporal.api_key_env]
        ref = key["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (SECRET, TEMPORAL_API_KEY_SECRET_KEY), role


def test_each_roles_user_can_read_the_credentials_and_no_one_else(
    uncommented: Settings, with_daemonset: list[dict[str, Any]]
) -> None:
    for role, pod in _pods(with_daemonset, uncommented).items():
        secret, _ = _credentials(pod)
        mode = secret["defaultMode"]
        assert mode & 0o007 == 0, role  # nothing for others
        context = pod.get("securityContext", {})
        if context.get("runAsNonRoot"):  # the files are root's, the pod's fsGroup their group
            assert context["fsGroup"] == context["runAsGroup"] and mode & 0o040, role
        else:
            (container,) = pod["containers"]
            assert container["securityContext"]["runAsUser"] == 0 and mode & 0o400, role


def test_the_shipped_config_leaves_the_jobs_without_the_secret() -> None:
    """Until config.yaml names it, a Job neither needs nor mounts the Secret (a missing Secret would
    keep its Pod from starting)."""
    settings = load_settings(CONFIG_FILE, environ={})
    assert settings.temporal.credentials_secret is None
    pod = build_worker_job(settings=settings, node=EXAMPLE_NODE, namespace=NAMESPACE)["spec"]["template"]
    assert not [v for v in pod["spec"]["volumes"] if "secret" in v]
