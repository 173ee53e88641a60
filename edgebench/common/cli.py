"""The edge of both command lines (``controller`` and ``agent``): the one place
where an error becomes a message and an exit code.

Exit codes (README, "Exit codes"):

* 0: everything asked for succeeded;
* 1: a runtime failure: the broker unreachable, a job that did not succeed, a
  missing optional extra, any other :class:`EdgebenchError`;
* 2: a usage error: bad options (typer's own), a :class:`UsageError`, an
  invalid configuration.

Commands raise; they do not print errors or pick exit codes themselves. An
exception that is none of these is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from edgebench.common.console import Output, markup
from edgebench.common.errors import EdgebenchError, UsageError, missing_extra

USAGE = 2
FAILURE = 1


def one_line(exc: ValidationError) -> str:
    """A pydantic error as one line: ``device_id: Field required; log_level: ...``."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "value"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def describe(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, one-line message) for an error the CLI reports, or None for a bug."""
    if isinstance(exc, UsageError):
        return USAGE, str(exc)
    if isinstance(exc, EdgebenchError):
        return FAILURE, str(exc)
    if isinstance(exc, ValidationError):
        return USAGE, f"invalid {exc.title}: {one_line(exc)}"
    if isinstance(exc, ImportError):
        extra = missing_extra(exc)
        if extra is not None:
            return FAILURE, str(extra)
    return None


class EdgebenchGroup(TyperGroup):
    """The root command group: runs the callback and the command, and reports the errors :func:`describe` knows."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            described = describe(exc)
            if described is None:
                raise
            code, message = described
            Output().error(markup(message))
            raise typer.Exit(code) from None
