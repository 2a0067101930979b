"""Unsafe or conflicting names refuse the whole listing before a single byte is fetched."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.storage.base import RemoteFile
from activities.storage.engine import download_model
from modelferry.errors import UnsafePathError
from tests.storage.fakes import MemoryBackend


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["/etc/passwd"], "must be relative"),
        (["../escape.bin"], "'..'"),
        (["a/../../escape.bin"], "'..'"),
        (["a//b.bin"], "empty or '.'"),
        (["./a.bin"], "empty or '.'"),
        (["bad\nname"], "control characters"),
        (["a.bin", "a.bin"], "listed twice"),
        (["a", "a/b.bin"], "listed as a file and a directory"),
        ([".modelferry/manifest.json"], "reserved"),
    ],
)
def test_unsafe_listing_is_refused(names: list[str], message: str, dest: Path, fast_options) -> None:
    backend = MemoryBackend({"ok.bin": b"fine"})
    backend.extra = [RemoteFile(name=n, size=3) for n in names]
    with pytest.raises(UnsafePathError, match=message):
        download_model(backend, dest, options=fast_options)
    assert backend.requests == []
    assert not dest.exists() or not any(dest.rglob("*"))


def test_symlinked_directory_leading_outside_is_refused(tmp_path: Path, fast_options) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "m"
    dest.mkdir()
    (dest / "sub").symlink_to(outside)
    backend = MemoryBackend({"sub/w.bin": b"x" * 10})
    with pytest.raises(UnsafePathError, match="outside"):
        download_model(backend, dest, options=fast_options)
    assert list(outside.iterdir()) == []
