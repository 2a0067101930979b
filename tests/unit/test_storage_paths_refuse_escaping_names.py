"""`spec.storage.path` and the paths inside `spec.storage.storageUri` refuse every way out of
their root (`..`, absolute paths, backslashes, NUL and other control characters) and over-long
names, and the refusal names the field it is about.

Rows marked xfail are accepted today but should not be; they are strict, so they turn into
failures (and the mark must go) once `modelferry.storage_uri` refuses them.
"""

from __future__ import annotations

from typing import Any

import pytest

from modelferry.errors import InvalidSpecError
from modelferry.spec import check_resource, parse_resource

PATH = "spec.storage.path"
URI = "spec.storage.storageUri"


def base_model(*, uri: str = "hf://org/model", path: str | None = "/models/org/model") -> dict[str, Any]:
    storage: dict[str, Any] = {"storageUri": uri}
    if path is not None:
        storage["path"] = path
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": "BaseModel",
        "metadata": {"name": "model", "namespace": "team-a"},
        "spec": {"storage": storage},
    }


def row(name: str, field: str, value: str, words: str, *, accepted_today: str | None = None) -> Any:
    """One case: the field, the value, and words the rule must contain."""
    marks = (
        [pytest.mark.xfail(strict=True, reason=f"accepted today: {accepted_today}")] if accepted_today else []
    )
    return pytest.param(field, value, words, id=name, marks=marks)


CASES = [
    # spec.storage.path: an absolute, normalised directory on the node
    row("path relative", PATH, "models/x", "must be absolute"),
    row("path dot-dot first", PATH, "../models", "must be absolute"),
    row("path dot-dot inside", PATH, "/models/../etc", "'..'"),
    row("path dot-dot last", PATH, "/models/..", "'..'"),
    row("path root dot-dot", PATH, "/..", "'..'"),
    row("path dot segment", PATH, "/models/./x", "normalised"),
    row("path double slash", PATH, "//etc", "normalised"),
    row("path trailing slash", PATH, "/models/x/", "normalised"),
    row("path root", PATH, "/", "filesystem root"),
    row("path empty", PATH, "", "must be absolute"),
    row("path backslash separators", PATH, "/models\\..\\etc", "backslashes"),
    row("path windows absolute", PATH, "C:\\models", "must be absolute"),
    row("path UNC", PATH, "\\\\server\\share", "must be absolute"),
    row("path NUL", PATH, "/models/a\x00b", "control characters"),
    row("path newline", PATH, "/models/x\n", "control characters"),
    row("path escape char", PATH, "/models/\x1b[2J", "control characters"),
    row("path name over 255 bytes", PATH, "/models/" + "a" * 256, "a file name can have at most 255"),
    row("path over 4096 bytes", PATH, "/m" * 2100, "a path can have at most 4095"),
    # pvc://: the sub-path is a directory inside the claim
    row("pvc dot-dot", URI, "pvc://team-a:claim/../x", "'..'"),
    row("pvc dot-dot deeper", URI, "pvc://team-a:claim/a/../../x", "'..'"),
    row("pvc dot-dot only", URI, "pvc://team-a:claim/..", "'..'"),
    row("pvc claim dot-dot", URI, "pvc://team-a:../x", "claim name '..'"),
    row("pvc namespace dot-dot", URI, "pvc://..:claim/x", "namespace '..'"),
    row("pvc no claim", URI, "pvc:///etc/passwd", "expected pvc://"),
    row("pvc NUL", URI, "pvc://team-a:claim/a\x00b", "control characters"),
    row("pvc newline", URI, "pvc://team-a:claim/a\nb", "control characters"),
    row("pvc claim over 253", URI, "pvc://team-a:" + "c" * 254 + "/x", "claim name"),
    row(
        "pvc backslash separators",
        URI,
        "pvc://team-a:claim/..\\..\\etc",
        "backslash",
    ),
    row(
        "pvc sub-path name over 255 bytes",
        URI,
        "pvc://team-a:claim/" + "a" * 256,
        "at most 255",
    ),
    # object stores: the prefix is a key prefix, later joined to local file names
    row("s3 dot-dot", URI, "s3://bucket/../x", "'..'"),
    row("s3 dot segment", URI, "s3://bucket/a/./b", "'.'"),
    row("s3 absolute prefix", URI, "s3://bucket//etc", "empty"),
    row("s3 NUL", URI, "s3://bucket/a\x00b", "control characters"),
    row("oci dot-dot", URI, "oci://n/ns/b/bk/o/../x", "'..'"),
    row("vendor dot-dot", URI, "vendor://v/t/../x", "'..'"),
    row("hf revision dot-dot", URI, "hf://org/model@../x", "revision"),
    row("hf revision absolute", URI, "hf://org/model@/etc", "revision"),
    row("hf repo dot-dot", URI, "hf://../model", "repository name part"),
    row("hf NUL", URI, "hf://org/mo\x00del", "control characters"),
    row("hf over-long part", URI, "hf://org/" + "m" * 97, "at most 96"),
    row("bare absolute path", URI, "/etc/passwd", "expected {scheme}://"),
    row("file scheme", URI, "file:///etc/passwd", "unsupported scheme 'file'"),
]


def _doc(field: str, value: str) -> dict[str, Any]:
    return base_model(path=value) if field == PATH else base_model(uri=value)


@pytest.mark.parametrize(("field", "value", "words"), CASES)
def test_escaping_path_is_refused_on_its_field(field: str, value: str, words: str) -> None:
    check = check_resource(_doc(field, value))
    assert [p.field for p in check.problems] == [field], check.problems
    assert words in check.problems[0].rule
    with pytest.raises(InvalidSpecError) as raised:
        parse_resource(_doc(field, value), source="models.yaml")
    assert raised.value.field == field
    assert str(raised.value).startswith(f"models.yaml: {field}: ")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (PATH, "/models/a b"),  # spaces are legal in file names
        (PATH, "/models/caf\u00e9"),
        (PATH, "/models/" + "a" * 255),
        (URI, "pvc://team-a:claim//models/./x"),  # a file-system path: normalised, stays in the claim
        (URI, "pvc://team-a:claim"),
        (URI, "s3://bucket/a..b/c"),  # '..' inside a name is only a name
    ],
)
def test_harmless_paths_are_accepted(field: str, value: str) -> None:
    assert check_resource(_doc(field, value)).valid


def test_a_huge_value_is_quoted_only_in_part_in_the_message() -> None:
    check = check_resource(_doc(URI, "s3://bucket/" + "x" * 1_000_000 + "/../y"))
    assert [p.field for p in check.problems] == [URI]
    assert len(check.problems[0].rule) < 1000 and "(1000017 characters)" in check.problems[0].rule
