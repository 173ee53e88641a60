"""``python -m runner.probe BACKEND [--ask]``: is the backend importable here,
which versions, and how many accelerators does its framework see? Prints one
JSON object.

Availability is cheap: modules are found without importing them (what to look
for is each backend class's ``requirements``, runner/registry.py). Counting
accelerators means asking the framework, which imports it (1-3 s each): that
is done only where the host has an accelerator device node (NVIDIA, Jetson,
AMD, Intel render nodes); without one no framework can see a GPU, and the
answer is 0 without an import. ``--ask`` asks the framework anyway. The
framework is set up to allocate GPU memory on demand, so a probe never grabs
memory a running job needs. A backend without a framework (``sleep``) has no
answer (null).
"""

import glob
import json
import os
import sys
import traceback

try:
    from importlib.util import find_spec
except ImportError:  # pragma: no cover - Python 2
    find_spec = None

from .context import RunContext
from .errors import Unsupported
from .protocol import NullEmitter
from .registry import BACKENDS, backend_class

# Device nodes through which a framework reaches an accelerator.
ACCELERATOR_NODES = ("/dev/nvidia[0-9]*", "/dev/nvhost-*", "/dev/nvgpu", "/dev/kfd", "/dev/dri/renderD*",
                     "/dev/accel*")
MAX_DETAIL = 500  # schemas.status.BackendInfo.accelerator_detail


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


def accelerators(cls, backend, ask=False):
    """(count or None, sentence): the accelerators the backend's framework sees."""
    if not cls.requirements:
        return None, "%s uses no framework" % backend
    if not ask:
        nodes = [path for pattern in ACCELERATOR_NODES for path in glob.glob(pattern)]
        if not nodes:
            return 0, "no accelerator device node on this host (%s); the framework was not asked" % (
                ", ".join(ACCELERATOR_NODES))
    spec = {"backend": backend, "memory_policy": "grow", "gpus": 0,
            "workload": {"model": "mlp", "dataset": "fashion_mnist", "batch_size": 1, "epochs": 1}}
    instance = cls(RunContext(spec, ".", "", NullEmitter()))
    try:
        instance.setup()
        count, seen = instance.accelerators()
    except Exception as exc:  # noqa: BLE001 - a broken framework: say so, claim nothing
        traceback.print_exc(file=sys.stderr)
        return None, ("asking the framework failed: %s: %s" % (type(exc).__name__, exc))[:MAX_DETAIL]
    finally:
        try:
            instance.close()
        except Exception:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
    return (None if count is None else int(count)), seen[:MAX_DETAIL]


def probe(backend, ask=False):
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
    count, seen = accelerators(cls, backend, ask)
    out.update(accelerators=count, accelerator_detail=seen)
    return out


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    ask = "--ask" in args
    names = [a for a in args if a != "--ask"]
    if len(names) != 1:
        sys.stderr.write("usage: python -m runner.probe BACKEND [--ask]\n")
        return 2
    # frameworks print at import; only the JSON line goes to stdout
    out = os.dup(1)
    os.dup2(2, 1)
    try:
        result = probe(names[0], ask)
    finally:
        sys.stdout.flush()
        os.dup2(out, 1)
        os.close(out)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
