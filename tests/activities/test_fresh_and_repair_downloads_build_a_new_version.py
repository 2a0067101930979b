"""A fresh download (admin redownload) fetches every byte again into a new version directory
`<content version id>-<tag>`; a repair builds that directory from the damaged version's sound
files (hard links) and fetches only the damaged ones. Either way the live version is never written
into, the new one is verified and activated the normal way, and later ordinary deliveries of the
same content keep using it. Activation keeps `keep_previous` complete older versions and says
which."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities.download import DownloadActivities
from activities.files import FilesActivities
from modelferry.layout import model_layout
from modelferry.messages import (
    ActivateModelVersionInput,
    ActivateModelVersionResult,
    DownloadModelInput,
    DownloadModelResult,
    VerifyModelInput,
)
from modelferry.settings import Settings, load_settings
from tests.activities.node_work import MEMORY_MODEL as INPUT
from tests.activities.node_work import MEMORY_MODEL_PATH as PATH
from tests.storage.fakes import MemoryBackend

FILES = {
    "config.json": b'{"model_type": "llama"}',
    "a.safetensors": bytes(range(256)) * 1200,
    "b.safetensors": b"B" * 200_000,
    "sub/c.bin": b"C" * 90_000,
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "node").mkdir()
    return load_settings(environ={}, overrides={"node.root": str(tmp_path / "node")})


def run(
    settings: Settings, inp: DownloadModelInput, *, keep_previous: int = 1
) -> tuple[DownloadModelResult, ActivateModelVersionResult]:
    env = ActivityEnvironment()
    downloaded = env.run(DownloadActivities(settings=settings, secrets=None).download_model, inp)
    work = {"ref": inp.ref, "spec": inp.spec, "node": inp.node, "version_id": downloaded.version_id}
    files = FilesActivities(settings=settings)
    env.run(files.verify_model, VerifyModelInput(**work))
    activated = env.run(
        files.activate_model_version, ActivateModelVersionInput(**work, keep_previous=keep_previous)
    )
    return downloaded, activated


def served(settings: Settings) -> dict[str, bytes]:
    link = settings.node.root / PATH.lstrip("/")
    return {name: (link / name).read_bytes() for name in FILES}


def version_dir(settings: Settings, version_id: str) -> Path:
    return model_layout(node_root=settings.node.root, storage_path=PATH).version_dir(version_id)


def first_delivery(settings: Settings, source: dict[str, MemoryBackend]) -> str:
    source["backend"] = MemoryBackend(dict(FILES), revision="main")
    downloaded, _ = run(settings, INPUT)
    return downloaded.version_id


def test_a_fresh_download_fetches_every_byte_into_a_new_directory(settings, source):
    first = first_delivery(settings, source)
    again = MemoryBackend(dict(FILES), revision="main")
    source["backend"] = again
    downloaded, activated = run(settings, INPUT.model_copy(update={"fresh_tag": "redl1"}))
    assert downloaded.version_id == f"{first}-redl1"
    assert again.bytes_served == sum(len(b) for b in FILES.values()) == downloaded.bytes_transferred
    assert activated.version_id == downloaded.version_id and activated.kept == [first]
    assert served(settings) == FILES
    new, old = version_dir(settings, downloaded.version_id), version_dir(settings, first)
    assert (new / "a.safetensors").stat().st_ino != (old / "a.safetensors").stat().st_ino


def test_a_repair_fetches_only_the_damaged_file_and_the_result_is_bit_identical(settings, source):
    first = first_delivery(settings, source)
    old = version_dir(settings, first)
    (old / "b.safetensors").unlink()  # the damage continuous verification reported
    repair = MemoryBackend(dict(FILES), revision="main")
    source["backend"] = repair
    inp = INPUT.model_copy(
        update={"fresh_tag": "fix1", "repair_from": first, "damaged_files": ["b.safetensors"]}
    )
    downloaded, activated = run(settings, inp)
    assert downloaded.version_id == f"{first}-fix1"
    assert repair.bytes_served == len(FILES["b.safetensors"]) == downloaded.bytes_transferred
    assert {name for name, _, _ in repair.requests} == {"b.safetensors"}
    assert served(settings) == FILES
    new = version_dir(settings, downloaded.version_id)
    for name in ("config.json", "a.safetensors", "sub/c.bin"):  # shared, not copied
        assert (new / name).stat().st_ino == (old / name).stat().st_ino
    assert activated.kept == [first]  # the damaged one is only read, never written


def test_a_repair_fetches_a_file_whose_size_no_longer_matches_even_if_unreported(settings, source):
    first = first_delivery(settings, source)
    old = version_dir(settings, first)
    (old / "b.safetensors").unlink()
    with open(old / "sub" / "c.bin", "r+b") as f:
        f.truncate(1000)  # damaged since the report
    repair = MemoryBackend(dict(FILES), revision="main")
    source["backend"] = repair
    inp = INPUT.model_copy(
        update={"fresh_tag": "fix1", "repair_from": first, "damaged_files": ["b.safetensors"]}
    )
    run(settings, inp)
    assert repair.bytes_served == len(FILES["b.safetensors"]) + len(FILES["sub/c.bin"])
    assert served(settings) == FILES


def test_a_repair_seeded_with_a_file_changed_since_its_record_rehashes_and_refetches_it(settings, source):
    first = first_delivery(settings, source)
    old = version_dir(settings, first)
    (old / "b.safetensors").unlink()
    target = old / "a.safetensors"
    data = bytearray(target.read_bytes())
    data[10] ^= 0xFF  # a flipped byte, same size, the mtime moved
    target.write_bytes(bytes(data))
    repair = MemoryBackend(dict(FILES), revision="main")
    source["backend"] = repair
    inp = INPUT.model_copy(
        update={"fresh_tag": "fix1", "repair_from": first, "damaged_files": ["b.safetensors"]}
    )
    run(settings, inp)
    assert repair.bytes_served == len(FILES["b.safetensors"]) + len(FILES["a.safetensors"])
    assert served(settings) == FILES


def test_later_ordinary_deliveries_keep_the_active_tagged_version(settings, source):
    first = first_delivery(settings, source)
    source["backend"] = MemoryBackend(dict(FILES), revision="main")
    tagged, _ = run(settings, INPUT.model_copy(update={"fresh_tag": "redl1"}))
    again = MemoryBackend(dict(FILES), revision="main")
    source["backend"] = again
    downloaded, activated = run(settings, INPUT)
    assert downloaded.version_id == activated.version_id == tagged.version_id != first
    assert again.bytes_served == 0
    # Other content is a new version as before.
    changed = MemoryBackend({**FILES, "b.safetensors": b"Z" * 200_000}, revision="main")
    source["backend"] = changed
    downloaded, _ = run(settings, INPUT)
    assert downloaded.version_id not in (first, tagged.version_id)
    assert served(settings)["b.safetensors"] == b"Z" * 200_000


def test_activation_keeps_the_number_of_previous_versions_asked_and_names_them(settings, source):
    ids = []
    for i in range(4):
        source["backend"] = MemoryBackend({**FILES, "b.safetensors": bytes([i]) * 1000}, revision="main")
        downloaded, activated = run(settings, INPUT, keep_previous=2)
        ids.append(downloaded.version_id)
        os.utime(version_dir(settings, downloaded.version_id), (1000 + i, 1000 + i))  # distinct ages
    assert activated.kept == [ids[2], ids[1]]  # newest first
    assert activated.pruned == [ids[0]]
    store = model_layout(node_root=settings.node.root, storage_path=PATH).store
    assert sorted(p.name for p in store.iterdir() if p.is_dir()) == sorted(ids[1:])
