"""Tiny datasets in the real on-disk formats (Fashion-MNIST IDX .gz, CIFAR-10
python pickle batches), written by the tests themselves."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def write_fashion_mnist(root: Path, n_train: int = 256, n_test: int = 64) -> np.ndarray:
    """Returns the training images written (uint8, N x 28 x 28)."""
    rng = np.random.RandomState(1)
    base = root / "fashion_mnist"
    images = rng.randint(0, 256, (n_train, 28, 28)).astype(np.uint8)
    write_idx(base / "train-images-idx3-ubyte.gz", images)
    write_idx(base / "train-labels-idx1-ubyte.gz", rng.randint(0, 10, n_train).astype(np.uint8))
    write_idx(base / "t10k-images-idx3-ubyte.gz", rng.randint(0, 256, (n_test, 28, 28)).astype(np.uint8))
    write_idx(base / "t10k-labels-idx1-ubyte.gz", rng.randint(0, 10, n_test).astype(np.uint8))
    return images


def write_cifar10(root: Path, per_batch: int = 40, batches: int = 2) -> np.ndarray:
    """CIFAR-10's cifar-10-batches-py layout; returns the first batch's rows (N x 3072 uint8)."""
    rng = np.random.RandomState(2)
    base = root / "cifar10" / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    first = None
    for i in range(1, batches + 1):
        data = rng.randint(0, 256, (per_batch, 3072)).astype(np.uint8)
        labels = rng.randint(0, 10, per_batch).tolist()
        with (base / f"data_batch_{i}").open("wb") as fh:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": b"training batch"}, fh)
        if first is None:
            first = data
    assert first is not None
    return first
