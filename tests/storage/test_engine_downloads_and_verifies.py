"""A fresh download: every digest kind checked while writing, ranged parts, manifest written last."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pytest

from activities.storage.base import DownloadProgress
from activities.storage.engine import download_model
from tests.storage.conftest import model_bytes, partial_files, visible_files
from tests.storage.fakes import MemoryBackend

FILES = {
    "config.json": b'{"architectures": ["X"]}',
    "empty.txt": b"",
    "weights/model-00001.safetensors": model_bytes(1_500_000, seed=1),
    "weights/model-00002.safetensors": model_bytes(700_001, seed=2),
    "tokenizer/vocab.txt": model_bytes(10_000, seed=3),
}


@pytest.mark.parametrize(
    "digests",
    [("sha256",), ("git_sha1",), ("md5",), ("multipart_md5",), ("sha256", "md5", "multipart_md5"), ()],
)
def test_every_file_lands_verified(digests: tuple[str, ...], dest: Path, fast_options) -> None:
    backend = MemoryBackend(dict(FILES), digests=digests, part_size=300_000)
    result = download_model(backend, dest, options=fast_options)

    assert visible_files(dest) == FILES
    assert partial_files(dest) == []
    assert result.bytes_transferred == sum(map(len, FILES.values()))
    assert result.total_bytes == result.bytes_transferred
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["complete"] is True and manifest["revision"] == "rev-1"
    assert manifest["source"] == "mem://rev-1"
    assert [f["name"] for f in manifest["files"]] == sorted(FILES)
    big = next(f for f in manifest["files"] if f["name"] == "weights/model-00001.safetensors")
    assert big["size"] == 1_500_000
    if "sha256" in digests:
        assert big["sha256"] == hashlib.sha256(FILES["weights/model-00001.safetensors"]).hexdigest()
    assert {k for k in big if k in ("sha256", "git_sha1", "md5", "multipart_md5")} == set(digests)


def test_large_files_are_fetched_in_ranged_parts(dest: Path, fast_options) -> None:
    backend = MemoryBackend(dict(FILES))
    download_model(backend, dest, options=fast_options)
    ranges = sorted((s, e) for n, s, e in backend.requests if n == "weights/model-00001.safetensors")
    assert len(ranges) == 6  # 1.5 MB in 256 KiB parts
    assert ranges[0][0] == 0 and ranges[-1][1] == 1_500_000
    assert all(b[0] == a[1] for a, b in itertools.pairwise(ranges))
    small = [(s, e) for n, s, e in backend.requests if n == "tokenizer/vocab.txt"]
    assert small == [(0, 10_000)]
    assert not any(n == "empty.txt" for n, _, _ in backend.requests)


def test_progress_is_reported_and_ends_complete(dest: Path, fast_options) -> None:
    seen: list[DownloadProgress] = []
    backend = MemoryBackend(dict(FILES))
    download_model(backend, dest, options=fast_options, on_progress=seen.append)
    assert seen, "at least the final snapshot"
    last = seen[-1]
    total = sum(map(len, FILES.values()))
    assert (last.bytes_done, last.bytes_total, last.files_done, last.files_total) == (total, total, 5, 5)
    assert last.bytes_transferred == total and last.partial_bytes == {}
    assert [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)


def test_listing_is_retried_on_temporary_errors(dest: Path, fast_options) -> None:
    from modelferry.errors import SourceUnavailableError

    backend = MemoryBackend({"a": b"abc"})
    calls = {"n": 0}
    original = backend.list_files

    def flaky():
        calls["n"] += 1
        if calls["n"] < 3:
            raise SourceUnavailableError("503")
        return original()

    backend.list_files = flaky  # type: ignore[method-assign]
    download_model(backend, dest, options=fast_options)
    assert calls["n"] == 3 and (dest / "a").read_bytes() == b"abc"
