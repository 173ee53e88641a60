"""Untrusted text made safe to print and to log.

Job ids, reasons, log tails and library versions arrive from the network. Printed
raw, a newline forges a log line, an ANSI escape rewrites the operator's
terminal, a NUL truncates a C consumer, and a lone surrogate makes an encoder
raise. ``printable`` escapes all of them the way Python's ``repr`` would (``\\n``,
``\\x1b``, ``\\ud800``), leaving ordinary text, accents and CJK alone; markup
(rich's ``[bold]``) is the renderer's business and is escaped where it renders.
"""

from __future__ import annotations

import logging
import unicodedata

# Unicode categories escaped: control characters (C0, C1, DEL), format characters
# (bidirectional overrides, zero-width joiners: text that renders unlike it
# reads), surrogates, private-use and unassigned code points, line and paragraph
# separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch == "\n":
        return "\\n"
    if ch == "\r":
        return "\\r"
    if ch == "\t":
        return "\\t"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: object, limit: int | None = None) -> str:
    """``text`` with every control, format or unpaired character escaped, at most
    ``limit`` characters long after escaping (cut with a final ellipsis)."""
    s = text if isinstance(text, str) else str(text)
    out: list[str] = []
    length = 0
    for i, c in enumerate(s):
        piece = _escape(c) if unicodedata.category(c) in _ESCAPED_CATEGORIES else c
        if limit is not None and length + len(piece) > limit - (1 if i < len(s) - 1 else 0):
            out.append("…")
            break
        out.append(piece)
        length += len(piece)
    return "".join(out)


class SafeFormatter(logging.Formatter):
    """A Formatter whose message part is escaped with :func:`printable`, so that no
    argument from the network can start a new log line or carry terminal escapes.
    Tracebacks (appended by Formatter itself) keep their own line breaks."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = printable(record.message)
        return super().formatMessage(record)


def configure_logging(level: str | int = "INFO") -> None:
    """Root logging for a daemon: one line per record on stderr, escaped."""
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
