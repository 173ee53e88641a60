"""``python -m runner.probe BACKEND``: is the backend importable here, and which
versions? Prints one JSON object. Cheap: finds modules without importing them."""

import json
import sys

try:
    from importlib.util import find_spec
except ImportError:  # pragma: no cover - Python 2
    find_spec = None

# backend -> [(module, [distribution names to try for the version])]
REQUIREMENTS = {
    "keras-jax": [("keras", ["keras"]), ("jax", ["jax"]), ("jaxlib", ["jaxlib"])],
    "keras-torch": [("keras", ["keras"]), ("torch", ["torch"])],
    "keras-tensorflow": [("keras", ["keras"]),
                         ("tensorflow", ["tensorflow", "tensorflow-cpu", "tensorflow-gpu"])],
    "torch": [("torch", ["torch"])],
    "keras-mxnet": [("keras", ["keras-mxnet"]), ("mxnet", ["mxnet", "mxnet-cu100", "mxnet-mkl"])],
    "keras-tensorflow1": [("keras", ["keras"]),
                          ("tensorflow", ["tensorflow-gpu", "tensorflow"])],
    "sleep": [],
}


def _version(dists):
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


def probe(backend):
    if backend not in REQUIREMENTS:
        return {"available": False, "detail": "unknown backend", "versions": {}}
    versions = {}
    missing = []
    for module, dists in REQUIREMENTS[backend]:
        if find_spec(module) is None:
            missing.append(module)
            continue
        v = _version(dists)
        if v:
            versions[module] = v
    if backend == "keras-tensorflow" and versions.get("keras", "3").split(".")[0] != "3":
        missing.append("keras>=3")
    if backend in ("keras-mxnet", "keras-tensorflow1") and versions.get("keras", "2").split(".")[0] != "2":
        missing.append("keras 2.2.4")
    if backend == "keras-tensorflow1" and versions.get("tensorflow", "1").split(".")[0] != "1":
        missing.append("tensorflow 1.x")
    versions["python"] = "%d.%d.%d" % sys.version_info[:3]
    if missing:
        return {"available": False, "detail": "missing: " + ", ".join(missing), "versions": versions}
    return {"available": True, "detail": "", "versions": versions}


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1])))
