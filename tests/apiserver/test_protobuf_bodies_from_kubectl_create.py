"""`kubectl create configmap|secret|namespace|serviceaccount` send protobuf bodies: they are read
exactly, and anything the reader does not understand is a 415, never a silent loss."""

from __future__ import annotations

import base64
import json

import pytest

from modelferry.apiserver.protobuf import ProtobufError, decode_object

from .conftest import KubectlRunner, uniq


def varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, value: bytes | str | int) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def entry(key: str, value: bytes | str) -> bytes:
    return field(1, key) + field(2, value)


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return b"k8s\x00" + field(1, field(1, api_version) + field(2, kind)) + field(2, raw)


def test_a_configmap_decodes_to_its_json_form() -> None:
    meta = field(1, "cm") + field(3, "ns") + field(11, entry("app", "x")) + field(14, "a/b") + field(7, 3)
    raw = (
        field(1, meta)
        + field(2, entry("k", "v"))
        + field(2, entry("k2", "v2"))
        + field(3, entry("bin", b"\x00\xff"))
        + field(4, 1)
    )
    assert decode_object(envelope("v1", "ConfigMap", raw)) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "cm",
            "namespace": "ns",
            "labels": {"app": "x"},
            "finalizers": ["a/b"],
            "generation": 3,
        },
        "data": {"k": "v", "k2": "v2"},
        "binaryData": {"bin": base64.b64encode(b"\x00\xff").decode()},
        "immutable": True,
    }


@pytest.mark.parametrize(
    "body",
    [
        b"{}",  # no magic
        envelope("apps/v1", "Deployment", b""),  # a kind it does not read
        envelope("v1", "ConfigMap", field(9, "surprise")),  # an unknown field
        envelope("v1", "ConfigMap", field(2, 5)),  # a map sent as a number
        b"k8s\x00" + varint(2 << 3 | 2) + varint(50) + b"short",  # truncated
    ],
)
def test_what_it_cannot_read_is_refused(body: bytes) -> None:
    with pytest.raises(ProtobufError):
        decode_object(body)


@pytest.mark.parametrize(
    "args",
    [
        ["configmap", "{name}", "--from-literal=a=1", "--from-literal=b=two words"],
        ["secret", "generic", "{name}", "--from-literal=token=s3cr3t", "--type=Opaque"],
        [
            "secret",
            "docker-registry",
            "{name}",
            "--docker-server=r.io",
            "--docker-username=u",
            "--docker-password=p",
        ],
        ["serviceaccount", "{name}"],
        ["namespace", "{name}"],
    ],
)
def test_kubectl_create_stores_what_it_would_have_sent(kubectl: KubectlRunner, args: list[str]) -> None:
    args = [a.format(name=uniq("pb")) for a in args]
    want = json.loads(kubectl("create", *args, "--dry-run=client", "-o", "json").stdout)
    result = kubectl("create", *args, "-o", "json")
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    for key in set(want) - {"metadata", "status", "spec"}:
        assert got[key] == want[key]
    assert got["metadata"]["name"] == want["metadata"]["name"] and got["metadata"]["uid"]
