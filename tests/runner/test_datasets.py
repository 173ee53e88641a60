"""Loaders for the standard on-disk formats, on tiny files in those formats."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from edgebench.runner.datasets import describe, load, read_idx
from edgebench.runner.errors import DataMissing
from tests.datasets_fixtures import write_cifar10, write_fashion_mnist


def test_fashion_mnist_idx_gz(tmp_path) -> None:
    images = write_fashion_mnist(tmp_path)
    x, y, source = load("fashion_mnist", str(tmp_path))
    assert source == "real"
    assert x.shape == (256, 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_allclose(x[3, :, :, 0], images[3] / 255.0, rtol=1e-6)
    assert 0 <= y.min() and y.max() < 10
    x2, _, _ = load("fashion_mnist", str(tmp_path), samples=100)
    assert len(x2) == 100


def test_cifar10_pickle_batches(tmp_path) -> None:
    first = write_cifar10(tmp_path)
    x, y, source = load("cifar10", str(tmp_path))
    assert source == "real" and x.shape == (80, 32, 32, 3) and len(y) == 80
    # CIFAR rows are channel-planar (1024 R, 1024 G, 1024 B): the loader makes them NHWC
    np.testing.assert_allclose(x[0, 0, 1, :] * 255.0, first[0, [1, 1025, 2049]], rtol=1e-6)


def test_missing_dataset_names_the_expected_path(tmp_path) -> None:
    with pytest.raises(DataMissing, match=r"fashion_mnist/train-images-idx3-ubyte\.gz"):
        load("fashion_mnist", str(tmp_path))


def test_synthetic_has_the_real_shapes_and_says_so(tmp_path) -> None:
    x, _, source = load("cifar10", str(tmp_path), synthetic=True, samples=16)
    assert source == "synthetic" and x.shape == (16, 32, 32, 3) and x.dtype == np.float32
    x, _, _ = load("synthetic_imagenet", str(tmp_path), samples=2)
    assert x.shape == (2, 256, 256, 3) and x.max() > 1  # the study's 0-255 values


def test_truncated_idx_is_an_error(tmp_path) -> None:
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(b"\x00\x00\x08\x03" + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\x00" * 100)
    with pytest.raises(DataMissing, match="truncated"):
        read_idx(str(path))


def test_describe_reports_presence(tmp_path) -> None:
    write_fashion_mnist(tmp_path)
    present = {d["dataset"]: d["present"] for d in describe(str(tmp_path))}
    assert present["fashion_mnist"] and not present["cifar10"]
