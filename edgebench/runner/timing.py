"""The measured window, defined once for every backend.

An epoch is timed from its first batch's start to the moment the device has
finished its last batch (the backend's ``sync`` callable is called before the
clock is read). Warm-up epochs are timed and reported but flagged and kept
out of the window. Per-batch durations are recorded inside the window.

Batch ends may be reported from other threads and out of order: Keras 3 on
JAX and PyTorch hands batch hooks to a thread pool (a callback marked
``async_safe``), where each call first waits for its step's results. Blocking
the training loop there instead would sync host and device after every step
and cost Keras-JAX 38 % of its throughput on an H200 (docs/PERFORMANCE.md). So
:meth:`RunTimer.batch_end` records the time under a lock, and when the epoch
ends the completions are put in time order. A pool thread sees a completion
late by up to a fraction of a millisecond, so on that path consecutive
completions are grouped into per-batch samples of at least
``MIN_SAMPLE_S``: for steps of a few milliseconds or more (any real GPU
workload) a sample is one batch; a 0.5 ms CPU step would otherwise show the
thread jitter, not the step. ``n_batches`` still counts batches.

Long enough to mean something (issue 20): a job may state a minimum measured
duration (``min_window_s``) and a minimum number of measured batches
(``min_batches``). The window then stays open after the epochs the job asked
for, whole epoch by whole epoch, until both hold (at most ``MAX_EPOCHS``
epochs in all); the summary's ``window_policy`` says what was asked and what
was measured. A backend's loop runs the epochs :meth:`RunTimer.epoch_numbers`
yields; a framework loop (Keras ``fit``) is told :attr:`RunTimer.max_epochs`
and stopped once :attr:`RunTimer.finished` (keras_common.py).

Dispersion: the window is cut into ``N_BLOCKS`` blocks of consecutive batches
(fewer when it holds fewer batches) that tile it in time: a block runs from the
previous block's last batch end (the window's start for the first) to its own
last batch end (the window's end for the last), so the time between epochs
counts too. Images over seconds summed over the blocks is exactly
``window_img_per_s``, and the blocks' img/s (with their images, since blocks
differ by up to one batch) give a confidence interval of that same figure
(batch means), which per-batch host timestamps alone do not.
"""

import math
import threading
import time
from array import array

from . import protocol

# Shortest per-batch sample when batch ends arrive from Keras's callback threads.
MIN_SAMPLE_S = 0.005
# Most epochs a repeat may run when its window is extended (JobSpec's own epoch limit).
MAX_EPOCHS = 10000
# Blocks of consecutive batches per window: >= 5 for a batch-means interval, 10 so
# that a window of the default 100 batches has 10 batches per block.
N_BLOCKS = 10


def percentile(values, q):
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = int(math.ceil(pos))
    if lo == hi:
        return float(ordered[lo])
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def mean_std(values):
    if not values:
        return 0.0, 0.0
    m = sum(values) / float(len(values))
    if len(values) < 2:
        return m, 0.0
    var = sum((v - m) ** 2 for v in values) / float(len(values) - 1)
    return m, math.sqrt(var)


class RunTimer(object):
    """Collects one repeat's epochs; emits window markers and epoch records."""

    def __init__(self, emitter, repeat, epochs, warmup_epochs, batch_size, sync=None, min_batches=0,
                 min_window_s=0.0):
        self.emitter = emitter
        self.repeat = repeat
        self.epochs = epochs
        self.warmup_epochs = warmup_epochs
        self.batch_size = batch_size
        self.sync = sync or (lambda: None)
        self.epoch_stats = []
        self.window_batch_s = []
        self.window_batch_images = []
        self.window_batches = 0
        self.window_images = 0
        self.window_s = 0.0
        self._window_t0 = None
        self._window_t1 = None  # set when the window closes
        self.min_batches = int(min_batches or 0)
        self.min_window_s = float(min_window_s or 0.0)
        self._met = None  # both minimums held when the window closed
        # end time and images of every measured batch, in time order (8 bytes each)
        self._end_t = array("d")
        self._end_n = array("l")
        self._epoch = 0
        self._ended = False  # epoch_end seen for the current epoch
        self._epoch_t0 = 0.0
        self._batch_ends = []  # (time, images) of this epoch's batches
        self._threaded = False  # batch ends of this epoch came from callback threads
        self._batches = 0
        self._images = 0
        self._last_progress = 0.0
        self._lock = threading.Lock()

    @property
    def measuring(self):
        return self._epoch > self.warmup_epochs

    @property
    def finished(self):
        """True once the last epoch of this repeat has ended (the window closed)."""
        return self._epoch >= self.epochs and self._ended and (
            self._window_t1 is not None or self._window_t0 is None)

    @property
    def max_epochs(self):
        """The most epochs this repeat may run (what a framework loop is told)."""
        if self.min_batches or self.min_window_s:
            return max(self.epochs, MAX_EPOCHS)
        return self.epochs

    def epoch_numbers(self):
        """The 1-based epochs to run: a backend's loop iterates over these."""
        epoch = 0
        while epoch < self.max_epochs and not self.finished:
            epoch += 1
            yield epoch

    def epoch_begin(self, epoch):
        """epoch is 1-based."""
        self._epoch = epoch
        self._ended = False
        if epoch == self.warmup_epochs + 1:
            self.sync()
            self._window_t0 = time.perf_counter()
            self.emitter.send(protocol.window("begin", self.repeat))
        phase = protocol.MEASURE if self.measuring else protocol.WARMUP
        self.emitter.send(protocol.phase(phase, epoch, self.epochs, self.repeat))
        with self._lock:
            self._batch_ends = []
            self._threaded = False
            self._batches = 0
            self._images = 0
            self._epoch_t0 = time.perf_counter()

    def batch_end(self, images=None, loss=None, threaded=False):
        """A batch finished; ``threaded`` when reported from a callback thread (any order)."""
        now = time.perf_counter()
        n = self.batch_size if images is None else images
        with self._lock:
            self._batches += 1
            self._images += n
            self._threaded = self._threaded or threaded
            self._batch_ends.append((now, n))
            due = now - self._last_progress >= 1.0
            if due:
                self._last_progress = now
                batches, done, elapsed = self._batches, self._images, now - self._epoch_t0
        if due:
            self.emitter.send(protocol.progress(
                self.repeat, self._epoch, self.epochs, batches, (done / elapsed) if elapsed > 0 else None,
                _finite(loss), protocol.MEASURE if self.measuring else protocol.WARMUP))

    def _record_batches(self):
        # completions in time order; each sample from the previous one's end (or the epoch's start)
        with self._lock:
            ends = sorted(self._batch_ends)
            threaded = self._threaded
            self._batch_ends = []
        last = self._epoch_t0
        pending_s, pending_n = 0.0, 0
        for t, n in ends:
            t = max(t, last)
            pending_s += t - last
            pending_n += n
            last = t
            self.window_batches += 1
            self._end_t.append(t)
            self._end_n.append(n)
            if not threaded or pending_s >= MIN_SAMPLE_S:
                self.window_batch_s.append(pending_s)
                self.window_batch_images.append(pending_n)
                pending_s, pending_n = 0.0, 0
        if pending_n and pending_s > 0:
            self.window_batch_s.append(pending_s)
            self.window_batch_images.append(pending_n)

    def epoch_end(self, loss=None, accuracy=None):
        self.sync()
        now = time.perf_counter()
        if self.measuring:
            self._record_batches()
        seconds = now - self._epoch_t0
        stat = {
            "epoch": self._epoch,
            "warmup": not self.measuring,
            "images": self._images,
            "batches": self._batches,
            "seconds": seconds,
            "img_per_s": (self._images / seconds) if seconds > 0 else 0.0,
            "loss": _finite(loss),
            "accuracy": _finite(accuracy),
        }
        self.epoch_stats.append(stat)
        self.emitter.send(protocol.epoch(self.repeat, stat))
        if self.measuring:
            self.window_images += self._images
        self._ended = True
        if self._epoch >= self.epochs and self._window_t0 is not None and self._window_t1 is None:
            elapsed = now - self._window_t0
            met = self.window_batches >= self.min_batches and elapsed >= self.min_window_s
            if met or self._epoch >= self.max_epochs:
                self.window_s = elapsed
                self._window_t1 = now
                self._met = met
                self.emitter.send(protocol.window("end", self.repeat))

    def summary(self):
        per_batch = [
            n / s for n, s in zip(self.window_batch_images, self.window_batch_s) if s > 0
        ]
        mean, std = mean_std(per_batch)
        blocks = self.blocks()
        return {
            "window_img_per_s": (self.window_images / self.window_s) if self.window_s > 0 else 0.0,
            "median_img_per_s": percentile(per_batch, 50),
            "mean_img_per_s": mean,
            "std_img_per_s": std,
            "n_batches": self.window_batches,
            "n_samples": len(per_batch),
            "images": self.window_images,
            "window_s": self.window_s,
            "block_img_per_s": [n / t for n, t in blocks],
            "block_images": [n for n, _ in blocks],
            "window_policy": self.window_policy(),
        }

    def blocks(self):
        """(images, seconds) of up to N_BLOCKS blocks of consecutive batches tiling the window."""
        n = len(self._end_t)
        if n == 0 or self._window_t1 is None:
            return []
        k = min(N_BLOCKS, n)
        out = []
        start = self._window_t0
        for b in range(k):
            lo, hi = b * n // k, (b + 1) * n // k
            end = self._window_t1 if b == k - 1 else self._end_t[hi - 1]
            images = sum(self._end_n[lo:hi])
            if end > start:
                out.append((images, end - start))
                start = end
            elif out:  # batches that ended together (callback threads): one block with the previous
                out[-1] = (out[-1][0] + images, out[-1][1])
            else:
                out.append((images, 0.0))
        if len(out) > 1 and out[0][1] <= 0:
            out[1] = (out[0][0] + out[1][0], out[1][1])
            out.pop(0)
        return [(images, seconds) for images, seconds in out if seconds > 0]

    def window_policy(self):
        """What the job asked of the window and what was measured (schemas.result.WindowPolicy)."""
        asked = max(0, self.epochs - self.warmup_epochs)
        measured = len([e for e in self.epoch_stats if not e["warmup"]])
        return {
            "min_window_s": self.min_window_s,
            "min_batches": self.min_batches,
            "asked_epochs": asked,
            "measured_epochs": measured,
            "extended_epochs": max(0, measured - asked),
            "met": bool(self._met),
        }

    def latency(self):
        ms = [s * 1000.0 for s in self.window_batch_s]
        mean, _ = mean_std(ms)
        return {
            "p50_ms": percentile(ms, 50),
            "p90_ms": percentile(ms, 90),
            "p99_ms": percentile(ms, 99),
            "mean_ms": mean,
            "n_batches": len(ms),
        }

    def run_record(self, mode, loss=None, accuracy=None, knobs=None):
        """One repeat as schemas.result.RunResult reads it."""
        record = {
            "repeat": self.repeat,
            "epochs": self.epoch_stats,
            "throughput": self.summary(),
            "latency": self.latency() if mode == "infer" else None,
            "loss": _finite(loss),
            "accuracy": _finite(accuracy),
            "knobs": knobs or {},
        }
        return record


def _finite(value):
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(value) or math.isinf(value):
        return None
    return value
