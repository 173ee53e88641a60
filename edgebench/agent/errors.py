"""The agent's exception base (edgebench/common/errors.py explains the family)."""

from __future__ import annotations

from edgebench.common.errors import EdgebenchError


class AgentError(EdgebenchError):
    """An agent operation failed."""
