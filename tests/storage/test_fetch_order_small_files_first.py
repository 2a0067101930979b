"""Which file a free file worker takes next: small files first, then large ones largest first."""

from __future__ import annotations

from pathlib import PurePosixPath

from activities.storage.base import RemoteFile
from activities.storage.plan import Entry, fetch_order

MB = 1024 * 1024


def entry(name: str, size: int) -> Entry:
    return Entry(remote=RemoteFile(name=name, size=size), path=PurePosixPath(name))


def test_small_files_go_first_and_large_ones_longest_first() -> None:
    entries = [
        entry("model-00001.safetensors", 5000 * MB),
        entry("config.json", 1000),
        entry("model-00003.safetensors", 800 * MB),
        entry("tokenizer.json", 9 * MB),
        entry("model-00002.safetensors", 5000 * MB),
    ]
    order = [e.remote.name for e in fetch_order(entries, multipart_threshold=200 * MB)]
    assert order == [
        "tokenizer.json",
        "config.json",
        "model-00001.safetensors",
        "model-00002.safetensors",
        "model-00003.safetensors",
    ]
