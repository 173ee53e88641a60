"""Streaming loader for an ILSVRC2012-style train folder.

``<dataset_root>/imagenet/train/<wnid>/*.JPEG``: class folders sorted by name
give the label ids (the usual ILSVRC convention). The file list is read once
and shuffled with a seed; every pass over it is reshuffled. Images are decoded
with Pillow, the short side resized to the crop size and the centre cropped
(224x224 as in the catalogue), by a small pool of background threads that
keep a bounded number of batches ready. Pillow's decoder and resampler release
the GIL, so threads give real parallelism without the pickling costs (and the
fork hazards under CUDA) of worker processes.

Batches are float32 NHWC scaled to [0, 1] (as the other real loaders do) with
int32 labels; channels_first=True gives NCHW. A ``transform`` callable runs in
the worker threads on each (x, y) so that a backend can do its own per-batch
work (PyTorch pins host memory there) off the training thread.

Pillow is imported only inside functions: the Python 3.6 stacks may lack it,
and a job that needs it then fails with a typed error, not an ImportError.
"""

import collections
import os
import random

from .catalogue import DATASETS
from .errors import DataMissing, Unsupported

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


def train_dir(root):
    return os.path.join(root, "imagenet", "train")


def list_files(root):
    """Return (paths, labels, class_names); raise DataMissing naming the folder."""
    base = train_dir(root)
    if not os.path.isdir(base):
        raise DataMissing(
            "dataset 'imagenet' not found: expected %s holding one subfolder of JPEG files per "
            "class (ILSVRC2012 train layout), or ask for synthetic data with workload.synthetic=true"
            % base)
    classes = sorted(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d)))
    paths = []
    labels = []
    for label, wnid in enumerate(classes):
        folder = os.path.join(base, wnid)
        for name in sorted(os.listdir(folder)):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                paths.append(os.path.join(folder, name))
                labels.append(label)
    if not paths:
        raise DataMissing(
            "dataset 'imagenet' is empty: expected JPEG files in class subfolders of %s" % base)
    max_classes = DATASETS["imagenet"]["classes"]
    if len(classes) > max_classes:
        raise DataMissing("%s has %d class folders; the imagenet models have %d outputs"
                          % (base, len(classes), max_classes))
    return paths, labels, classes


def pillow():
    """Import Pillow or fail with a typed error that says what to install."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise Unsupported(
            "the imagenet dataset needs Pillow to decode JPEG files, and this runner's Python "
            "has none: pip install pillow (or use workload.synthetic=true)") from exc
    return Image


def decode(Image, path, size):
    """One image as a (size, size, 3) uint8 array: short side to size, centre crop."""
    import numpy as np

    resample = getattr(Image, "Resampling", Image).BILINEAR
    try:
        with Image.open(path) as img:
            # Lets libjpeg decode at 1/2, 1/4 or 1/8 scale while both sides stay >= size:
            # most of the decode cost saved, the same result after resizing.
            img.draft("RGB", (size, size))
            img = img.convert("RGB")
            width, height = img.size
            scale = float(size) / min(width, height)
            new_w = max(size, round(width * scale))
            new_h = max(size, round(height * scale))
            img = img.resize((new_w, new_h), resample)
            left = (new_w - size) // 2
            top = (new_h - size) // 2
            img = img.crop((left, top, left + size, top + size))
            return np.asarray(img, dtype=np.uint8)
    except (IOError, OSError, ValueError, SyntaxError) as exc:  # what Pillow raises for bad files
        raise DataMissing("cannot decode %s: %s" % (path, exc)) from exc


# Images decoded into memory for inference: decode stays out of the latency,
# and 256 images at 224x224 float32 are 154 MB.
INFER_IMAGES = 256


def infer_arrays(stream, samples=None):
    """A bounded in-memory set for inference (workload.samples, else INFER_IMAGES); closes the stream."""
    n_images = samples or min(len(stream), INFER_IMAGES)
    try:
        return stream.take(max(1, n_images // stream.batch_size))
    finally:
        stream.close()


def default_workers():
    # Leave a core to the training loop; more than 8 threads rarely help one GPU.
    return max(1, min(8, (os.cpu_count() or 2) - 1))


class ImageFolderStream(object):
    """An endless, seeded, shuffled stream of decoded batches from one train folder."""

    def __init__(self, root, batch_size, size=None, seed=0, samples=None, workers=None,
                 prefetch_batches=None, channels_first=False, transform=None, rank=0, world_size=1):
        self.paths, self.labels, self.classes = list_files(root)
        self.batch_size = int(batch_size)
        self.size = int(size or DATASETS["imagenet"]["shape"][0])
        self.seed = seed
        order = list(range(len(self.paths)))
        random.Random(seed).shuffle(order)
        if samples:
            order = order[:samples]  # first N of the shuffled list: every class can appear
        self.total_samples = len(order)
        # data-parallel ranks stream disjoint shards of the same shuffled list
        order = order[rank::world_size]
        if not order:
            raise DataMissing("%s holds %d images, fewer than the %d data-parallel processes"
                              % (train_dir(root), self.total_samples, world_size))
        self.order = order
        self.workers = int(workers or default_workers())
        # Enough batches in flight to keep every worker busy, and no more: at
        # 224x224 float32 one image is 0.6 MB, so memory grows with this.
        self.prefetch_batches = int(prefetch_batches or self.workers + 1)
        self.channels_first = channels_first
        self.transform = transform
        self._iter = None
        self._executor = None
        self._pending = collections.deque()

    def __len__(self):
        """Images this process streams per pass (its shard)."""
        return len(self.order)

    def describe(self):
        return "Pillow decode in %d threads, %d batches prefetched, short side->%d, centre crop" % (
            self.workers, self.prefetch_batches, self.size)

    def _indices(self):
        order = list(self.order)
        passes = 0
        while True:
            for i in order:
                yield i
            passes += 1
            random.Random(self.seed + passes).shuffle(order)

    def _chunks(self):
        indices = self._indices()
        while True:
            yield [next(indices) for _ in range(self.batch_size)]

    def _make_batch(self, Image, chunk):
        import numpy as np

        x = np.empty((len(chunk), self.size, self.size, 3), dtype=np.float32)
        y = np.empty((len(chunk),), dtype=np.int32)
        for k, i in enumerate(chunk):
            x[k] = decode(Image, self.paths[i], self.size)
            y[k] = self.labels[i]
        x *= 1.0 / 255.0
        if self.channels_first:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if self.transform is not None:
            return self.transform(x, y)
        return x, y

    def __iter__(self):
        return self

    def __next__(self):
        if self._iter is None:
            self._iter = self._batches()
        return next(self._iter)

    def _batches(self):
        from concurrent.futures import ThreadPoolExecutor

        Image = pillow()
        chunks = self._chunks()
        self._executor = ThreadPoolExecutor(max_workers=self.workers)
        submit = self._executor.submit
        for _ in range(self.prefetch_batches):
            self._pending.append(submit(self._make_batch, Image, next(chunks)))
        while True:
            future = self._pending.popleft()
            self._pending.append(submit(self._make_batch, Image, next(chunks)))
            yield future.result()

    def take(self, batches):
        """Decode this many batches into one in-memory (x, y) pair (inference sets)."""
        import numpy as np

        xs, ys = [], []
        for _ in range(batches):
            x, y = next(self)
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs), np.concatenate(ys)

    def close(self):
        """Drop queued work and let the threads end; safe to call twice."""
        while self._pending:
            self._pending.popleft().cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._iter = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
