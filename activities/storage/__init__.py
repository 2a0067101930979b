"""Model storage: backends that list and read a source, and the engine that downloads from them.

- `base`: the contract (RemoteFile, ModelListing, StorageBackend, DownloadOptions, DownloadProgress);
- `registry.open_backend(uri, ...)`: the backend for a parsed storage URI (hf, pvc, s3, oci, vendor);
- `engine.download_model(backend, dest, ...)`: verified, resumable, atomic download of one model;
  `engine.download_slots(n)` caps concurrent model downloads per process.

The engine's parts live beside it: `plan` (what to keep/fetch/remove), `transfer` (one file's
ranged parts), `hashing`, `parts` (checkpoints), `manifest` (on-disk state), `diskspace`, `progress`.
"""

from activities.storage.base import (
    DownloadOptions,
    DownloadProgress,
    ModelListing,
    RemoteFile,
    StorageBackend,
)
from activities.storage.engine import (
    DownloadCancelledError,
    DownloadResult,
    download_model,
    download_slots,
)
from activities.storage.registry import BackendSettings, open_backend

__all__ = [
    "BackendSettings",
    "DownloadCancelledError",
    "DownloadOptions",
    "DownloadProgress",
    "DownloadResult",
    "ModelListing",
    "RemoteFile",
    "StorageBackend",
    "download_model",
    "download_slots",
    "open_backend",
]
