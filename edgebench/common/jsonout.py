"""Indented JSON that stays fast for large documents.

``json.dumps(doc, indent=2)`` runs CPython's pure-Python encoder (the C one
only serves ``indent=None``): for ``report --history --format json`` over
100,000 results that was about 3 s of a 5 s command (docs/PERFORMANCE.md).
:func:`dumps` indents the outer levels as ``indent=2`` does and writes every
container nested ``max_depth`` levels deep on one line with the C encoder, so
a history's runs or a comparison's job ids come one line each: still readable,
and ``json.loads`` gives the same document. For a document nested no deeper
than ``max_depth`` the text is exactly ``json.dumps(doc, indent=2)``'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

MAX_DEPTH = 4


def dumps(doc: Any, *, default: Callable[[Any], Any] | None = None, allow_nan: bool = True,
          max_depth: int = MAX_DEPTH) -> str:
    enc = json.JSONEncoder(default=default, allow_nan=allow_nan, separators=(", ", ": "))
    out: list[str] = []
    _write(doc, enc, 0, max_depth, out)
    return "".join(out)


def _write(value: Any, enc: json.JSONEncoder, depth: int, max_depth: int, out: list[str]) -> None:
    if isinstance(value, dict):
        items: Any = value.items()
        if not value or depth >= max_depth or not all(isinstance(k, str) for k in value):
            out.append(enc.encode(value))  # JSON's own key conversion for non-string keys
            return
        open_, close = "{", "}"
    elif isinstance(value, (list, tuple)):
        items = value
        if not value or depth >= max_depth:
            out.append(enc.encode(value))
            return
        open_, close = "[", "]"
    else:
        out.append(enc.encode(value))
        return
    pad = "\n" + "  " * (depth + 1)
    out.append(open_)
    first = True
    for item in items:
        out.append(pad if first else "," + pad)
        first = False
        if open_ == "{":
            key, item = item
            out.append(enc.encode(key) + ": ")
        _write(item, enc, depth + 1, max_depth, out)
    out.append("\n" + "  " * depth + close)
