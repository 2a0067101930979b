"""`modelferry validate`: one line per problem, a summary, and exit 0 only when all is valid."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from modelferry.cli import main

CORPUS = Path(__file__).resolve().parents[1] / "data" / "ome-models"

GOOD = """\
apiVersion: ome.io/v1beta1
kind: ClusterBaseModel
metadata:
  name: good
spec:
  storage:
    storageUri: hf://org/good
    path: /models/good
"""
BAD = """\
apiVersion: ome.io/v1beta1
kind: BaseModel
metadata:
  name: bad
spec:
  disabled: "no"
  storage:
    storageURI: hf://org/bad
"""
CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["validate", *args])
    return code, capsys.readouterr().out.splitlines()


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_the_whole_ome_catalogue_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run(capsys, str(CORPUS))
    assert (code, lines) == (0, ["207 valid, 0 invalid"])


def test_multi_document_file_reports_each_problem_with_doc_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "models.yaml", f"{GOOD}---\n# only a comment\n---\n{BAD}---\n{CONFIGMAP}")
    code, lines = run(capsys, path)
    assert code == 1
    assert lines == [
        f"{path}#2 BaseModel/bad: spec.disabled: input should be a valid boolean",
        f"{path}#2 BaseModel/bad: spec.storage.storageUri: required field is missing",
        f"{path}#2 BaseModel/bad: spec.storage.storageURI: unknown field (did you mean 'storageUri'?)",
        "1 valid, 1 invalid, 1 skipped",
    ]


def test_verbose_lists_valid_and_skipped_documents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "models.yaml", f"{GOOD}---\n{CONFIGMAP}")
    code, lines = run(capsys, "-v", path)
    assert code == 0
    assert lines == [
        f"{path}#0 ClusterBaseModel/good: valid",
        f"{path}#1 ConfigMap/settings: skipped (not an ome.io model resource)",
        "1 valid, 0 invalid, 1 skipped",
    ]


def test_single_document_file_has_no_doc_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "bad.yml", GOOD.replace("name: good", "name: Good"))
    code, lines = run(capsys, path)
    assert code == 1
    assert lines[0].startswith(
        f"{path} ClusterBaseModel/Good: metadata.name: 'Good' is not a DNS-1123 subdomain"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{GOOD}---\nspec: [unclosed\n", "#1: line 11, column 1: invalid YAML: expected ',' or ']'"),
        ("a: 1\n  b: 2\n", ": line 2, column 4: invalid YAML: mapping values are not allowed here"),
        (GOOD + "metadata:\n  name: again\n", ": line 9, column 1: invalid YAML: duplicate key 'metadata'"),
        ("- just\n- a list\n", ": the document is not a mapping"),
        ("metadata: {name: x}\n", " ?/x: kind: required field is missing"),
    ],
    ids=["syntax-after-good-doc", "bad-indent", "duplicate-key", "not-a-mapping", "no-kind"],
)
def test_broken_documents_are_invalid_with_a_line_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = write(tmp_path, "broken.yaml", text)
    code, lines = run(capsys, path)
    assert code == 1
    assert lines[0].startswith(path) and expected in lines[0], lines
    assert lines[-1].endswith("1 invalid")


def test_timestamps_stay_strings_like_kubectl_sends_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An unquoted date in a string map is a string to kubectl; PyYAML's default would make it a date.
    text = GOOD.replace("  name: good\n", "  name: good\n  annotations:\n    released: 2026-01-02\n")
    code, lines = run(capsys, write(tmp_path, "m.yaml", text))
    assert (code, lines) == (0, ["1 valid, 0 invalid"])


def test_directories_are_walked_for_yaml_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "a/one.yaml", GOOD)
    write(tmp_path, "a/b/two.YML", GOOD.replace("good", "two"))
    listing = {"apiVersion": "v1", "kind": "List", "items": [yaml.safe_load(GOOD), {"kind": "Secret"}]}
    write(tmp_path, "a/b/list.json", json.dumps(listing))
    write(tmp_path, "a/.git/ignored.yaml", BAD)
    write(tmp_path, "a/notes.txt", BAD)
    code, lines = run(capsys, "-v", str(tmp_path / "a"))
    assert code == 0
    assert lines == [
        f"{tmp_path}/a/one.yaml ClusterBaseModel/good: valid",
        f"{tmp_path}/a/b/list.json.items[0] ClusterBaseModel/good: valid",
        f"{tmp_path}/a/b/list.json.items[1] Secret/?: skipped (not an ome.io model resource)",
        f"{tmp_path}/a/b/two.YML ClusterBaseModel/two: valid",
        "3 valid, 0 invalid, 1 skipped",
    ]


def test_json_syntax_error_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "m.json", '{\n  "kind": "BaseModel",\n  oops\n}\n')
    code, lines = run(capsys, path)
    assert code == 1
    assert lines[0].startswith(f"{path}: line 3, column 3: invalid JSON: ")


def test_another_api_group_with_our_kind_name_is_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "other.yaml", GOOD.replace("ome.io/v1beta1", "serving.example.com/v1"))
    code, lines = run(capsys, path)
    assert (code, lines) == (2, ["0 valid, 0 invalid, 1 skipped"])


@pytest.mark.parametrize("content", [None, "", "# nothing\n---\n", CONFIGMAP])
def test_nothing_to_validate_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    if content is not None:
        write(tmp_path, "x.yaml", content)
    code = main(["validate", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 2
    assert "no ome.io model resources found" in captured.err


def test_missing_file_is_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "good.yaml", GOOD)
    code, lines = run(capsys, good, str(tmp_path / "absent.yaml"))
    assert code == 1
    assert lines == [f"{tmp_path}/absent.yaml: cannot read: No such file or directory", "1 valid, 1 invalid"]


def test_standard_input(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(BAD))
    code, lines = run(capsys, "-")
    assert code == 1
    assert lines[0] == "<stdin> BaseModel/bad: spec.disabled: input should be a valid boolean"
