"""``python -m runner.probe BACKEND``: is the backend importable here, and which
versions? Prints one JSON object. Cheap: finds modules without importing them
(what to look for is each backend class's ``requirements``, runner/registry.py)."""

import json
import sys

try:
    from importlib.util import find_spec
except ImportError:  # pragma: no cover - Python 2
    find_spec = None

from .errors import Unsupported
from .registry import BACKENDS, backend_class


def distribution_version(dists):
    try:
        from importlib.metadata import version
    except ImportError:
        version = None
    for dist in dists:
        try:
            if version is not None:
                return version(dist)
            import pkg_resources

            return pkg_resources.get_distribution(dist).version
        except Exception:  # noqa: BLE001 - absent distribution, try the next name
            continue
    return None


def requirements(backend):
    """The (module, distributions) pairs the probe looks for; KeyError for an unknown backend."""
    if backend not in BACKENDS:
        raise KeyError(backend)
    return backend_class(backend).requirements


def probe(backend):
    try:
        cls = backend_class(backend)
    except Unsupported:
        return {"available": False, "detail": "unknown backend", "versions": {}}
    versions = {}
    missing = []
    for module, dists in cls.requirements:
        if find_spec(module) is None:
            missing.append(module)
            continue
        v = distribution_version(dists)
        if v:
            versions[module] = v
    missing.extend(cls.probe_problems(versions))
    versions["python"] = "%d.%d.%d" % sys.version_info[:3]
    if missing:
        return {"available": False, "detail": "missing: " + ", ".join(missing), "versions": versions}
    out = {"available": True, "detail": "", "versions": versions}
    out.update(cls.probe_extra(versions))  # e.g. a runtime's execution providers
    return out


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1])))
