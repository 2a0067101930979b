"""Each file the engine fetches is one `download file` span, a child of the span current when
`download_model` was called, although the files are fetched in worker threads: it says the file's
name, size, the bytes fetched (fewer after a resume), the ranged parts, the source scheme and the
digests verified; a file that fails is an ERROR span, and files kept from an earlier run have none."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from activities.storage.engine import DownloadCancelledError, download_model
from modelferry.errors import PersistentChecksumMismatchError
from tests.storage.conftest import model_bytes
from tests.storage.fakes import Corrupt, MemoryBackend

FILES = {
    "big.bin": model_bytes(1_300_000, seed=1),  # above fast_options' 512 KiB threshold: 5 parts of 256 KiB
    "mid.bin": model_bytes(300_000, seed=2),
    "small.txt": model_bytes(1000, seed=3),
}
PARTS = {"big.bin": 5, "mid.bin": 1, "small.txt": 1}


def file_spans(spans) -> dict[str, object]:
    found = [s for s in spans.get_finished_spans() if s.name == "download file"]
    by_name = {s.attributes["modelferry.file.name"]: s for s in found}
    assert len(by_name) == len(found), "one span per file"
    return by_name


def test_each_file_is_a_child_span_of_the_caller_with_its_size_and_parts(dest: Path, fast_options, spans):
    backend = MemoryBackend(dict(FILES))
    with trace.get_tracer("test").start_as_current_span("RunActivity:download_model") as parent:
        result = download_model(backend, dest, options=fast_options)

    files = file_spans(spans)
    assert set(files) == set(FILES)
    for name, span in files.items():
        assert span.parent.span_id == parent.get_span_context().span_id
        assert span.context.trace_id == parent.get_span_context().trace_id
        assert span.status.status_code is StatusCode.UNSET
        assert dict(span.attributes) == {
            "modelferry.file.name": name,
            "modelferry.file.size": len(FILES[name]),
            "modelferry.file.bytes_fetched": len(FILES[name]),
            "modelferry.file.parts": PARTS[name],
            "modelferry.file.part_retries": 0,
            "modelferry.file.attempts": 1,
            "modelferry.file.digests": ("sha256",),
            "modelferry.source.scheme": "mem",
        }
    assert result.bytes_transferred == sum(map(len, FILES.values()))


def test_files_kept_from_an_earlier_run_make_no_span(dest: Path, fast_options, spans):
    backend = MemoryBackend(dict(FILES))
    download_model(backend, dest, options=fast_options)
    (dest / "mid.bin").unlink()
    spans.clear()
    assert download_model(backend, dest, options=fast_options).bytes_transferred == len(FILES["mid.bin"])
    assert set(file_spans(spans)) == {"mid.bin"}


def test_a_resumed_file_reports_only_the_bytes_it_fetched(dest: Path, fast_options, spans):
    data = FILES["big.bin"]
    backend = MemoryBackend({"big.bin": data}, chunk=32 * 1024)
    cancel = threading.Event()
    backend.on_bytes = lambda served: served >= len(data) // 2 and cancel.set()
    with pytest.raises(DownloadCancelledError):
        download_model(backend, dest, options=fast_options, cancel=cancel)
    (first,) = file_spans(spans).values()
    assert first.attributes["modelferry.file.interrupted"] is True
    assert first.status.status_code is StatusCode.UNSET  # a cancel is not the file's failure
    spans.clear()

    backend.on_bytes = None
    result = download_model(backend, dest, options=fast_options)
    (resumed,) = file_spans(spans).values()
    fetched = resumed.attributes["modelferry.file.bytes_fetched"]
    assert 0 < fetched < len(data)
    assert fetched == result.bytes_transferred
    assert resumed.attributes["modelferry.file.size"] == len(data)
    assert resumed.status.status_code is StatusCode.UNSET


def test_a_file_that_fails_is_an_error_span_with_its_exception(dest: Path, fast_options, spans):
    backend = MemoryBackend({"bad.bin": model_bytes(100_000, seed=4)})
    backend.fail("bad.bin", Corrupt(), Corrupt())
    with (
        trace.get_tracer("test").start_as_current_span("parent") as parent,
        pytest.raises(PersistentChecksumMismatchError),
    ):
        download_model(backend, dest, options=fast_options)

    (bad,) = file_spans(spans).values()
    assert bad.parent.span_id == parent.get_span_context().span_id
    assert bad.status.status_code is StatusCode.ERROR
    assert "PersistentChecksumMismatchError" in bad.status.description
    assert bad.attributes["modelferry.file.attempts"] == 2
    assert bad.attributes["modelferry.file.bytes_fetched"] == 200_000  # fetched twice
    events = [e.name for e in bad.events]
    assert events == ["checksum mismatch", "checksum mismatch", "exception"]
    assert bad.events[-1].attributes["exception.type"].endswith("PersistentChecksumMismatchError")
