"""`spec.storage`: where a model comes from, where it goes on the node, and which nodes get it.

OME's wire name for the secret key is `key` (Go field `StorageKey`). Both `key` and `storageKey`
are accepted on input; output always uses `key`, so what we write back is what OME reads. Giving
both with different values is an error rather than a silent pick.

Only types are checked here; whether `storageUri` parses and `path` is safe is decided by
`modelferry.spec.rules`, which knows the resource's kind (a cluster-scoped resource must name the
namespace of a `pvc://` claim).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import AliasChoices, ConfigDict, Field, model_validator

from modelferry.spec.affinity import NodeAffinity
from modelferry.spec.meta import ATOMIC_MAP, ClosedWire, Str, StrMap


class DownloadPolicy(StrEnum):
    """OME's download policies."""

    REUSE_IF_EXISTS = "ReuseIfExists"
    ALWAYS_DOWNLOAD = "AlwaysDownload"


def _add_storage_key_alias(schema: dict[str, Any]) -> None:
    # The CRD must accept the input alias too, or the cluster would refuse what `validate` accepts.
    props = schema.get("properties", {})
    if "key" in props:
        props["storageKey"] = {**props["key"], "description": "Input alias of `key`; prefer `key`."}


class StorageSpec(ClosedWire):
    """Source, destination and node placement of the model files."""

    model_config = ConfigDict(json_schema_extra=_add_storage_key_alias)

    storage_uri: Str = Field(
        alias="storageUri",
        description="hf://org/repo[@rev], s3://bucket/prefix, oci://n/ns/b/bucket/o/prefix, "
        "pvc://[namespace:]claim/sub-path or vendor://vendor/type/path.",
    )
    path: Str | None = Field(default=None, description="Absolute, normalised directory on the node.")
    schema_path: Str | None = Field(default=None, alias="schemaPath")
    storage_key: Str | None = Field(
        default=None,
        validation_alias=AliasChoices("key", "storageKey", "storage_key"),
        serialization_alias="key",
        description="Name of the Secret holding the credentials for the source.",
    )
    parameters: StrMap | None = Field(default=None, description="Source options (region, endpoint...).")
    node_selector: StrMap | None = Field(default=None, alias="nodeSelector", json_schema_extra=ATOMIC_MAP)
    node_affinity: NodeAffinity | None = Field(default=None, alias="nodeAffinity")
    download_policy: DownloadPolicy | None = Field(default=None, alias="downloadPolicy")

    @model_validator(mode="before")
    @classmethod
    def _one_storage_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "key" in data and "storageKey" in data:
            if data["key"] != data["storageKey"]:
                raise ValueError("give the secret key as `key` or `storageKey`, not both")
            data = {k: v for k, v in data.items() if k != "storageKey"}
        return data
