"""A worker Job connects to Temporal as the controller that created it does: every `temporal`
setting travels as the variable the worker's settings loader reads, the Secret
`temporal.credentials_secret` names is mounted at TEMPORAL_CREDENTIALS_DIR, and the API key's
variable comes from that Secret's `api-key`. Settings a Job could not connect with (an API key
variable but no Secret, a TLS file outside the mount) are refused, naming the settings, before any
Job is created."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.nodeworker import NodeWorkerActivities
from modelferry.errors import InvalidSettingsError
from modelferry.messages import EnsureNodeWorkerInput
from modelferry.names import TEMPORAL_API_KEY_SECRET_KEY, TEMPORAL_CREDENTIALS_DIR
from modelferry.nodejob import build_worker_job
from modelferry.settings import Settings, load_settings
from tests.unit.fake_jobs import NoJobsYet

SECRET = "temporal-creds"
CERT = f"{TEMPORAL_CREDENTIALS_DIR}/tls.crt"
KEY = f"{TEMPORAL_CREDENTIALS_DIR}/tls.key"
CA = f"{TEMPORAL_CREDENTIALS_DIR}/ca.crt"
FULL = {
    "temporal.address": "acme.tmprl.cloud:7233",
    "temporal.namespace": "acme.models",
    "temporal.tls": True,
    "temporal.tls_client_cert_path": CERT,
    "temporal.tls_client_key_path": KEY,
    "temporal.tls_server_ca_path": CA,
    "temporal.api_key_env": "TEMPORAL_API_KEY",
    "temporal.credentials_secret": SECRET,
}


def _pod(settings: Settings, **where: Any) -> dict[str, Any]:
    job = build_worker_job(settings=settings, node="n1", namespace="ome", **where)
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


def _run_in_pod(container: dict[str, Any], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's environment as the kubelet gives it, `secrets` being name -> data."""
    env = {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def test_every_connection_setting_and_the_secret_reach_the_job_exactly() -> None:
    pod = _pod(load_settings(environ={}, overrides=FULL))
    (container,) = pod["containers"]
    assert container["env"] == [
        {"name": "MODELFERRY_TEMPORAL_ADDRESS", "value": "acme.tmprl.cloud:7233"},
        {"name": "MODELFERRY_TEMPORAL_NAMESPACE", "value": "acme.models"},
        {"name": "MODELFERRY_TEMPORAL_TLS", "value": "true"},
        {"name": "MODELFERRY_TEMPORAL_TLS_CLIENT_CERT_PATH", "value": CERT},
        {"name": "MODELFERRY_TEMPORAL_TLS_CLIENT_KEY_PATH", "value": KEY},
        {"name": "MODELFERRY_TEMPORAL_TLS_SERVER_CA_PATH", "value": CA},
        {"name": "MODELFERRY_TEMPORAL_API_KEY_ENV", "value": "TEMPORAL_API_KEY"},
        {"name": "MODELFERRY_TEMPORAL_CREDENTIALS_SECRET", "value": SECRET},
        {
            "name": "TEMPORAL_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": SECRET, "key": TEMPORAL_API_KEY_SECRET_KEY}},
        },
        {"name": "MODELFERRY_AGENT_NAMESPACE", "value": "ome"},
    ]
    secret_volumes = [v for v in pod["volumes"] if "secret" in v]
    assert secret_volumes == [
        {
            "name": "temporal-credentials",
            "secret": {"secretName": SECRET, "defaultMode": 0o400, "optional": False},
        }
    ]
    assert {"name": "temporal-credentials", "mountPath": TEMPORAL_CREDENTIALS_DIR, "readOnly": True} in (
        container["volumeMounts"]
    )


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(FULL, id="tls-files-and-api-key"),
        pytest.param({"temporal.tls": True}, id="tls-with-system-roots"),
        pytest.param(
            {"temporal.tls": True, "temporal.api_key_env": "MY_KEY", "temporal.credentials_secret": SECRET},
            id="api-key",
        ),
        pytest.param(
            {"temporal.tls_server_ca_path": CA, "temporal.credentials_secret": SECRET}, id="private-ca"
        ),
        pytest.param({"temporal.tls_server_ca_path": "/etc/ssl/certs/ca.pem"}, id="ca-in-the-image"),
    ],
)
def test_the_jobs_worker_loads_the_controllers_temporal_settings(overrides: dict[str, Any]) -> None:
    controller = load_settings(environ={}, overrides=overrides)
    (container,) = _pod(controller, claim_name="weights")["containers"]
    env = _run_in_pod(container, {SECRET: {TEMPORAL_API_KEY_SECRET_KEY: "the-key"}})
    worker = load_settings(environ=env)
    assert worker.temporal == controller.temporal
    if controller.temporal.api_key_env:
        assert env[controller.temporal.api_key_env] == "the-key"  # what connect_temporal reads


def test_without_credentials_the_job_is_as_before() -> None:
    pod = _pod(Settings())
    (container,) = pod["containers"]
    assert container["env"] == [
        {"name": "MODELFERRY_TEMPORAL_ADDRESS", "value": "127.0.0.1:7233"},
        {"name": "MODELFERRY_TEMPORAL_NAMESPACE", "value": "default"},
        {"name": "MODELFERRY_AGENT_NAMESPACE", "value": "ome"},
    ]
    assert [v["name"] for v in pod["volumes"]] == ["models", "models-0", "tmp"]
    assert TEMPORAL_CREDENTIALS_DIR not in {m["mountPath"] for m in container["volumeMounts"]}


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        pytest.param(
            {"temporal.api_key_env": "TEMPORAL_API_KEY"},
            ["temporal.api_key_env", "temporal.credentials_secret"],
            id="api-key-without-secret",
        ),
        *(
            pytest.param(
                {f"temporal.{key}": path, "temporal.credentials_secret": SECRET},
                [f"temporal.{key}", "temporal.credentials_secret", TEMPORAL_CREDENTIALS_DIR],
                id=f"{key}-{path}",
            )
            for key in ("tls_client_cert_path", "tls_client_key_path", "tls_server_ca_path")
            for path in ("/certs/x.pem", f"{TEMPORAL_CREDENTIALS_DIR}/../x.pem", TEMPORAL_CREDENTIALS_DIR)
        ),
    ],
)
def test_settings_a_job_could_not_connect_with_are_refused_by_name(
    overrides: dict[str, Any], named: list[str]
) -> None:
    settings = load_settings(environ={}, overrides=overrides)
    with pytest.raises(InvalidSettingsError) as refused:
        build_worker_job(settings=settings, node="n1", namespace="ome")
    for name in named:
        assert name in refused.value.message
    assert not refused.value.retryable


def test_the_activity_fails_the_node_without_retrying_and_creates_no_job() -> None:
    kube = NoJobsYet()
    settings = load_settings(environ={}, overrides={"temporal.api_key_env": "TEMPORAL_API_KEY"})
    activities = NodeWorkerActivities(kube=kube, settings=settings)  # type: ignore[arg-type]
    with pytest.raises(ApplicationError) as failed:
        activities.ensure_node_worker(EnsureNodeWorkerInput(node="n1"))
    assert (failed.value.type, failed.value.non_retryable) == ("InvalidSettingsError", True)
    assert "temporal.credentials_secret" in failed.value.message
    assert kube.created == []
