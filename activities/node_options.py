"""Settings → what the storage engine and the backends are handed on a node: one function each.

The download activity (`modelferry worker`, DaemonSet and Job mode alike) and `modelferry pull`
both build their `DownloadOptions` and `BackendSettings` here, so every `download` and `node`
setting reaches the engine and the backends the same way. They live in activities, not beside
`modelferry.options.pipeline_options`, because their types belong to the storage engine and the
shared core never imports a layer above it.
"""

from __future__ import annotations

import os
from pathlib import Path

from activities.storage.base import DownloadOptions
from activities.storage.registry import BackendSettings
from modelferry.settings import Settings


def download_options(settings: Settings) -> DownloadOptions:
    """The engine's knobs from `download`."""
    d = settings.download
    return DownloadOptions(
        concurrency=d.concurrency,
        multipart_concurrency=d.multipart_concurrency,
        retries=d.download_retry,
        stall_timeout=d.stall_timeout,
    )


def backend_settings(settings: Settings) -> BackendSettings:
    """What every backend may read, from `node` (where things are) and `download` (how hard to pull)."""
    d = settings.download
    return BackendSettings(
        hf_endpoint=settings.node.hf_endpoint,
        pvc_mounts={claim: Path(directory) for claim, directory in settings.node.pvc_mounts.items()},
        connect_timeout=d.connect_timeout,
        read_timeout=d.read_timeout,
        # Backends size their connection pools from these two.
        concurrency=d.concurrency,
        multipart_concurrency=d.multipart_concurrency,
    )


def peer_token(settings: Settings) -> str | None:
    """The cluster's peer token, from the variable `peer.token_env` names (read when a server
    starts or a download begins, never at import); None when unset. The peer server checks
    callers against it, the download activity sends it to peers."""
    return os.environ.get(settings.peer.token_env) or None
