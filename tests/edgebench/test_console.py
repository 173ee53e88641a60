"""What the command lines print (edgebench/common/console.py): untrusted text is
never rendered as markup nor lets a control character through; off a terminal
rows are plain and whole; on a terminal cells fold instead of being cut."""

from __future__ import annotations

import io

from rich.console import Console

from edgebench.common.console import Column, Output, markup, plain

HOSTILE = "[red]boom[/red] \x1b[2J\x1b]0;owned\x07 line1\nline2\r \u202etxt.exe"


def test_plain_escapes_every_control_character() -> None:
    text = plain(HOSTILE)
    assert "\x1b" not in text and "\n" not in text and "\r" not in text and "\x07" not in text
    assert "\u202e" not in text
    assert "\\x1b[2J" in text and "line1\\nline2" in text and "\\u202e" in text
    assert plain("press-line-3 job-000-1a2b3c") == "press-line-3 job-000-1a2b3c"


def _terminal(width: int = 200) -> tuple[Output, io.StringIO]:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=width, color_system="truecolor")
    return Output(console=console, err=console), buf


def test_markup_in_untrusted_text_is_shown_as_text() -> None:
    out, buf = _terminal()
    out.print(f"reason: {markup(HOSTILE)}")
    shown = buf.getvalue()
    assert "[red]boom[/red]" in shown  # literally, not as a style
    assert "\x1b[2J" not in shown and "\x1b]0;" not in shown and "\x07" not in shown


def test_terminal_table_cells_are_escaped_and_never_cut() -> None:
    buf = io.StringIO()
    out = Output(console=Console(file=buf, force_terminal=True, width=30, color_system=None))
    long_id = "job-" + "0123456789" * 5
    out.table([Column("job_id", "job")], [{"job_id": long_id}])
    cells = [ln.strip("│ ") for ln in buf.getvalue().splitlines() if ln.startswith("│")]
    assert "…" not in buf.getvalue()
    assert "".join(cells) == long_id  # folded over lines, whole
    buf.truncate(0)
    out.table([Column("reason")], [{"reason": HOSTILE}])
    assert "\x1b[2J" not in buf.getvalue() and "boom[/red]" in "".join(buf.getvalue().split())


def test_plain_rows_off_a_terminal() -> None:
    buf = io.StringIO()
    out = Output(console=Console(file=buf, force_terminal=False, width=80), err=Console(file=io.StringIO()))
    long_id = "job-" + "x" * 100
    out.table([Column("job_id", "job"), Column("reason")], [{"job_id": long_id, "reason": "a\tb\nc"}], title="t")
    assert buf.getvalue() == f"job\treason\n{long_id}\ta\\tb\\nc\n"
