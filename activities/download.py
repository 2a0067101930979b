"""Node-queue activity: download a model's current source revision into its version directory.

All transfer logic is the storage engine's (parallel, ranged, hashed while writing, resumable from
the `.partial` files and their part checkpoints on disk). This activity adds what Temporal gives:
heartbeats carrying a checkpoint (revision, files done, bytes per file), and a retried attempt
pins the revision the previous attempt was fetching, so a moving branch cannot mix two revisions.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import CancelledError

from activities.errors import typed_failures
from activities.heartbeat import Heartbeater, last_checkpoint
from activities.secrets import SecretReader, read_model_secret
from activities.storage.base import DownloadOptions, DownloadProgress
from activities.storage.engine import DownloadCancelledError
from activities.storage.engine import download_model as engine_download
from activities.storage.registry import BackendSettings, open_backend
from modelferry.errors import InvalidSpecError
from modelferry.layout import model_layout, version_id_for
from modelferry.messages import DownloadModelResult, NodeModelInput
from modelferry.settings import Settings
from modelferry.storage_uri import HuggingFaceUri, StorageUri, parse_storage_uri


def storage_uri_of(inp: NodeModelInput) -> StorageUri:
    storage = inp.spec.get("storage") or {}
    uri = storage.get("storageUri")
    if not uri:
        raise InvalidSpecError("is required", field="spec.storage.storageUri")
    return parse_storage_uri(
        str(uri), parameters=storage.get("parameters"), cluster_scoped=not inp.ref.kind.namespaced
    )


def storage_path_of(inp: NodeModelInput) -> str:
    path = (inp.spec.get("storage") or {}).get("path")
    if not path:
        raise InvalidSpecError("is required to place the model on the node", field="spec.storage.path")
    return str(path)


class DownloadActivities:
    def __init__(self, *, settings: Settings, secrets: SecretReader | None) -> None:
        self._settings = settings
        self._secrets = secrets

    def download_options(self) -> DownloadOptions:
        d = self._settings.download
        return DownloadOptions(
            concurrency=d.concurrency,
            multipart_concurrency=d.multipart_concurrency,
            retries=d.download_retry,
            stall_timeout=d.stall_timeout,
        )

    def backend_settings(self) -> BackendSettings:
        return BackendSettings(
            hf_endpoint=self._settings.node.hf_endpoint,
            pvc_mounts={k: Path(v) for k, v in self._settings.node.pvc_mounts.items()},
        )

    @activity.defn(name="download_model")
    @typed_failures
    def download_model(self, inp: NodeModelInput) -> DownloadModelResult:
        uri = storage_uri_of(inp)
        layout = model_layout(node_root=self._settings.node.root, storage_path=storage_path_of(inp))
        checkpoint = last_checkpoint()
        pinned = checkpoint.get("revision")
        if pinned and isinstance(uri, HuggingFaceUri) and uri.revision != pinned:
            uri = dataclasses.replace(uri, revision=pinned)
        secret = read_model_secret(
            reader=self._secrets,
            ref=inp.ref,
            spec=inp.spec,
            agent_namespace=self._settings.kube.agent_namespace,
        )
        started = time.monotonic()
        with Heartbeater() as beat:
            if checkpoint:
                activity.logger.info(
                    "resuming %s on %s from checkpoint: %s file(s) done, revision %s",
                    inp.ref.display(),
                    inp.node,
                    len(checkpoint.get("files_done", [])),
                    pinned,
                )
            backend = open_backend(
                uri,
                parameters=(inp.spec.get("storage") or {}).get("parameters"),
                secret=secret,
                settings=self.backend_settings(),
            )
            try:
                listing = backend.list_files()
                version_id = version_id_for(listing.revision)
                base: dict[str, Any] = {"revision": listing.revision, "version_id": version_id}
                beat.update(base)

                def on_progress(progress: DownloadProgress) -> None:
                    beat.update(
                        {
                            **base,
                            "bytes_done": progress.bytes_done,
                            "bytes_total": progress.bytes_total,
                            "files_done_count": progress.files_done,
                            "files_total": progress.files_total,
                            "partial_bytes": dict(progress.partial_bytes),
                            "bytes_per_second": round(progress.bytes_per_second),
                            "eta_seconds": progress.eta_seconds,
                        }
                    )

                try:
                    result = engine_download(
                        backend,
                        layout.version_dir(version_id),
                        options=self.download_options(),
                        on_progress=on_progress,
                        cancel=beat.cancel,
                        listing=listing,
                    )
                except DownloadCancelledError:
                    if activity.is_cancelled():
                        raise CancelledError("download cancelled; partial state kept for resume") from None
                    raise  # worker shutting down: a retryable failure, resumed by the next attempt
            finally:
                backend.close()
        activity.logger.info(
            "%s on %s: %d file(s), %d bytes, %d transferred in %.1fs",
            inp.ref.display(),
            inp.node,
            len(listing.files),
            listing.total_bytes,
            result.bytes_transferred,
            time.monotonic() - started,
        )
        return DownloadModelResult(
            revision=listing.revision,
            version_id=version_id,
            total_bytes=listing.total_bytes,
            bytes_transferred=result.bytes_transferred,
            files=len(listing.files),
        )
