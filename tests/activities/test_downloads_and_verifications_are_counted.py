"""The node activities keep OME's model agent metrics: a delivered model counts one successful
download with its duration and every byte fetched, and one successful verification; a failed
download counts one failure with a bounded reason; a damaged version counts a failed verification
and a checksum failure. Labelled like OME (model_type, namespace, name) plus the node."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.files import FilesActivities
from modelferry import metrics
from modelferry.errors import (
    AccessDeniedError,
    ForeignPathError,
    InsufficientDiskSpaceError,
    PersistentChecksumMismatchError,
    SourceNotFoundError,
    SourceUnavailableError,
    TenancyError,
)
from modelferry.messages import DownloadModelInput, ModelRef, VerifyModelInput
from modelferry.names import ModelKind
from modelferry.settings import Settings, load_settings
from tests.activities.node_work import deliver
from tests.storage.fakes import MemoryBackend, Raise

REGISTRY = metrics.REGISTRY


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "node").mkdir()
    return load_settings(environ={}, overrides={"node.root": str(tmp_path / "node")})


def model(name: str, *, kind: ModelKind = ModelKind.CLUSTER_BASE_MODEL, namespace: str | None = None):
    return DownloadModelInput(
        ref=ModelRef(kind=kind, name=name, namespace=namespace, uid=f"uid-{name}"),
        spec={"storage": {"storageUri": f"s3://weights/{name}", "path": f"/raid/models/{name}"}},
        node="node-7",
    )


def value(metric: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric, labels) or 0.0


def test_a_delivered_model_counts_a_download_its_bytes_and_a_verification(settings, source):
    labels = {"model_type": "ClusterBaseModel", "namespace": "", "name": "counted", "node": "node-7"}
    verified_before = value("model_agent_verification_duration_seconds_count", node="node-7")
    source["backend"] = MemoryBackend({"a.bin": b"A" * 5000, "b.bin": b"B" * 3000})
    deliver(settings, model("counted"))
    assert value("model_agent_downloads_success_total", **labels) == 1
    assert value("model_agent_downloads_failed_total", **labels, reason="other") == 0
    assert value("model_agent_download_bytes_total", **labels) == 8000
    assert value("model_agent_download_duration_seconds_count", **labels) == 1
    assert value("model_agent_download_duration_seconds_bucket", **labels, le="172800.0") == 1
    assert value("model_agent_verifications_total", **labels, result="success") == 1
    assert value("model_agent_verification_duration_seconds_count", node="node-7") == verified_before + 1
    rendered = metrics.render().decode()
    line = 'model_agent_downloads_success_total{model_type="ClusterBaseModel",name="counted",namespace="",'
    assert f'{line}node="node-7"}} 1.0' in rendered


def test_a_namespaced_model_is_labelled_with_its_namespace(settings, source):
    source["backend"] = MemoryBackend({"a.bin": b"A" * 100})
    deliver(settings, model("scoped", kind=ModelKind.BASE_MODEL, namespace="team-a"))
    labels = {"model_type": "BaseModel", "namespace": "team-a", "name": "scoped", "node": "node-7"}
    assert value("model_agent_downloads_success_total", **labels) == 1


def test_a_failed_download_counts_a_failure_with_its_reason(settings, source):
    labels = {"model_type": "ClusterBaseModel", "namespace": "", "name": "refused", "node": "node-7"}
    backend = MemoryBackend({"a.bin": b"A" * 5000})
    backend.fail("a.bin", Raise(AccessDeniedError("403 from the bucket")))
    source["backend"] = backend
    with pytest.raises(ApplicationError, match="403"):
        deliver(settings, model("refused"))
    assert value("model_agent_downloads_failed_total", **labels, reason="access_denied") == 1
    assert value("model_agent_downloads_success_total", **labels) == 0
    assert value("model_agent_download_duration_seconds_count", **labels) == 0


def test_a_damaged_version_counts_a_failed_verification_and_a_checksum_failure(settings, source):
    labels = {"model_type": "ClusterBaseModel", "namespace": "", "name": "damaged", "node": "node-7"}
    source["backend"] = MemoryBackend({"a.bin": b"A" * 5000})
    inp = model("damaged")
    version = deliver(settings, inp)
    (settings.node.root / "raid/models/damaged/a.bin").write_bytes(b"A" * 4999)
    verify = VerifyModelInput(ref=inp.ref, spec=inp.spec, node=inp.node, version_id=version)
    with pytest.raises(ApplicationError, match="4999 bytes"):
        ActivityEnvironment().run(FilesActivities(settings=settings).verify_model, verify)
    assert value("model_agent_verifications_total", **labels, result="failure") == 1
    assert value("model_agent_verifications_total", **labels, result="success") == 1
    assert value("model_agent_md5_checksum_failed_total", **labels) == 1


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (AccessDeniedError("403"), "access_denied"),
        (SourceNotFoundError("404"), "not_found"),
        (SourceUnavailableError("503"), "source_unavailable"),
        (PersistentChecksumMismatchError("sha256 differs twice"), "checksum_mismatch"),
        (InsufficientDiskSpaceError("needs 10 GB"), "disk_full"),
        (TenancyError("another namespace's claim"), "invalid_spec"),
        (ForeignPathError("not ours"), "path_ownership"),
        (OSError(5, "EIO"), "io_error"),
        (ValueError("a bug"), "other"),
    ],
)
def test_failure_reasons_are_a_fixed_set(error: BaseException, reason: str) -> None:
    assert metrics.failure_reason(error) == reason
    assert reason in metrics.FAILURE_REASONS


def test_a_cancelled_download_is_a_cancellation() -> None:
    from temporalio.exceptions import CancelledError

    from activities.storage.engine import DownloadCancelledError

    assert metrics.failure_reason(CancelledError("cancelled")) == "cancelled"
    assert metrics.failure_reason(DownloadCancelledError("worker shutting down")) == "cancelled"
