"""Node-queue activity: download a model's current source revision into its version directory.

Before any byte is fetched it applies the admission rules again (tenancy of a `pvc://` claim, the
models roots; `modelferry.admission`), checks name lengths against the node's filesystem, and
claims the model's path (`activities.ownership`): a path that is not this model's is refused with
both owners named. The version directory is named by content (`layout.content_version_id`).

All transfer logic is the storage engine's (parallel, ranged, hashed while writing, resumable from
the `.partial` files and their part checkpoints on disk). This activity adds what Temporal gives:
heartbeats carrying a checkpoint (revision, version, bytes and files done), and a retried attempt
pins the revision the previous attempt was fetching, so a moving branch cannot mix two revisions.

Peer delivery (`DownloadModelInput.peers`): the listing still comes from the origin, and the
engine reads through `storage.peer.PeeredBackend`, which takes each byte range from the peers in
order, then the origin, and drops a peer that fails or lies; the result says how many bytes each
peer fed and why any was dropped, and carries this node's own peer URL (`peer_url`) so the
workflow can hand this node to the next ones once it is Ready.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from temporalio import activity
from temporalio.exceptions import CancelledError

from activities import node_options
from activities.errors import typed_failures
from activities.heartbeat import Heartbeater, last_checkpoint
from activities.ownership import claim_model_path, name_limits, owner_for
from activities.secrets import SecretReader, read_model_secret
from activities.storage.base import (
    DownloadOptions,
    DownloadProgress,
    ModelListing,
    RemoteFile,
    StorageBackend,
)
from activities.storage.engine import DownloadCancelledError
from activities.storage.engine import download_model as engine_download
from activities.storage.manifest import DIGEST_KINDS, Manifest, StateLayout, read_manifest
from activities.storage.peer import Peer, PeeredBackend
from activities.storage.registry import BackendSettings, open_backend
from activities.storage.seed import seed_from_version
from modelferry import metrics
from modelferry.admission import admission_policy, check_claim_access, resolve_claim
from modelferry.errors import InvalidSpecError
from modelferry.layout import (
    FileIdentity,
    ModelLayout,
    content_version_id,
    host_path,
    model_layout,
    source_identity,
    version_id_for,
)
from modelferry.messages import DownloadModelInput, DownloadModelResult, NodeWork, PeerSource
from modelferry.ownership import check_link_name, check_models_root, check_name_lengths
from modelferry.settings import Settings
from modelferry.storage_uri import (
    HuggingFaceUri,
    PvcUri,
    StorageUri,
    validate_model_path,
)


@dataclass(frozen=True, slots=True)
class NodePlacement:
    layout: ModelLayout
    models_root: Path  # the host path of the models root that storage.path lies below


def node_placement(*, settings: Settings, inp: NodeWork) -> NodePlacement:
    """Where the model goes on this node, after the path rules and the models-root rule."""
    storage_path = validate_model_path(storage_path_of(inp))
    root = check_models_root(storage_path, models_roots=admission_policy(settings).models_roots)
    return NodePlacement(
        layout=model_layout(node_root=settings.node.root, storage_path=storage_path),
        models_root=host_path(node_root=settings.node.root, storage_path=root),
    )


def admitted_uri(*, settings: Settings, inp: NodeWork) -> StorageUri:
    """The source URI, refused if the resource may not read it; a claim's namespace filled in."""
    uri = inp.storage_uri()
    if isinstance(uri, PvcUri):
        check_claim_access(
            kind=inp.ref.kind,
            namespace=inp.ref.namespace,
            uri=uri,
            allowed=settings.cluster_claim_namespaces(),
        )
        namespace, _ = resolve_claim(kind=inp.ref.kind, namespace=inp.ref.namespace, uri=uri)
        uri = dataclasses.replace(uri, namespace=namespace)
    return uri


# What identifies a file's content: every digest we verify, and the source's opaque version tag.
_IDENTITY_KINDS = (*DIGEST_KINDS, "etag")


def _file_identity(f: RemoteFile) -> FileIdentity:
    digests = {k: getattr(f, k) for k in _IDENTITY_KINDS}
    return FileIdentity(name=f.name, size=f.size, digests=tuple((k, v) for k, v in digests.items() if v))


def choose_version_id(
    *, layout: ModelLayout, uri: StorageUri, listing: ModelListing, fresh_tag: str = ""
) -> str:
    """The version directory this listing goes to.

    - `fresh_tag`: a new directory `<content version id>-<fresh_tag>`, whatever is on disk;
    - else the ACTIVE version when its manifest holds exactly this listing, so a version a fresh
      download or a repair named `<id>-<tag>` keeps serving later deliveries of the same content;
    - else the content-identified version; a complete directory of an older release (named by the
      revision alone) is reused when its manifest holds exactly this listing, so an upgrade
      downloads nothing again.
    """
    content_id = content_version_id(
        source=source_identity(uri),
        revision=listing.revision,
        files=[_file_identity(f) for f in listing.files],
    )
    if fresh_tag:
        return fresh_version_id(content_id, fresh_tag=fresh_tag)
    active = active_version(layout)
    if active is not None and active != content_id:
        manifest = read_manifest(StateLayout(layout.version_dir(active)).manifest)
        if manifest is not None and manifest_holds(manifest, listing):
            return active
    legacy_id = version_id_for(listing.revision)
    if layout.version_dir(content_id).exists() or legacy_id == content_id:
        return content_id
    manifest = read_manifest(StateLayout(layout.version_dir(legacy_id)).manifest)
    if manifest is not None and manifest_holds(manifest, listing):
        return legacy_id
    return content_id


def fresh_version_id(content_id: str, *, fresh_tag: str) -> str:
    """`<content version id>-<tag>`: a directory no earlier delivery of this content used."""
    return f"{content_id}-{version_id_for(fresh_tag)}"


def active_version(layout: ModelLayout) -> str | None:
    """The version `storage.path` points at now (None when it is not a symlink)."""
    if not layout.link.is_symlink():
        return None
    return Path(os.readlink(layout.link)).name


def manifest_holds(manifest: Manifest, listing: ModelListing) -> bool:
    """True when a verified manifest records exactly the listed files, with no digest disagreeing."""
    if manifest.revision != listing.revision or len(manifest.files) != len(listing.files):
        return False
    records = {r.name: r for r in manifest.files}
    for f in listing.files:
        record = records.get(f.name)
        if record is None or record.size != f.size:
            return False
        for kind in _IDENTITY_KINDS:
            want, have = getattr(f, kind), getattr(record, kind)
            if want and have and want != have:
                return False
    return True


def metric_labels(inp: NodeWork) -> metrics.ModelLabels:
    """OME's metric labels for this model on this node (`namespace` empty when cluster-scoped)."""
    namespace = inp.ref.namespace if inp.ref.kind.namespaced else None
    return metrics.ModelLabels(
        model_type=inp.ref.kind.value, namespace=namespace or "", name=inp.ref.name, node=inp.node
    )


def storage_path_of(inp: NodeWork) -> str:
    path = inp.spec.storage.path
    if not path:
        raise InvalidSpecError("is required to place the model on the node", field="spec.storage.path")
    return path


def _seed_repair(
    inp: DownloadModelInput,
    *,
    layout: ModelLayout,
    version_id: str,
    listing: ModelListing,
    backend: StorageBackend,
) -> None:
    """A repair: the new version starts as the damaged one's sound files (`storage.seed`)."""
    if not inp.fresh_tag:
        raise InvalidSpecError("a repair needs a fresh_tag: it never writes into the damaged version")
    if PurePosixPath(inp.repair_from).name != inp.repair_from or inp.repair_from in (".", ".."):
        raise InvalidSpecError(f"repair_from {inp.repair_from!r} is not a version id")
    if inp.repair_from == version_id:
        return
    seeded = seed_from_version(
        source=layout.version_dir(inp.repair_from),
        dest=layout.version_dir(version_id),
        listing=listing,
        damaged=set(inp.damaged_files),
        describe=backend.describe(),
    )
    activity.logger.info(
        "%s on %s: repairing %s as %s: %d file(s) linked, %d copied, %d left to fetch",
        inp.ref.display(),
        inp.node,
        inp.repair_from,
        version_id,
        len(seeded.linked),
        len(seeded.copied),
        len(seeded.skipped),
    )


def peered_backend(
    origin: StorageBackend,
    *,
    peers: list[PeerSource],
    node: str,
    storage_path: str,
    settings: Settings,
    token: str | None,
) -> tuple[PeeredBackend | None, dict[str, str]]:
    """The backend that reads from `peers` first (None when none can be asked), and the peers
    left out before any byte, with why."""
    usable = [p for p in peers if p.node != node and p.url]
    if not usable:
        return None, {}
    if token is None:
        reason = f"this node has no peer token (${settings.peer.token_env} is not set)"
        return None, {p.node: reason for p in usable}
    d = settings.download
    backend = PeeredBackend(
        origin=origin,
        peers=[Peer(node=p.node, url=p.url, version_id=p.version_id) for p in usable],
        storage_path=storage_path,
        token=token,
        pool_size=d.concurrency * max(1, d.multipart_concurrency),
    )
    return backend, {}


class DownloadActivities:
    """The download activity of one node worker; `peer_url` is where that worker's peer server
    serves (`activities.peer_server`), "" when it serves none."""

    def __init__(self, *, settings: Settings, secrets: SecretReader | None, peer_url: str = "") -> None:
        self._settings = settings
        self._secrets = secrets
        self._peer_url = peer_url

    def download_options(self) -> DownloadOptions:
        return node_options.download_options(self._settings)

    def backend_settings(self) -> BackendSettings:
        return node_options.backend_settings(self._settings)

    @activity.defn(name="download_model")
    @typed_failures
    def download_model(self, inp: DownloadModelInput) -> DownloadModelResult:
        with metrics.observe_download(metric_labels(inp)) as observed:
            result = self._download(inp, observed)
            observed.transferred(result.bytes_transferred)
            return result

    def _download(
        self, inp: DownloadModelInput, observed: metrics.DownloadObservation
    ) -> DownloadModelResult:
        uri = admitted_uri(settings=self._settings, inp=inp)
        placement = node_placement(settings=self._settings, inp=inp)
        layout = placement.layout
        limits = name_limits(placement.models_root)
        check_link_name(storage_path=storage_path_of(inp), limits=limits)
        claim_model_path(layout=layout, owner=owner_for(inp.ref), models_root=placement.models_root)
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
                    checkpoint.get("files_done_count", 0),
                    pinned,
                )
            backend = open_backend(
                uri,
                parameters=inp.spec.storage.parameters,
                secret=secret,
                settings=self.backend_settings(),
            )
            try:
                listing = backend.list_files()
                version_id = choose_version_id(
                    layout=layout, uri=uri, listing=listing, fresh_tag=inp.fresh_tag
                )
                check_name_lengths(
                    version_dir=str(layout.version_dir(version_id)),
                    names=[f.name for f in listing.files],
                    limits=limits,
                )
                if inp.repair_from:
                    _seed_repair(inp, layout=layout, version_id=version_id, listing=listing, backend=backend)
                base: dict[str, Any] = {"revision": listing.revision, "version_id": version_id}
                beat.update(base)

                def on_progress(progress: DownloadProgress) -> None:
                    observed.transferred(progress.bytes_transferred)
                    beat.update(
                        {
                            **base,
                            "bytes_done": progress.bytes_done,
                            "bytes_total": progress.bytes_total,
                            "files_done_count": progress.files_done,
                            "files_total": progress.files_total,
                            "bytes_per_second": round(progress.bytes_per_second),
                            "eta_seconds": progress.eta_seconds,
                        }
                    )

                peered, dropped = peered_backend(
                    backend,
                    peers=inp.peers,
                    node=inp.node,
                    storage_path=storage_path_of(inp),
                    settings=self._settings,
                    token=node_options.peer_token(self._settings) if inp.peers else None,
                )
                try:
                    result = engine_download(
                        peered or backend,
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
                    if peered is not None:
                        peered.close()
                        dropped.update(peered.dropped_peers)
            finally:
                backend.close()
        from_peers = peered.bytes_from_peers if peered is not None else {}
        activity.logger.info(
            "%s on %s: %d file(s), %d bytes, %d transferred (%d from peers) in %.1fs",
            inp.ref.display(),
            inp.node,
            len(listing.files),
            listing.total_bytes,
            result.bytes_transferred,
            sum(from_peers.values()),
            time.monotonic() - started,
        )
        for node, reason in sorted(dropped.items()):
            activity.logger.info("%s on %s: peer %s dropped: %s", inp.ref.display(), inp.node, node, reason)
        return DownloadModelResult(
            revision=listing.revision,
            version_id=version_id,
            total_bytes=listing.total_bytes,
            bytes_transferred=result.bytes_transferred,
            files=len(listing.files),
            bytes_from_peers=from_peers,
            dropped_peers=dropped,
            peer_url=self._peer_url,
        )
