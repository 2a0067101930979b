"""Object metadata rules shared by every kind: names, timestamps, uids, generateName.

Kept apart from the store so the rules read as a list and can be unit-tested as pure functions.
"""

from __future__ import annotations

import random
import re
import uuid
from datetime import UTC, datetime

_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# The alphabet and length a real server appends to generateName (no vowels, no look-alikes).
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_GENERATE_SUFFIX_LEN = 5


def name_problem(name: str, rule: str) -> str | None:
    """Why `name` breaks the naming rule of its kind, or None if it is fine."""
    if rule == "path":
        if name in (".", ".."):
            return f"may not be '{name}'"
        if "/" in name or "%" in name:
            return "may not contain '/' or '%'"
        return None
    if rule == "label":
        if len(name) > 63 or not _LABEL_RE.match(name):
            return (
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                "and must start and end with an alphanumeric character (at most 63 characters)"
            )
        return None
    if rule == "dns1035":
        if len(name) > 63 or not _DNS1035_RE.match(name):
            return (
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
                "an alphabetic character, and end with an alphanumeric character (at most 63 characters)"
            )
        return None
    if len(name) > 253 or not _SUBDOMAIN_RE.match(name):
        return (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
            "'.', and must start and end with an alphanumeric character (at most 253 characters)"
        )
    return None


def generate_name(prefix: str) -> str:
    """`prefix` plus a random suffix; the prefix is cut so the result stays a valid length."""
    suffix = "".join(random.choice(_GENERATE_ALPHABET) for _ in range(_GENERATE_SUFFIX_LEN))
    return prefix[: 63 - _GENERATE_SUFFIX_LEN] + suffix


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None


def new_uid() -> str:
    return str(uuid.uuid4())


_LABEL_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")


def label_key_problem(key: str) -> str | None:
    """Why a label key is not a qualified name (`[prefix/]name`), or None."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _SUBDOMAIN_RE.match(prefix)):
        return f"prefix part of {key!r} must be a DNS subdomain"
    if not name or len(name) > 63 or not _LABEL_NAME_RE.match(name):
        return (
            f"name part of {key!r} must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (at most 63 characters)"
        )
    return None


def label_value_problem(value: str) -> str | None:
    if value == "":
        return None
    if len(value) > 63 or not _LABEL_NAME_RE.match(value):
        return (
            f"label value {value!r} must be 63 characters or less, begin and end with an alphanumeric "
            "character, and contain only alphanumerics, '-', '_' or '.'"
        )
    return None
