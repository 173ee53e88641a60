"""The controller's exception base (edgebench/common/errors.py explains the family)."""

from __future__ import annotations

from edgebench.common.errors import EdgebenchError, UsageError


class ControllerError(EdgebenchError):
    """A controller operation failed (exit code 1)."""


class ControllerUsageError(ControllerError, UsageError):
    """A controller request is invalid: a bad sweep, selection or policy (exit code 2)."""


class StoreMissing(ControllerError):
    """A read-only command was given a store that does not exist (it is not created)."""
