"""One settings tree, three ways in (file, environment, flags), and each setting reaches the code
that uses it.

- OME's model-agent flags (sgl-project/ome cmd/model-agent/main.go) start `modelferry worker`
  unchanged, with OME's defaults except where `modelferry.settings` says why not.
- Every setting has its `MODELFERRY_<SECTION>_<KEY>` variable (a map has a flag instead).
- Temporal's address, namespace, TLS files and API key variable reach `Client.connect`, and the
  credentials Secret the worker Jobs' Pods; the models roots reach admission; `--node-label-retry`
  the ConfigMap writer; `--log-level` the logging setup of every long-running role; worker mode,
  idle exit, download timeout and heartbeat what the controller builds. (Download settings:
  test_download_settings_reach_node_workers.py; pipeline settings:
  test_settings_become_pipeline_options.py.)
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from activities.nodeworker import NodeWorkerActivities
from modelferry.admission import admission_policy, check_admission
from modelferry.cli import build_parser
from modelferry.commands import controller, dev, runtime, worker
from modelferry.errors import KubeConflictError, KubeNotFoundError
from modelferry.messages import EnsureNodeWorkerInput, ModelRef, SetNodeModelStatusInput
from modelferry.names import ModelKind
from modelferry.nodejob import build_worker_job
from modelferry.options import pipeline_options
from modelferry.settings import (
    ENV_ALIASES,
    DownloadSettings,
    KubeSettings,
    LogLevel,
    Settings,
    env_var,
    load_settings,
    setting_names,
)
from modelferry.spec.parse import parse_resource
from tests.unit.fake_jobs import NoJobsYet

# What OME's agent declares (cmd/model-agent/main.go, rootCmd.PersistentFlags): flag -> default.
OME_DEFAULTS: dict[str, Any] = {
    "--port": 8080,
    "--models-root-dir": "/mnt/models",
    "--node-label-retry": 5,
    "--download-retry": 3,
    "--concurrency": 4,
    "--multipart-concurrency": 4,
    "--num-download-worker": 5,
    "--namespace": "ome",
    "--log-level": "info",
}
# flag -> (a value OME's own DaemonSet or a user could pass, the setting, the value it becomes)
OME_FLAGS: dict[str, tuple[str, str, Any]] = {
    "--port": ("9090", "health.worker_port", 9090),
    "--models-root-dir": ("/raid/models", "policy.models_roots", ["/raid/models"]),
    "--node-label-retry": ("7", "kube.node_label_retry", 7),
    "--download-retry": ("2", "download.download_retry", 2),
    "--concurrency": ("2", "download.concurrency", 2),
    "--multipart-concurrency": ("6", "download.multipart_concurrency", 6),
    "--num-download-worker": ("2", "download.num_download_worker", 2),
    "--namespace": ("models", "kube.agent_namespace", "models"),
    "--log-level": ("debug", "log.level", LogLevel.DEBUG),
}


def _get(settings: Settings, dotted: str) -> Any:
    section, key = dotted.split(".")
    return getattr(getattr(settings, section), key)


def _worker_settings(argv: list[str]) -> Settings:
    args = build_parser().parse_args(["worker", *argv])
    return load_settings(args.config, environ={}, overrides=worker.settings_overrides(args))


def test_every_ome_flag_has_a_row() -> None:
    assert set(OME_FLAGS) == set(OME_DEFAULTS)


def test_an_ome_agents_arguments_start_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """OME's shipped DaemonSet: NODE_NAME from the Downward API, then its flags."""
    monkeypatch.setenv("NODE_NAME", "gpu-node-1")
    argv = ["--models-root-dir", "/raid/models", "--num-download-worker", "2", "--concurrency", "2"]
    args = build_parser().parse_args(["worker", *argv])
    assert args.node == "gpu-node-1"
    settings = load_settings(environ={}, overrides=worker.settings_overrides(args))
    assert settings.policy.models_roots == ["/raid/models"]
    assert (settings.download.num_download_worker, settings.download.concurrency) == (2, 2)


@pytest.mark.parametrize("flag", sorted(OME_FLAGS))
def test_an_ome_flag_sets_its_setting_on_a_worker(flag: str) -> None:
    text, setting, value = OME_FLAGS[flag]
    settings = _worker_settings(["--node", "n1", flag, text])
    assert _get(settings, setting) == value
    assert _get(Settings(), setting) != value


@pytest.mark.parametrize("flag", sorted(OME_FLAGS))
def test_defaults_are_omes_unless_the_settings_say_why_not(flag: str) -> None:
    _, setting, _ = OME_FLAGS[flag]
    ours = _get(Settings(), setting)
    if flag == "--models-root-dir":
        # OME's default and the root its own DaemonSet passes (/raid/models) are both allowed.
        assert OME_DEFAULTS[flag] in ours and "/raid/models" in ours
    elif flag == "--node-label-retry":
        # Many writers per node ConfigMap here, one in OME (the comment on the field says so).
        assert ours == 50 and "one writer" in _field_comment_source()
    else:
        assert ours == OME_DEFAULTS[flag] or str(ours) == OME_DEFAULTS[flag]


def _field_comment_source() -> str:
    import modelferry.settings

    return Path(modelferry.settings.__file__).read_text()


@pytest.mark.parametrize("command", ["controller", "dev"])
def test_controller_and_dev_take_the_agent_flags_too(command: str) -> None:
    argv = [command, "--namespace", "models", "--download-retry", "2", "--node-label-retry", "7"]
    argv += ["--models-root-dir", "/data/models", "--log-level", "warn"]
    args = build_parser().parse_args(argv)
    overrides = (controller.settings_overrides if command == "controller" else dev.flag_overrides)(args)
    assert overrides == {
        "kube.agent_namespace": "models",
        "download.download_retry": 2,
        "kube.node_label_retry": 7,
        "policy.models_roots": ["/data/models"],
        "log.level": "warn",
    }


# --- every setting has a variable ----------------------------------------------------------------

# setting -> (the variable's text, the value it becomes); a row per setting, so a new one needs one.
ENV_SAMPLES: dict[str, tuple[str, Any]] = {
    "temporal.address": ("temporal.example:7233", "temporal.example:7233"),
    "temporal.namespace": ("models", "models"),
    "temporal.tls": ("true", True),
    "temporal.tls_client_cert_path": ("/certs/tls.crt", Path("/certs/tls.crt")),
    "temporal.tls_client_key_path": ("/certs/tls.key", Path("/certs/tls.key")),
    "temporal.tls_server_ca_path": ("/certs/ca.crt", Path("/certs/ca.crt")),
    "temporal.api_key_env": ("TEMPORAL_API_KEY", "TEMPORAL_API_KEY"),
    "temporal.credentials_secret": ("temporal-creds", "temporal-creds"),
    "kube.kubeconfig": ("/home/me/.kube/config", Path("/home/me/.kube/config")),
    "kube.agent_namespace": ("models", "models"),
    "kube.report_formats": ("ome", "ome"),
    "kube.node_label_retry": ("9", 9),
    "kube.ome_manager": ("present", "present"),
    "worker.mode": ("daemonset", "daemonset"),
    "worker.image": ("registry.local/modelferry:dev", "registry.local/modelferry:dev"),
    "worker.service_account": ("workers", "workers"),
    "worker.idle_exit_seconds": ("60", 60.0),
    "worker.schedule_to_start_seconds": ("120", 120.0),
    "worker.models_host_path": ("/data/models", "/data/models"),
    "worker.max_concurrent_activities": ("3", 3),
    "node.root": ("/host", Path("/host")),
    "node.hf_endpoint": ("https://hf-mirror.local", "https://hf-mirror.local"),
    "node.verify_interval": ("5m", 300.0),
    "node.deep_verify_interval": ("off", 0.0),
    "download.concurrency": ("7", 7),
    "download.multipart_concurrency": ("6", 6),
    "download.download_retry": ("1", 1),
    "download.num_download_worker": ("2", 2),
    "download.stall_timeout": ("30", 30.0),
    "download.connect_timeout": ("4", 4.0),
    "download.read_timeout": ("20", 20.0),
    "pipeline.download_timeout_seconds": ("7200", 7200.0),
    "pipeline.download_heartbeat_seconds": ("15", 15.0),
    "pipeline.failed_node_retry_seconds": ("90", 90.0),
    "pipeline.max_history_events": ("800", 800),
    "pipeline.keep_versions": ("2", 2),
    "policy.models_roots": ("/data/models, /raid/models", ["/data/models", "/raid/models"]),
    "policy.cluster_claim_namespaces": ("ome,storage:models", ["ome", "storage:models"]),
    "health.bind_address": ("0.0.0.0", "0.0.0.0"),
    "health.port": ("9443", 9443),
    "health.worker_port": ("9090", 9090),
    "peer.enabled": ("true", True),
    "peer.origin_fetchers": ("2", 2),
    "peer.bind_address": ("0.0.0.0", "0.0.0.0"),
    "peer.port": ("9091", 9091),
    "peer.advertise_url": ("http://10.0.0.5:8090", "http://10.0.0.5:8090"),
    "peer.token_env": ("PEER_TOKEN", "PEER_TOKEN"),
    "log.format": ("json", "json"),
    "log.level": ("WARNING", LogLevel.WARN),
}
MAPS = {"node.pvc_mounts"}  # set by the file or a flag (`--pvc`), never one variable


def test_every_setting_has_a_variable_or_is_a_map() -> None:
    assert set(ENV_SAMPLES) | MAPS == set(setting_names())
    assert {name for name in setting_names() if env_var(name) is None} == MAPS


@pytest.mark.parametrize("setting", sorted(ENV_SAMPLES))
def test_a_variable_sets_its_setting_and_says_so(setting: str) -> None:
    from modelferry.settings import resolve_settings

    text, value = ENV_SAMPLES[setting]
    var = env_var(setting)
    assert var == "MODELFERRY_" + setting.replace(".", "_").upper()
    resolved = resolve_settings(environ={var: text})
    assert _get(resolved.settings, setting) == value
    assert resolved.sources[setting] == f"env {var}"
    assert {s for s, source in resolved.sources.items() if source != "default"} == {setting}


@pytest.mark.parametrize("alias", sorted(ENV_ALIASES))
def test_older_variable_names_still_work_and_the_new_one_wins(alias: str) -> None:
    setting = ENV_ALIASES[alias]
    text, value = ENV_SAMPLES[setting]
    assert _get(load_settings(environ={alias: text}), setting) == value
    new = "https://other.local" if setting == "node.hf_endpoint" else "other"
    settings = load_settings(environ={alias: text, str(env_var(setting)): new})
    assert str(_get(settings, setting)) == new


# --- each reaches its use ----------------------------------------------------------------------


class _Connected(Exception):
    pass


def _connect_kwargs(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def connect(target: str, **kwargs: Any) -> Any:
        seen.update(kwargs, target=target)
        raise _Connected

    monkeypatch.setattr(runtime.Client, "connect", connect)
    with pytest.raises(_Connected):
        asyncio.run(runtime.connect_temporal(settings))
    return seen


def _tls_files(tmp_path: Path) -> dict[str, Path]:
    files = {"cert": tmp_path / "tls.crt", "key": tmp_path / "tls.key", "ca": tmp_path / "ca.crt"}
    for name, path in files.items():
        path.write_bytes(f"-----{name}-----".encode())
    return files


@pytest.mark.parametrize("way", ["flags", "env"])
def test_temporal_settings_reach_the_client(way: str, tmp_path: Path, monkeypatch) -> None:
    files = _tls_files(tmp_path)
    monkeypatch.setenv("MY_TEMPORAL_KEY", "key-value")
    if way == "flags":
        argv = ["--node", "n1", "--temporal-address", "t.example:7233", "--temporal-namespace", "models"]
        argv += ["--temporal-tls", "--temporal-tls-cert", str(files["cert"])]
        argv += ["--temporal-tls-key", str(files["key"]), "--temporal-tls-ca", str(files["ca"])]
        argv += ["--temporal-api-key-env", "MY_TEMPORAL_KEY"]
        settings = _worker_settings(argv)
    else:
        settings = load_settings(
            environ={
                "MODELFERRY_TEMPORAL_ADDRESS": "t.example:7233",
                "MODELFERRY_TEMPORAL_NAMESPACE": "models",
                "MODELFERRY_TEMPORAL_TLS": "true",
                "MODELFERRY_TEMPORAL_TLS_CLIENT_CERT_PATH": str(files["cert"]),
                "MODELFERRY_TEMPORAL_TLS_CLIENT_KEY_PATH": str(files["key"]),
                "MODELFERRY_TEMPORAL_TLS_SERVER_CA_PATH": str(files["ca"]),
                "MODELFERRY_TEMPORAL_API_KEY_ENV": "MY_TEMPORAL_KEY",
            }
        )
    seen = _connect_kwargs(settings, monkeypatch)
    assert (seen["target"], seen["namespace"], seen["api_key"]) == ("t.example:7233", "models", "key-value")
    tls = seen["tls"]
    assert tls.client_cert == b"-----cert-----"
    assert tls.client_private_key == b"-----key-----"
    assert tls.server_root_ca_cert == b"-----ca-----"


def test_without_tls_or_key_the_client_connects_plainly(monkeypatch) -> None:
    seen = _connect_kwargs(Settings(), monkeypatch)
    assert (seen["target"], seen["namespace"], seen["tls"], seen["api_key"]) == (
        "127.0.0.1:7233",
        "default",
        False,
        None,
    )


def test_models_root_dir_decides_admission_with_a_clear_reason() -> None:
    settings = _worker_settings(["--node", "n1", "--models-root-dir", "/data/models"])
    resource = parse_resource(
        {
            "apiVersion": "ome.io/v1beta1",
            "kind": "ClusterBaseModel",
            "metadata": {"name": "m"},
            "spec": {"storage": {"storageUri": "hf://org/m", "path": "/mnt/models/m"}},
        }
    )
    (problem,) = check_admission(resource, admission_policy(settings))
    assert problem.field == "spec.storage.path"
    assert "not below a models root (/data/models)" in problem.rule
    assert check_admission(resource, admission_policy(Settings())) == []


class _AlwaysConflicting:
    """A Kubernetes client on which every ConfigMap create meets a conflict (and nothing is read)."""

    def __init__(self) -> None:
        self.writes = 0
        self.namespaces: set[str] = set()

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any]:
        self.namespaces.add(namespace)
        raise KubeNotFoundError("no ConfigMap")

    def list_configmaps(self, namespace: str, **_: Any) -> list[dict[str, Any]]:
        return []

    def create_configmap(self, namespace: str, body: Any) -> dict[str, Any]:
        self.writes += 1
        raise KubeConflictError("someone else wrote first")


def _report_on_a_conflicting_cluster(settings: Settings) -> _AlwaysConflicting:
    """What the control worker's ConfigMap writer does against a cluster that always conflicts."""
    kube = _AlwaysConflicting()
    activities = runtime.control_activities(client=object(), kube=kube, settings=settings)  # type: ignore[arg-type]
    (set_status,) = [a for a in activities if a.__name__ == "set_node_model_status"]
    ref = ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name="m", uid="u1")
    with pytest.raises(Exception, match="kept conflicting"):
        set_status(SetNodeModelStatusInput(ref=ref, node="n1", status="Ready"))
    return kube


@pytest.mark.parametrize("attempts", [3, 50])
def test_node_label_retry_bounds_the_configmap_writers_attempts(attempts: int) -> None:
    settings = load_settings(environ={}, overrides={"kube.node_label_retry": attempts})
    assert _report_on_a_conflicting_cluster(settings).writes == attempts


def test_the_agent_namespace_reaches_the_configmap_writer() -> None:
    args = build_parser().parse_args(["controller", "--namespace", "models", "--node-label-retry", "1"])
    settings = load_settings(environ={}, overrides=controller.settings_overrides(args))
    assert _report_on_a_conflicting_cluster(settings).namespaces == {"models"}


class _LoggingSetUp(Exception):
    pass


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["worker", "--node", "n1"], logging.INFO),
        (["worker", "--node", "n1", "--log-level", "debug"], logging.DEBUG),
        (["controller", "--log-level", "error"], logging.ERROR),
        (["watch", "--log-level", "WARN"], logging.WARNING),
        (["dev"], logging.WARNING),  # dev is quiet unless asked
        (["dev", "--log-level", "debug"], logging.DEBUG),
    ],
)
def test_log_level_reaches_the_logging_setup(argv: list[str], expected: int, monkeypatch) -> None:
    import modelferry.commands.logs as logs

    levels: list[Any] = []

    def setup_logging(**kwargs: Any) -> None:
        levels.append(kwargs["level"])
        raise _LoggingSetUp

    monkeypatch.setattr(logs, "setup_logging", setup_logging)
    monkeypatch.delenv("MODELFERRY_LOG_LEVEL", raising=False)
    monkeypatch.delenv("MODELFERRY_CONFIG", raising=False)
    args = build_parser().parse_args(argv)
    with pytest.raises(_LoggingSetUp):
        args.func(args)
    assert levels == [expected]


def test_log_level_env_reaches_a_worker(monkeypatch) -> None:
    monkeypatch.setenv("MODELFERRY_LOG_LEVEL", "error")
    args = build_parser().parse_args(["worker", "--node", "n1"])
    assert load_settings(overrides=worker.settings_overrides(args)).log.level.logging_level() == logging.ERROR


def test_the_log_level_travels_to_job_workers() -> None:
    controller_settings = load_settings(environ={}, overrides={"log.level": "debug"})
    (container,) = build_worker_job(settings=controller_settings, node="n1", namespace="ome")["spec"][
        "template"
    ]["spec"]["containers"]
    assert _worker_settings(container["args"][1:]).log.level is LogLevel.DEBUG


def _ensure_worker(settings: Settings) -> tuple[Any, list[dict[str, Any]]]:
    kube = NoJobsYet()
    activities = NodeWorkerActivities(kube=kube, settings=settings)  # type: ignore[arg-type]
    result = activities.ensure_node_worker(EnsureNodeWorkerInput(node="n1"))
    return result, kube.created


@pytest.mark.parametrize(("mode", "jobs"), [("job", 1), ("daemonset", 0), ("static", 0)])
def test_worker_mode_decides_whether_the_controller_creates_a_job(mode: str, jobs: int) -> None:
    args = build_parser().parse_args(["controller", "--worker-mode", mode])
    from_flag = load_settings(environ={}, overrides=controller.settings_overrides(args))
    from_env = load_settings(environ={"MODELFERRY_WORKER_MODE": mode})
    for settings in (from_flag, from_env):
        result, created = _ensure_worker(settings)
        assert (result.mode, len(created)) == (mode, jobs)


@pytest.mark.parametrize("way", ["flag", "env"])
def test_the_temporal_credentials_secret_reaches_the_job_workers_pod(way: str) -> None:
    """The controller names the Secret; the Job mounts it (the Job's env and volume in full:
    test_job_workers_connect_to_temporal_as_the_controller_does.py)."""
    if way == "flag":
        args = build_parser().parse_args(["controller", "--temporal-credentials-secret", "temporal-creds"])
        settings = load_settings(environ={}, overrides=controller.settings_overrides(args))
    else:
        settings = load_settings(environ={"MODELFERRY_TEMPORAL_CREDENTIALS_SECRET": "temporal-creds"})
    pod = build_worker_job(settings=settings, node="n1", namespace="ome")["spec"]["template"]["spec"]
    assert [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v] == ["temporal-creds"]


def test_idle_exit_reaches_the_job_workers_command_line() -> None:
    settings = load_settings(environ={"MODELFERRY_WORKER_IDLE_EXIT_SECONDS": "45"})
    (container,) = build_worker_job(settings=settings, node="n1", namespace="ome")["spec"]["template"][
        "spec"
    ]["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.idle_exit == 45.0


@pytest.mark.parametrize(
    ("var", "field", "value"),
    [
        ("MODELFERRY_PIPELINE_DOWNLOAD_TIMEOUT_SECONDS", "download_timeout_seconds", 3600.0),
        ("MODELFERRY_PIPELINE_DOWNLOAD_HEARTBEAT_SECONDS", "download_heartbeat_seconds", 20.0),
    ],
)
def test_download_timeout_and_heartbeat_reach_the_workflows_options(
    var: str, field: str, value: float
) -> None:
    options = pipeline_options(load_settings(environ={var: str(value)}))
    assert getattr(options, field) == value


def test_pull_defaults_are_the_settings_defaults() -> None:
    args = build_parser().parse_args(["pull", "hf://a/b", "--path", "/tmp/m"])
    for name in ("concurrency", "multipart_concurrency", "download_retry", "num_download_worker"):
        assert getattr(args, name) == getattr(DownloadSettings(), name), name
    assert KubeSettings().node_label_retry >= runtime.CONTROL_ACTIVITY_THREADS  # more attempts than writers


def test_worker_flags_given_nowhere_leave_file_and_env_alone(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("download: {download_retry: 8}\nkube: {agent_namespace: from-file}\n")
    args = build_parser().parse_args(["worker", "--node", "n1", "--config", str(config)])
    overrides = worker.settings_overrides(args)
    assert overrides == {}
    settings = load_settings(
        config, environ={"MODELFERRY_KUBE_AGENT_NAMESPACE": "from-env"}, overrides=overrides
    )
    assert (settings.download.download_retry, settings.kube.agent_namespace) == (8, "from-env")


def test_devs_flags_reach_the_settings_its_stack_runs_with(tmp_path: Path) -> None:
    from modelferry.dev.stack import DevOptions, dev_settings

    argv = ["dev", "--num-download-worker", "2", "--namespace", "models", "--node-label-retry", "7"]
    args = build_parser().parse_args(argv)
    opts = DevOptions(home=tmp_path, node_name="n1", settings=dev.flag_overrides(args))
    settings = dev_settings(opts, temporal_address="127.0.0.1:7233", kubeconfig=tmp_path / "kubeconfig")
    assert settings.download.num_download_worker == 2
    assert settings.kube.agent_namespace == "models" and settings.kube.node_label_retry == 7
    assert settings.cluster_claim_namespaces() == ["models"]  # the claims dev allows follow the namespace
