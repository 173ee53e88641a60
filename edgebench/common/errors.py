"""The base of every error edgebench raises on purpose.

Each package has one small base below this one (``AgentError`` in
edgebench/agent/errors.py, ``ControllerError`` in edgebench/controller/errors.py;
the Python 3.6 runner keeps its own ``RunnerError``, since it may import nothing
of the rest). The command lines turn these into one line on stderr and an exit
code in one place (edgebench/common/cli.py): 2 for a :class:`UsageError`, 1 for
every other :class:`EdgebenchError`.
"""

from __future__ import annotations


class EdgebenchError(Exception):
    """A failure edgebench knows how to describe: its message is shown as is, without a traceback."""


class UsageError(EdgebenchError):
    """The request itself is invalid (an unknown name, options that do not go together): exit code 2."""


# The optional extras (pyproject.toml) and the top-level modules that tell one is missing.
EXTRA_OF_MODULE = {
    "docker": "docker",
    "requests": "docker",
    "matplotlib": "report",
    "pyarrow": "parquet",
    "psycopg": "postgres",
    "amqtt": "broker",
}


class MissingExtra(EdgebenchError):
    """An optional dependency is not installed; the message names the extra that brings it."""

    def __init__(self, module: str, extra: str, needed_for: str = ""):
        self.module, self.extra = module, extra
        what = f"{needed_for} needs" if needed_for else "this needs"
        super().__init__(f"{what} the '{extra}' extra ({module} is not installed): "
                         f"pip install 'edgebench[{extra}]', or '.[{extra}]' in a checkout")


def missing_extra(exc: ImportError, needed_for: str = "") -> MissingExtra | None:
    """The :class:`MissingExtra` an ImportError stands for, or None when it is not an extra's module."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(name)
    return MissingExtra(name, extra, needed_for) if extra else None
