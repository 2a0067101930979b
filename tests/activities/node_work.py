"""Node activities run the way a node worker runs them, without Temporal: download, verify and
activate one model (`deliver`), remove it (`remove`); and a memory source the download activity
opens instead of a real backend (`memory_source` fixture, in conftest.py)."""

from __future__ import annotations

from temporalio.testing import ActivityEnvironment

from activities.download import DownloadActivities
from activities.files import FilesActivities
from modelferry.messages import (
    ActivateModelVersionInput,
    DownloadModelInput,
    ModelRef,
    RemoveModelFilesInput,
    VerifyModelInput,
)
from modelferry.names import ModelKind
from modelferry.settings import Settings

# A model whose source is the `source` fixture's MemoryBackend (the URI only has to parse).
MEMORY_MODEL_PATH = "/raid/models/llama"
MEMORY_MODEL = DownloadModelInput(
    ref=ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name="llama", uid="u1"),
    spec={"storage": {"storageUri": "s3://weights/llama", "path": MEMORY_MODEL_PATH}},
    node="node-1",
)


def deliver(settings: Settings, inp: DownloadModelInput) -> str:
    """The version id now active at the model's path."""
    env = ActivityEnvironment()
    downloaded = env.run(DownloadActivities(settings=settings, secrets=None).download_model, inp)
    work = {"ref": inp.ref, "spec": inp.spec, "node": inp.node, "version_id": downloaded.version_id}
    files = FilesActivities(settings=settings)
    env.run(files.verify_model, VerifyModelInput(**work))
    return env.run(files.activate_model_version, ActivateModelVersionInput(**work)).version_id


def remove(settings: Settings, inp: DownloadModelInput) -> bool:
    removal = RemoveModelFilesInput(ref=inp.ref, spec=inp.spec, node=inp.node)
    return ActivityEnvironment().run(FilesActivities(settings=settings).remove_model_files, removal).removed
