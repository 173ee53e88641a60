"""Dataset loaders for the standard on-disk formats, and synthetic data.

Arrays are returned channels-last (N, H, W, C); backends transpose if they
train channels-first. Labels are integer class ids (sparse).
"""

import gzip
import os
import pickle
import struct

from .catalogue import DATASETS
from .errors import DataMissing


def expected_paths(dataset, root):
    return [os.path.join(root, rel) for rel in DATASETS[dataset]["files"]]


def describe(root):
    """What is present under root, per dataset (for `agent datasets`)."""
    out = []
    for name, info in sorted(DATASETS.items()):
        paths = expected_paths(name, root)
        present = bool(paths) and all(os.path.exists(p) for p in paths)
        out.append({
            "dataset": name,
            "present": present,
            "paths": paths,
            "description": info["description"],
            "always_synthetic": not paths,
        })
    return out


# Read from disk batch by batch (runner/imagenet.py), never loaded whole.
STREAMED = ("imagenet",)

# Random stand-ins for a streamed dataset default to this many samples (its
# real size would not fit in memory); the 2019 synthetic set had 1,000 too.
STREAMED_SYNTHETIC_SAMPLES = 1000


def is_streamed(dataset, synthetic=False):
    """True when the job reads files as a stream instead of calling load()."""
    return dataset in STREAMED and not synthetic


def load(dataset, root, synthetic=False, samples=None, seed=0):
    """Return (x_train, y_train, source) where source is 'real' or 'synthetic'."""
    import numpy as np

    info = DATASETS[dataset]
    if synthetic or not info["files"]:
        default_n = STREAMED_SYNTHETIC_SAMPLES if dataset in STREAMED else info["train_samples"]
        n = samples or default_n
        x, y = _synthetic(np, dataset, n, seed)
        return x, y, "synthetic"
    missing = [p for p in expected_paths(dataset, root) if not os.path.exists(p)]
    if missing:
        raise DataMissing(
            "dataset %r not found: expected %s (set the agent's dataset_root, or "
            "ask for synthetic data with workload.synthetic=true)" % (dataset, ", ".join(missing))
        )
    if dataset == "fashion_mnist":
        x, y = _fashion_mnist(np, root)
    elif dataset == "cifar10":
        x, y = _cifar10(np, root)
    else:
        raise DataMissing("dataset %r is streamed (runner/imagenet.py), not loaded into memory" % dataset)
    if samples:
        x, y = x[:samples], y[:samples]
    return x, y, "real"


def _synthetic(np, dataset, n, seed):
    info = DATASETS[dataset]
    h, w, c = info["shape"]
    rng = np.random.RandomState(seed)
    if dataset == "synthetic_imagenet":
        # the study: random images with values 0-255, as float32
        x = rng.randint(0, 256, size=(n, h, w, c)).astype("float32")
    else:
        x = rng.random_sample((n, h, w, c)).astype("float32")
    y = rng.randint(0, info["classes"], size=(n,)).astype("int32")
    return x, y


def read_idx(path):
    """Read an IDX file (gzip or plain) into a numpy array."""
    import numpy as np

    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4:
        raise DataMissing("%s is not an IDX file" % path)
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataMissing("%s is not an unsigned-byte IDX file" % path)
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    expected = 1
    for d in dims:
        expected *= d
    if arr.size != expected:
        raise DataMissing("%s is truncated: %d of %d values" % (path, arr.size, expected))
    return arr.reshape(dims)


def _fashion_mnist(np, root):
    images, labels = expected_paths("fashion_mnist", root)[:2]
    x = read_idx(images).astype("float32")[..., None] / 255.0
    y = read_idx(labels).astype("int32")
    return x, y


def _cifar10(np, root):
    base = os.path.join(root, "cifar10", "cifar-10-batches-py")
    xs, ys = [], []
    for i in range(1, 6):
        path = os.path.join(base, "data_batch_%d" % i)
        if not os.path.exists(path):
            if i == 1:
                raise DataMissing("dataset 'cifar10' not found: expected %s" % path)
            break
        with open(path, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        data = batch[b"data"] if b"data" in batch else batch["data"]
        labels = batch[b"labels"] if b"labels" in batch else batch["labels"]
        xs.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(labels, dtype=np.int32))
    x = np.concatenate(xs).astype("float32") / 255.0
    return x, np.concatenate(ys)
