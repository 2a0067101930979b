"""The peer server's two pure decisions, table-driven: what a raw request path names (segments
decoded one by one; `.`, `..`, empty segments, encoded slashes in names refused), and which bytes
a `Range` header asks for (one range; anything else it cannot serve is 416). The URL the fetching
side builds parses back to what it named."""

from __future__ import annotations

import pytest

from activities.peer_server import PeerPath, PeerRequestError, byte_range, parse_peer_path
from activities.storage.peer import file_path, manifest_path

SP = "/raid/models/llama"
ENC = "%2Fraid%2Fmodels%2Fllama"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (f"/v1/versions/{ENC}/v1-abc/manifest", PeerPath(SP, "v1-abc", None)),
        (f"/v1/versions/{ENC}/v1-abc/files/config.json", PeerPath(SP, "v1-abc", "config.json")),
        (f"/v1/versions/{ENC}/v1-abc/files/a/b%20c.bin?x=1", PeerPath(SP, "v1-abc", "a/b c.bin")),
        (f"/v1/versions/{ENC}/v1-abc/files/..", None),
        (f"/v1/versions/{ENC}/v1-abc/files/a/../b", None),
        (f"/v1/versions/{ENC}/v1-abc/files/%2e%2e/b", None),
        (f"/v1/versions/{ENC}/v1-abc/files/a%2Fb", None),
        (f"/v1/versions/{ENC}/v1-abc/files/a%5Cb", None),
        (f"/v1/versions/{ENC}/v1-abc/files/a%00b", None),
        (f"/v1/versions/{ENC}/v1-abc/files//b", None),
        (f"/v1/versions/{ENC}/v1-abc/files", None),
        (f"/v1/versions/{ENC}/v1-abc/manifest/x", None),
        (f"/v1/versions/{ENC}/.hidden/manifest", None),
        (f"/v1/versions/{ENC}/%2e%2e/manifest", None),
        (f"/v1/versions/{ENC}/v1-abc/other", None),
        (f"/v1/versions/{ENC}/v1-abc/files/%ff", None),
        ("/v2/versions/x/y/manifest", None),
        ("/", None),
    ],
)
def test_paths(raw, expected):
    if expected is None:
        with pytest.raises(PeerRequestError) as refused:
            parse_peer_path(raw)
        assert refused.value.status == 404
    else:
        assert parse_peer_path(raw) == expected


@pytest.mark.parametrize("name", ["config.json", "a/b c/d%e.bin", "tokenizer/tokenizer.json", "ü.bin"])
def test_what_the_client_builds_parses_back(name):
    assert parse_peer_path(file_path(storage_path=SP, version_id="v-1", name=name)) == PeerPath(
        SP, "v-1", name
    )
    assert parse_peer_path(manifest_path(storage_path=SP, version_id="v-1")) == PeerPath(SP, "v-1", None)


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-99", 100, (0, 100)),
        ("bytes=10-19", 100, (10, 20)),
        ("bytes=10-", 100, (10, 100)),
        ("bytes=90-500", 100, (90, 100)),  # clamped to the end
        ("bytes=-10", 100, (90, 100)),
        ("bytes=-500", 100, (0, 100)),
        ("BYTES=0-0", 100, (0, 1)),
        ("bytes=100-", 100, 416),
        ("bytes=100-200", 100, 416),
        ("bytes=20-10", 100, 416),
        ("bytes=-0", 100, 416),
        ("bytes=0-", 0, 416),
        ("bytes=-", 100, 416),
        ("bytes=0-1,3-4", 100, 416),
        ("bytes=a-b", 100, 416),
        ("lines=0-1", 100, 416),
    ],
)
def test_ranges(header, size, expected):
    if expected == 416:
        with pytest.raises(PeerRequestError) as refused:
            byte_range(header, size)
        assert refused.value.status == 416
        assert refused.value.headers == {"Content-Range": f"bytes */{size}"}
    else:
        assert byte_range(header, size) == expected
