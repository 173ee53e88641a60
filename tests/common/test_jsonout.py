"""edgebench.common.jsonout: indent=2's text for shallow documents, the same document for any."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebench.common import jsonout

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
docs = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                         max_size=4), max_leaves=40)


def _depth(v: object) -> int:
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(docs)
def test_any_document_reads_back_the_same_and_shallow_ones_are_indent_2_exactly(doc: object) -> None:
    text = jsonout.dumps(doc)
    assert json.loads(text) == doc
    if _depth(doc) <= jsonout.MAX_DEPTH:
        assert text == json.dumps(doc, indent=2)


def test_deep_containers_come_one_per_line() -> None:
    doc = {"series": [{"key": "a", "runs": [{"job_id": f"j{i}", "img_per_s": 1.5 * i} for i in range(3)]}]}
    lines = jsonout.dumps(doc).splitlines()
    assert '        {"job_id": "j1", "img_per_s": 1.5},' in lines
    assert len(lines) == 12


def test_default_allow_nan_and_non_string_keys_follow_json() -> None:
    at = datetime(2026, 12, 2, tzinfo=timezone.utc)
    assert json.loads(jsonout.dumps({"at": at}, default=str)) == {"at": str(at)}
    assert json.loads(jsonout.dumps({2: "x", False: [1]})) == json.loads(json.dumps({2: "x", False: [1]}))
    with pytest.raises(ValueError):
        jsonout.dumps({"v": [math.nan]}, allow_nan=False)
    with pytest.raises(TypeError):
        jsonout.dumps({"at": at})
