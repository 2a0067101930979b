"""Shared fixtures for the storage tests: fast engine options and deterministic model bytes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from activities.storage.base import DownloadOptions


def model_bytes(size: int, *, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def fast_options() -> DownloadOptions:
    """Small parts so a few MiB exercise the multipart paths; near-zero backoff."""
    return DownloadOptions(
        concurrency=3,
        multipart_concurrency=3,
        multipart_threshold=512 * 1024,
        part_size=256 * 1024,
        retries=3,
        backoff_base=0.01,
        backoff_max=0.05,
        stall_timeout=2.0,
    )


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "models" / "m"


def visible_files(root: Path) -> dict[str, bytes]:
    """Every file under `root` outside our state directory, by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".modelferry" not in p.relative_to(root).parts
    }


def partial_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name.endswith((".partial", ".parts.jsonl")))
