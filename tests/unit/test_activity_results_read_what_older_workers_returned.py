"""Every activity returns one `<Verb><Noun>Result` model now; older workers (and histories
recorded before) returned bare values for some of them. The workflow decodes a result with the
new type, so each bare value must still decode: a mixed-version rollout and an old history replay."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from modelferry.messages import (
    ActivateModelVersionResult,
    EnsureFinalizerResult,
    ReleaseFinalizerResult,
    RemoveNodeModelStatusResult,
    SetNodeModelStatusResult,
    WriteModelStatusResult,
    WriteSpecMetadataResult,
)


@pytest.mark.parametrize(
    ("result_type", "old_json", "expected"),
    [
        (EnsureFinalizerResult, b"true", EnsureFinalizerResult(added=True)),
        (ReleaseFinalizerResult, b"false", ReleaseFinalizerResult(released=False)),
        (WriteSpecMetadataResult, b"true", WriteSpecMetadataResult(written=True)),
        (WriteModelStatusResult, b"false", WriteModelStatusResult(written=False)),
        (SetNodeModelStatusResult, b"null", SetNodeModelStatusResult()),
        (RemoveNodeModelStatusResult, b"null", RemoveNodeModelStatusResult()),
        (ActivateModelVersionResult, b'"abc-0123"', ActivateModelVersionResult(version_id="abc-0123")),
        (
            ActivateModelVersionResult,
            b'{"version_id": "v", "pruned": ["old"]}',
            ActivateModelVersionResult(version_id="v", pruned=["old"]),
        ),
    ],
)
def test_old_bare_results_decode_into_the_new_types(result_type, old_json, expected):
    assert TypeAdapter(result_type).validate_json(old_json) == expected


def test_a_missing_required_value_is_still_refused():
    with pytest.raises(ValueError):
        TypeAdapter(ActivateModelVersionResult).validate_json(b"null")
