"""The wire base class and Kubernetes object metadata shared by every model resource.

Every model here mirrors a JSON object as the API server stores it: camelCase keys on the wire,
snake_case attributes in Python (`populate_by_name`). Scalars use pydantic's strict types so
that `validate` refuses exactly what the API server's schema refuses (`disabled: "yes"` is not a
boolean to Kubernetes, so it is not one here either).

Unknown-field policy (see also `modelferry.spec.rules`):
- `spec` and everything below it is *closed* (`extra="forbid"`): a misspelt field such as
  `storageURI` is an error instead of being silently dropped, as the API server would prune it.
  The closed set is OME's full v1beta1 field set, so every resource OME accepts is accepted.
- `metadata` is *open*: the API server owns it and adds fields (managedFields, ownerReferences...).
- `status` is *open*: it is written by controllers, possibly newer ones than this code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from pydantic.json_schema import JsonDict

# Strict scalar aliases: no "1" -> 1 or "true" -> True coercion, matching the API server.
Str = StrictStr
Bool = StrictBool
Int = StrictInt
Int32 = Annotated[StrictInt, Field(ge=-(2**31), le=2**31 - 1, json_schema_extra={"format": "int32"})]
Int64 = Annotated[StrictInt, Field(json_schema_extra={"format": "int64"})]
StrMap = dict[StrictStr, StrictStr]

# JSON Schema key for a default the CRD declares but the model does not apply: the API server
# fills it in (as OME's CRD does, e.g. `modelFormat.operator: Equal`), while `validate` and the
# messages keep the resource as written. `modelferry.spec.crdgen` turns it into `default`.
CRD_DEFAULT = "x-modelferry-crd-default"
# Merge semantics of server-side apply, as OME's CRD declares them (`x-kubernetes-map-type`).
ATOMIC_MAP: JsonDict = {"x-kubernetes-map-type": "atomic"}


class ClosedWire(BaseModel):
    """A wire object whose fields are all known: unknown keys are errors."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class OpenWire(BaseModel):
    """A wire object owned by someone else: unknown keys are kept and round-trip unchanged."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")


class ObjectMeta(OpenWire):
    """Standard Kubernetes object metadata; only the fields this project reads are typed."""

    name: Str = Field(description="Name of the resource (a DNS-1123 subdomain).")
    namespace: Str | None = None
    uid: Str | None = None
    generation: Int | None = None
    resource_version: Str | None = Field(default=None, alias="resourceVersion")
    labels: StrMap | None = None
    annotations: StrMap | None = None
    finalizers: list[Str] | None = None
    creation_timestamp: datetime | None = Field(default=None, alias="creationTimestamp")
    deletion_timestamp: datetime | None = Field(default=None, alias="deletionTimestamp")
