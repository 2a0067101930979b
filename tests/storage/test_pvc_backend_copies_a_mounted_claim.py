"""pvc:// copies a claim mounted on the node: sizes always, digests when it holds a modelferry manifest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from activities.storage.engine import download_model
from activities.storage.pvc import PvcBackend
from activities.storage.registry import BackendSettings, open_backend
from modelferry.errors import PersistentChecksumMismatchError, SourceNotFoundError, UnsafePathError
from modelferry.storage_uri import parse_storage_uri
from tests.storage.conftest import model_bytes, visible_files
from tests.storage.fakes import MemoryBackend

FILES = {"config.json": b"{}", "w/model.safetensors": model_bytes(900_000, seed=1), "w/extra.bin": b"e" * 100}


def _write(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _backend(uri: str, mounts: dict[str, Path]) -> PvcBackend:
    backend = open_backend(parse_storage_uri(uri), settings=BackendSettings(pvc_mounts=mounts))
    assert isinstance(backend, PvcBackend)
    return backend


def test_copies_a_plain_directory(tmp_path: Path, dest: Path, fast_options) -> None:
    claim = tmp_path / "claim"
    _write(claim / "models/llama", FILES)
    _write(claim / "models/llama/.modelferry", {"junk": b"not ours to copy"})
    backend = _backend("pvc://team:weights/models/llama", {"team:weights": claim})
    listing = backend.list_files()
    assert {f.name for f in listing.files} == set(FILES)
    assert all(f.sha256 is None and f.etag for f in listing.files)
    download_model(backend, dest, options=fast_options)
    assert visible_files(dest) == FILES
    assert download_model(backend, dest, options=fast_options).bytes_transferred == 0
    (claim / "models/llama/w/extra.bin").write_bytes(b"E" * 100)
    result = download_model(backend, dest, options=fast_options)
    assert result.bytes_transferred == 100 and (dest / "w/extra.bin").read_bytes() == b"E" * 100


def test_a_source_manifest_makes_the_copy_verified(tmp_path: Path, dest: Path, fast_options) -> None:
    claim = tmp_path / "claim"
    download_model(MemoryBackend(dict(FILES), revision="abc123"), claim / "m", options=fast_options)
    backend = _backend("pvc://weights/m", {"weights": claim})
    listing = backend.list_files()
    assert listing.revision == "abc123"
    assert all(f.sha256 for f in listing.files)
    download_model(backend, dest, options=fast_options)
    assert visible_files(dest) == FILES

    path = claim / "m/w/model.safetensors"
    st = path.stat()
    with open(path, "r+b") as f:
        f.write(b"\0")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(PersistentChecksumMismatchError, match=r"w/model\.safetensors"):
        download_model(backend, tmp_path / "other", options=fast_options)


def test_a_single_file_sub_path(tmp_path: Path, dest: Path, fast_options) -> None:
    _write(tmp_path / "claim", FILES)
    backend = _backend("pvc://weights/w/extra.bin", {"weights": tmp_path / "claim"})
    download_model(backend, dest, options=fast_options)
    assert visible_files(dest) == {"extra.bin": b"e" * 100}


def test_symlinks_inside_are_followed_and_outside_refused(tmp_path: Path, dest: Path, fast_options) -> None:
    claim = tmp_path / "claim"
    _write(claim, FILES)
    (claim / "alias.json").symlink_to(claim / "config.json")
    (claim / "w/loop").symlink_to(claim / "w")
    download_model(_backend("pvc://weights/", {"weights": claim}), dest, options=fast_options)
    assert visible_files(dest) == {**FILES, "alias.json": b"{}"}

    (tmp_path / "secret.txt").write_text("nope")
    (claim / "leak.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(UnsafePathError, match=r"leak\.txt"):
        _backend("pvc://weights/", {"weights": claim}).list_files()


@pytest.mark.parametrize(
    ("uri", "mounts", "match"),
    [
        ("pvc://absent/x", {"weights": "."}, "claim absent is not mounted on this node"),
        ("pvc://ns:weights/x", {"other": "."}, "claim ns:weights is not mounted"),
        ("pvc://weights/no/such/dir", {"weights": "CLAIM"}, "'no/such/dir' does not exist"),
        ("pvc://weights/x", {"weights": "MISSING"}, "mount .* does not exist"),
    ],
)
def test_missing_claims_and_paths_are_named(tmp_path: Path, uri: str, mounts, match: str) -> None:
    (tmp_path / "CLAIM").mkdir()
    resolved = {k: tmp_path / v for k, v in mounts.items()}
    with pytest.raises(SourceNotFoundError, match=match):
        _backend(uri, resolved).list_files()
