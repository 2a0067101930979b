"""Reading the Kubernetes protobuf encoding for the few kinds kubectl's typed commands send.

`kubectl create configmap|secret|namespace|serviceaccount` posts its object as
`application/vnd.kubernetes.protobuf`: the magic `k8s\\0`, then a `runtime.Unknown` envelope
(type meta, raw bytes), whose raw bytes are the object's own message. This module turns those
four kinds into the JSON form the rest of the server handles. Any field number it does not know is
refused (415) rather than dropped, so a mistake here cannot lose data silently; every other kind
stays JSON-only.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"


class ProtobufError(ValueError):
    """The body is not protobuf this server can read."""


# A message spec: field number -> (JSON name, type, repeated). Types: string, bytes, int, bool,
# time (metav1.Time), map:string / map:bytes (map<string, ...>), or a nested spec.
Spec = dict[int, tuple[str, Any, bool]]

_TYPE_META: Spec = {1: ("apiVersion", "string", False), 2: ("kind", "string", False)}
_UNKNOWN: Spec = {
    1: ("typeMeta", _TYPE_META, False),
    2: ("raw", "raw", False),
    3: ("contentEncoding", "string", False),
    4: ("contentType", "string", False),
}
_OWNER_REFERENCE: Spec = {
    1: ("kind", "string", False),
    3: ("name", "string", False),
    4: ("uid", "string", False),
    5: ("apiVersion", "string", False),
    6: ("controller", "bool", False),
    7: ("blockOwnerDeletion", "bool", False),
}
_OBJECT_META: Spec = {
    1: ("name", "string", False),
    2: ("generateName", "string", False),
    3: ("namespace", "string", False),
    4: ("selfLink", "string", False),
    5: ("uid", "string", False),
    6: ("resourceVersion", "string", False),
    7: ("generation", "int", False),
    8: ("creationTimestamp", "time", False),
    9: ("deletionTimestamp", "time", False),
    10: ("deletionGracePeriodSeconds", "int", False),
    11: ("labels", "map:string", False),
    12: ("annotations", "map:string", False),
    13: ("ownerReferences", _OWNER_REFERENCE, True),
    14: ("finalizers", "string", True),
}
_REFERENCE: Spec = {1: ("name", "string", False)}
_KINDS: dict[tuple[str, str], Spec] = {
    ("v1", "ConfigMap"): {
        1: ("metadata", _OBJECT_META, False),
        2: ("data", "map:string", False),
        3: ("binaryData", "map:bytes", False),
        4: ("immutable", "bool", False),
    },
    ("v1", "Secret"): {
        1: ("metadata", _OBJECT_META, False),
        2: ("data", "map:bytes", False),
        3: ("type", "string", False),
        4: ("stringData", "map:string", False),
        5: ("immutable", "bool", False),
    },
    ("v1", "Namespace"): {
        1: ("metadata", _OBJECT_META, False),
        2: ("spec", {1: ("finalizers", "string", True)}, False),
        3: ("status", {1: ("phase", "string", False)}, False),
    },
    ("v1", "ServiceAccount"): {
        1: ("metadata", _OBJECT_META, False),
        3: ("imagePullSecrets", _REFERENCE, True),
        4: ("automountServiceAccountToken", "bool", False),
    },
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            number_value, pos = _varint(data, pos)
            yield number, wire, number_value
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError("truncated field")
            yield number, wire, data[pos : pos + length]
            pos += length
        else:
            raise ProtobufError(f"unexpected wire type {wire} for field {number}")


def _value(kind: Any, wire: int, raw: Any) -> Any:
    if isinstance(kind, dict):
        return _message(raw, kind)
    if (wire == 0) != (kind in ("int", "bool")):
        raise ProtobufError(f"wire type {wire} does not fit a {kind}")
    if kind == "int":
        return raw - (1 << 64) if raw >= 1 << 63 else raw
    if kind == "bool":
        return bool(raw)
    if kind == "string":
        return bytes(raw).decode()
    if kind in ("bytes", "raw"):
        return bytes(raw) if kind == "raw" else base64.b64encode(raw).decode()
    if kind == "time":
        seconds = _message(raw, {1: ("seconds", "int", False), 2: ("nanos", "int", False)}).get("seconds", 0)
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    entry = _message(raw, {1: ("key", "string", False), 2: ("value", kind.split(":")[1], False)})
    return {entry.get("key", ""): entry.get("value", "")}


def _message(data: bytes, spec: Spec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, wire, raw in _fields(data):
        if number not in spec:
            raise ProtobufError(f"field {number} is not understood here")
        name, kind, repeated = spec[number]
        value = _value(kind, wire, raw)
        if isinstance(kind, str) and kind.startswith("map:"):
            out.setdefault(name, {}).update(value)
        elif repeated:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out


def decode_object(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded ConfigMap, Secret, Namespace or ServiceAccount."""
    if not body.startswith(_MAGIC):
        raise ProtobufError("missing the k8s protobuf prefix")
    envelope = _message(body[len(_MAGIC) :], _UNKNOWN)
    type_meta = envelope.get("typeMeta") or {}
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    spec = _KINDS.get((api_version, kind))
    if spec is None or envelope.get("contentEncoding"):
        raise ProtobufError(f"protobuf bodies are only read for {sorted(k for _, k in _KINDS)}")
    return {"apiVersion": api_version, "kind": kind, **_message(envelope.get("raw", b""), spec)}
