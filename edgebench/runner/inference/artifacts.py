"""The model cache on a box: one directory per artifact, named by the model file's sha256.

Layout under the cache root (``EDGEBENCH_MODEL_CACHE``, default ``~/.cache/edgebench/models``)::

    sha256/<digest>/model.<onnx|tflite>   the artifact itself
    sha256/<digest>/meta.json             format, precision, input/output signature, source, reference digest
    sha256/<digest>/reference.npz         the reference batch and the reference framework's outputs
    recipes/<recipe digest>.json          {"sha256": ...}: which artifact an export recipe produced

An export recipe (model, shapes, source framework and version, exporter, precision, quantiser)
is hashed too, so the same catalogue model is exported once per box and found again by its
recipe; a user's model (issue 19) enters the same cache by digest alone (:func:`put`).

Every load re-hashes the file and compares it with the directory's name: nothing is handed
to a runtime before its digest matches (a truncated copy or a tampered file is refused).
Writes go to a temporary directory first and are renamed into place, so a crash mid-export
leaves no half-written artifact behind.
"""

import hashlib
import json
import os
import shutil
import tempfile

from ..errors import RunnerError

_CHUNK = 1 << 20
# keras: a user's .keras model delivered by the agent (runner/user_models.py, docs/MODELS.md)
FORMATS = {"onnx": "model.onnx", "tflite": "model.tflite", "keras": "model.keras"}


class ArtifactError(RunnerError):
    """A cached artifact is missing, corrupt or not what its digest says."""

    error_type = "Invalid"


def default_root():
    root = os.environ.get("EDGEBENCH_MODEL_CACHE")
    if root:
        return root
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "edgebench", "models")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(_CHUNK)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def recipe_digest(recipe):
    """A stable digest of an export recipe (a JSON-able dict)."""
    text = json.dumps(recipe, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_digest(text):
    return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)


class Artifact(object):
    """One verified model file and what is known about it (``meta``)."""

    def __init__(self, directory, meta):
        self.directory = directory
        self.meta = meta

    @property
    def sha256(self):
        return self.meta["sha256"]

    @property
    def format(self):
        return self.meta["format"]

    @property
    def path(self):
        return os.path.join(self.directory, FORMATS[self.meta["format"]])

    @property
    def size_bytes(self):
        return os.path.getsize(self.path)

    def reference(self):
        """(inputs, outputs, description) of the reference batch, digest-checked; None if absent."""
        ref = self.meta.get("reference")
        if not ref:
            return None
        path = os.path.join(self.directory, "reference.npz")
        if not os.path.exists(path) or sha256_file(path) != ref["sha256"]:
            raise ArtifactError("artifact %s: reference.npz is missing or does not match its digest" % self.sha256)
        import numpy as np

        with np.load(path, allow_pickle=False) as data:  # never unpickle what is on disk
            return data["inputs"], data["outputs"], ref.get("description", "")

    def info(self):
        """The result's ModelArtifactInfo fields."""
        m = self.meta
        return {
            "format": m["format"],
            "sha256": m["sha256"],
            "size_bytes": self.size_bytes,
            "precision": m.get("precision", "fp32"),
            "source": m.get("source", "")[:500],
            "quantiser": m.get("quantiser", "")[:500],
            "calibration": m.get("calibration", "")[:500],
        }


class Cache(object):
    def __init__(self, root=None):
        self.root = root or default_root()

    def _dir(self, digest):
        if not _is_digest(digest):
            raise ArtifactError("not a sha256 digest: %r" % (digest,))
        return os.path.join(self.root, "sha256", digest)

    def get(self, digest):
        """The verified artifact of this digest; ArtifactError if absent or corrupt."""
        directory = self._dir(digest)
        try:
            with open(os.path.join(directory, "meta.json")) as fh:
                meta = json.load(fh)
        except (OSError, ValueError):
            raise ArtifactError("no model with sha256 %s in the cache (%s)" % (digest, self.root)) from None
        if meta.get("sha256") != digest or meta.get("format") not in FORMATS:
            raise ArtifactError("artifact %s: meta.json does not describe it" % digest)
        art = Artifact(directory, meta)
        if not os.path.exists(art.path):
            raise ArtifactError("artifact %s: %s is missing" % (digest, FORMATS[art.format]))
        actual = sha256_file(art.path)
        if actual != digest:
            raise ArtifactError("artifact %s: the file's sha256 is %s (corrupt or tampered; not loaded)"
                                % (digest, actual))
        return art

    def has(self, digest):
        try:
            self.get(digest)
            return True
        except ArtifactError:
            return False

    def put(self, model_path, meta, reference=None):
        """Add a model file (copied) with its meta and optional reference (inputs, outputs, description).

        Returns the verified Artifact. An artifact already cached under the same digest is kept.
        """
        import numpy as np

        fmt = meta["format"]
        if fmt not in FORMATS:
            raise ArtifactError("unsupported model format %r" % (fmt,))
        digest = sha256_file(model_path)
        final = self._dir(digest)
        if os.path.exists(os.path.join(final, "meta.json")):
            return self.get(digest)
        parent = os.path.join(self.root, "sha256")
        if not os.path.isdir(parent):
            os.makedirs(parent)
        tmp = tempfile.mkdtemp(prefix=".incoming-", dir=parent)
        try:
            shutil.copyfile(model_path, os.path.join(tmp, FORMATS[fmt]))
            meta = dict(meta, sha256=digest)
            if reference is not None:
                inputs, outputs, description = reference
                ref_path = os.path.join(tmp, "reference.npz")
                with open(ref_path, "wb") as fh:
                    np.savez(fh, inputs=np.asarray(inputs), outputs=np.asarray(outputs))
                meta["reference"] = {"sha256": sha256_file(ref_path), "description": description,
                                     "samples": int(len(inputs))}
            with open(os.path.join(tmp, "meta.json"), "w") as fh:
                json.dump(meta, fh, indent=1, sort_keys=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not os.path.exists(os.path.join(final, "meta.json")):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process cached the same bytes first
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.get(digest)

    def find_recipe(self, recipe):
        """The artifact an identical export recipe produced before, or None."""
        path = os.path.join(self.root, "recipes", recipe_digest(recipe) + ".json")
        try:
            with open(path) as fh:
                digest = json.load(fh)["sha256"]
        except (OSError, ValueError, KeyError):
            return None
        try:
            return self.get(digest)
        except ArtifactError:
            return None  # evicted or corrupt: export again

    def note_recipe(self, recipe, artifact):
        directory = os.path.join(self.root, "recipes")
        if not os.path.isdir(directory):
            os.makedirs(directory)
        path = os.path.join(directory, recipe_digest(recipe) + ".json")
        tmp = path + ".tmp%d" % os.getpid()
        with open(tmp, "w") as fh:
            json.dump({"sha256": artifact.sha256, "recipe": recipe}, fh, sort_keys=True)
        os.rename(tmp, path)

    def list(self):
        """Every well-formed artifact's meta (unverified: for listing only)."""
        out = []
        parent = os.path.join(self.root, "sha256")
        if not os.path.isdir(parent):
            return out
        for name in sorted(os.listdir(parent)):
            if not _is_digest(name):
                continue
            try:
                with open(os.path.join(parent, name, "meta.json")) as fh:
                    out.append(json.load(fh))
            except (OSError, ValueError):
                continue
        return out
