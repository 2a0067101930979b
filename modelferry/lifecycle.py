"""Which spec changes need node work (pure).

Writing parsed metadata back into the spec bumps `metadata.generation`; that must not re-download a
model everywhere. A node's delivery depends only on where the bytes come from and where they go,
so nodes are re-delivered when this fingerprint changes, not on every generation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

_DELIVERY_KEYS = ("storageUri", "path", "parameters", "storageKey", "key", "downloadPolicy")


def delivery_fingerprint(spec: Mapping[str, Any]) -> str:
    storage = spec.get("storage") or {}
    relevant = {k: storage.get(k) for k in _DELIVERY_KEYS if storage.get(k) is not None}
    blob = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
