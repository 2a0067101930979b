"""Verifying a version before activation makes one `verify file` span per file, a child of the
current span (the verify activity's): it says whether the file was re-hashed; a file that no
longer matches its manifest is an ERROR span."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from activities.storage.base import DownloadOptions
from activities.storage.engine import download_model
from activities.verify import VerificationFailedError, verify_model_dir
from tests.storage.fakes import MemoryBackend

FILES = {"a.bin": b"A" * 5000, "b.bin": b"B" * 3000, "c.txt": b"C" * 10}


def verify_spans(spans) -> dict[str, object]:
    return {
        s.attributes["modelferry.file.name"]: s for s in spans.get_finished_spans() if s.name == "verify file"
    }


def test_each_verified_file_is_a_child_span(tmp_path: Path, spans):
    download_model(MemoryBackend(dict(FILES)), tmp_path, options=DownloadOptions())
    changed = tmp_path / "b.bin"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 1))  # re-hashed
    spans.clear()
    with trace.get_tracer("test").start_as_current_span("RunActivity:verify_model") as parent:
        verify_model_dir(tmp_path)

    found = verify_spans(spans)
    assert set(found) == set(FILES)
    for name, span in found.items():
        assert span.parent.span_id == parent.get_span_context().span_id
        assert span.status.status_code is StatusCode.UNSET
        assert span.attributes["modelferry.file.size"] == len(FILES[name])
        assert span.attributes["modelferry.file.rehashed"] is (name == "b.bin")


def test_a_file_that_no_longer_matches_is_an_error_span(tmp_path: Path, spans):
    download_model(MemoryBackend(dict(FILES)), tmp_path, options=DownloadOptions())
    (tmp_path / "a.bin").write_bytes(b"X" * 5000)  # same size, new mtime: re-hashed
    spans.clear()
    with pytest.raises(VerificationFailedError):
        verify_model_dir(tmp_path)

    bad = verify_spans(spans)["a.bin"]
    assert bad.status.status_code is StatusCode.ERROR
    assert "a.bin sha256 is" in bad.status.description
    assert bad.attributes["modelferry.file.rehashed"] is True
