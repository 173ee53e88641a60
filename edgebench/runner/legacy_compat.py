"""Make Keras 2.2.4 (keras-mxnet, Keras-TensorFlow 1) importable and quiet.

Three concerns, all applied by runner.legacy before ``import keras``:

* a private KERAS_HOME per job (Keras 2.2.4 reads its backend and
  image_data_format from KERAS_HOME/keras.json, and writes one if absent), so
  that ~/.keras is never read or written;
* runtime shims for running keras-mxnet 2.2.4.3 + MXNet 1.9.1 on Python >= 3.10
  and numpy >= 1.24 (names those releases removed);
* warnings: keras/__init__.py of keras-mxnet calls
  ``warnings.simplefilter('always', DeprecationWarning)``, after which numpy's
  alias deprecations repeat on every batch; we keep them off stderr.

Python 3.6 syntax only, no third-party imports at module level.
"""

import collections
import inspect
import json
import os
import shutil
import sys
import tempfile
import warnings

# Names that moved to collections.abc (Python 3.3) and left collections (3.10).
_ABC_NAMES = (
    "Awaitable", "Callable", "Container", "Hashable", "ItemsView", "Iterable", "Iterator",
    "KeysView", "Mapping", "MappingView", "MutableMapping", "MutableSequence", "MutableSet",
    "Sequence", "Set", "Sized", "ValuesView",
)

# numpy aliases deprecated in 1.20 and removed in 1.24, still used by MXNet 1.x.
_NUMPY_ALIASES = (
    ("bool", bool), ("int", int), ("float", float), ("complex", complex),
    ("object", object), ("str", str),
)


def apply_shims():
    """Restore what the legacy stacks import; return the names restored.

    Only missing names are added, so on Python 3.6 / numpy 1.14 this is a no-op.
    """
    applied = []
    # TensorFlow 2 sets TF2_BEHAVIOR=1 in its process's environment at import; a TF 1.13 runner started from
    # such a process (an agent or a test that imported Keras 3) would run eagerly and fail in tf.placeholder
    if os.environ.pop("TF2_BEHAVIOR", None) is not None:
        applied.append("TF2_BEHAVIOR unset")
    import collections.abc

    restored = 0
    for name in _ABC_NAMES:
        if name not in vars(collections) and hasattr(collections.abc, name):
            setattr(collections, name, getattr(collections.abc, name))
            restored += 1
    if restored:
        applied.append("collections.<%d collections.abc names>" % restored)
    if not hasattr(inspect, "getargspec"):  # removed in 3.11; keras.preprocessing.image uses it
        inspect.getargspec = _getargspec
        applied.append("inspect.getargspec")
    import numpy as np

    if _version_tuple(np.__version__) >= (1, 24):
        for name, target in _NUMPY_ALIASES:
            if name not in vars(np):
                setattr(np, name, target)
                applied.append("numpy.%s" % name)
    return applied


_ArgSpec = collections.namedtuple("ArgSpec", "args varargs keywords defaults")


def _getargspec(func):
    spec = inspect.getfullargspec(func)
    return _ArgSpec(spec.args, spec.varargs, spec.varkw, spec.defaults)


def _version_tuple(text):
    parts = []
    for piece in text.split(".")[:3]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits or 0))
    return tuple(parts)


def import_keras_quietly():
    """``import keras`` without its forced DeprecationWarnings.

    keras-mxnet turns DeprecationWarnings to 'always' at import; recording the
    import's warnings and then restoring the filters undoes that. Warnings of
    other categories seen during the import are shown once on stderr.
    """
    with warnings.catch_warnings(record=True) as seen:
        import keras
    for item in seen:
        if not issubclass(item.category, (DeprecationWarning, PendingDeprecationWarning)):
            warnings.showwarning(item.message, item.category, item.filename, item.lineno)
    silence_deprecations()
    return keras


def silence_deprecations():
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=PendingDeprecationWarning)


class PrivateKerasHome(object):
    """A temporary KERAS_HOME holding this job's keras.json, set in os.environ.

    Must be entered before ``import keras``: Keras 2.2.4 reads the file once,
    at import. KERAS_BACKEND is set as well, since it overrides keras.json.
    """

    def __init__(self, backend, image_data_format, floatx="float32", epsilon=1e-7):
        self.config = {
            "backend": backend,
            "image_data_format": image_data_format,
            "floatx": floatx,
            "epsilon": epsilon,
        }
        self.path = None
        self._saved = {}

    def __enter__(self):
        if "keras" in sys.modules:
            raise RuntimeError("keras was imported before its private KERAS_HOME was set")
        self.path = tempfile.mkdtemp(prefix="edgebench-keras-")
        with open(os.path.join(self.path, "keras.json"), "w") as fh:
            json.dump(self.config, fh, indent=4)
        for key, value in (("KERAS_HOME", self.path), ("KERAS_BACKEND", self.config["backend"])):
            self._saved[key] = os.environ.get(key)
            os.environ[key] = value
        return self

    def __exit__(self, *exc):
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(self.path, ignore_errors=True)
        return False
