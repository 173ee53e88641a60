"""edgebench's version, for ``--version``, every result's fingerprint and image tags.

Read by the agent and the controller alike, so it lives here and neither has to
import the other.

The version comes from git through setuptools-scm (pyproject.toml). A built
distribution (a wheel, an image) carries it in edgebench/_version.py, written at
build time. An editable install in a checkout would keep the version of the
commit it was installed at, so in a checkout the version is asked of git again:
results then name the commit that really ran them (with a ``.d<date>`` suffix
when the tree has uncommitted changes).
"""

from __future__ import annotations

import functools
from pathlib import Path

# pyproject.toml's fallback_version, for a source tree without git metadata. setuptools-scm
# also counts from it while the repository has no tag (0.0.1.devN+g<commit>), so it must
# carry no local part: "0.0.0+unknown" made every version read "...+unknown.g<commit>".
UNKNOWN = "0.0.0"

_CHECKOUT = Path(__file__).resolve().parents[2]


@functools.cache
def edgebench_version() -> str:
    """The version string, computed once per process (git takes ~0.1 s)."""
    if (_CHECKOUT / ".git").exists() and (_CHECKOUT / "pyproject.toml").is_file():
        live = _from_git(_CHECKOUT)
        if live:
            return live
    try:
        from edgebench._version import version  # written by setuptools-scm when the package was built
    except ImportError:
        version = ""
    if version and version != UNKNOWN:
        return str(version)
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("edgebench")
    except PackageNotFoundError:
        return UNKNOWN


def _from_git(root: Path) -> str | None:
    try:
        from setuptools_scm import get_version
    except ImportError:  # a checkout without the dev tools: fall back to the built version
        return None
    try:
        return str(get_version(root=str(root), fallback_version=UNKNOWN))
    except Exception:  # noqa: BLE001 - no git binary, a broken repository: the built version will do
        return None


def docker_tag(version: str | None = None) -> str:
    """The version as an image tag: tags allow no "+", so the local part joins with "-"
    (0.0.1.dev115+gb86d749 -> 0.0.1.dev115-gb86d749; images/agent/Dockerfile turns it back)."""
    return (version or edgebench_version()).replace("+", "-")
