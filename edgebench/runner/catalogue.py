"""The workload catalogue: one definition per workload, shared by every backend.

Defaults (batch size, optimiser, learning rate) follow the 2019 study; every
field can be overridden per job. Plain data so that Python 3.6 runners, the
agent and the controller all read the same table.
"""

# name -> (height, width, channels), classes, train samples, test samples
DATASETS = {
    "fashion_mnist": {
        "shape": (28, 28, 1),
        "classes": 10,
        "train_samples": 60000,
        "test_samples": 10000,
        "files": [
            "fashion_mnist/train-images-idx3-ubyte.gz",
            "fashion_mnist/train-labels-idx1-ubyte.gz",
            "fashion_mnist/t10k-images-idx3-ubyte.gz",
            "fashion_mnist/t10k-labels-idx1-ubyte.gz",
        ],
        "description": "Fashion-MNIST, IDX .gz files",
    },
    "cifar10": {
        "shape": (32, 32, 3),
        "classes": 10,
        "train_samples": 50000,
        "test_samples": 10000,
        "files": ["cifar10/cifar-10-batches-py/data_batch_1"],
        "description": "CIFAR-10, python pickle batches (cifar-10-batches-py)",
    },
    "synthetic_imagenet": {
        "shape": (256, 256, 3),
        "classes": 1000,
        "train_samples": 1000,
        "test_samples": 0,
        "files": [],
        "description": "1,000 random 256x256x3 images, values 0-255, 1,000 classes (always synthetic)",
    },
    "imagenet": {
        "shape": (224, 224, 3),
        "classes": 1000,
        "train_samples": 1281167,
        "test_samples": 0,
        "files": ["imagenet/train"],
        "description": "ILSVRC2012-style train folder: one subfolder of JPEGs per class",
    },
}

WORKLOADS = {
    "fashion-mnist-mlp": {
        "model": "mlp",
        "dataset": "fashion_mnist",
        "batch_size": 32,
        "epochs": 2,
        "optimizer": "adam",
        "learning_rate": 0.001,
        "description": "MLP: Flatten, Dense 128 relu, Dense 10 softmax",
    },
    "fashion-mnist-cnn": {
        "model": "cnn",
        "dataset": "fashion_mnist",
        "batch_size": 32,
        "epochs": 2,
        "optimizer": "adam",
        "learning_rate": 0.001,
        "description": "CNN: Conv2D 64 k3 relu, Conv2D 32 k3 relu, Flatten, Dense 10 softmax",
    },
    "cifar10-resnet56": {
        "model": "resnet56",
        "dataset": "cifar10",
        "batch_size": 32,
        "epochs": 2,
        "optimizer": "adam",
        "learning_rate": 0.001,
        "description": "ResNet-56 v1 (He et al. 2016, CIFAR variant)",
    },
    "synthetic-resnet50": {
        "model": "resnet50",
        "dataset": "synthetic_imagenet",
        "batch_size": 32,
        "epochs": 2,
        "optimizer": "rmsprop",
        "learning_rate": 0.0001,
        "description": "ResNet-50 on 1,000 random 256x256x3 images, 1,000 classes",
    },
    "imagenet-resnet50": {
        "model": "resnet50",
        "dataset": "imagenet",
        "batch_size": 8,
        "epochs": 2,
        "steps_per_epoch": 10000,
        "optimizer": "adam",
        "learning_rate": 0.001,
        "description": "ResNet-50 streaming JPEGs from an ILSVRC2012-style folder",
    },
}

# The shortest measured window a job accepts, filled in by the controller for
# every job it builds (edgebench/controller/plan.py); a job or sweep may set
# its own (0 turns a minimum off). The runner measures whole epochs beyond
# workload.epochs until both hold (runner/timing.py).
# - 100 batches: tf_cnn_benchmarks times 100 steps (DLBS too). A window of
#   100 batches cut into 10 blocks has 10 batches per block for the interval.
# - 1 s: MLPerf asks for a minimum duration (600 s per inference scenario, for
#   steady state under a load generator). A training window here is epochs of a
#   fixed workload, and the aim is a duration that timer resolution (us) and a
#   one-off stall (a 10 ms GC pause is 1 %) cannot dominate. 1 s costs the
#   catalogue's CPU jobs little: on a 2-core CPU (2026-12-01) the demo's CNN and
#   Keras-torch MLP windows are 2.4-10 s and stay as they were; only the
#   Keras-JAX MLP (60,000 images at 80-90k img/s, a 0.7 s window) measures a
#   second epoch (+0.7 s). The 40-batch, 1.7 s windows of the H200 sweep
#   (issue 20) grow to 100 batches. On the CPU, synthetic-resnet50 (31 batches of
#   32 per epoch) measures 4 epochs instead of 1: set min_batches: 0 for a
#   quicker, noisier look.
WINDOW_DEFAULTS = {"min_batches": 100, "min_window_s": 1.0}

# Which model runs on which dataset (the catalogue's own combinations and the
# obvious cross-overs that share an input shape family).
MODEL_DATASETS = {
    "mlp": ("fashion_mnist", "cifar10"),
    "cnn": ("fashion_mnist", "cifar10"),
    "resnet56": ("cifar10", "fashion_mnist"),
    "resnet50": ("synthetic_imagenet", "imagenet", "cifar10"),
}


def workload_fields(name):
    """The wire fields of a catalogue workload (without its description)."""
    entry = dict(WORKLOADS[name])
    entry.pop("description", None)
    return entry
