"""Native JAX (Flax + optax): the reference loop that Keras-JAX is measured against.

Best practice for JAX, each knob reported as it was in force: one ``jax.jit``
train step per batch (forward, loss, gradients, optimiser update) with the
state donated, so XLA updates parameters in place; the batch is gathered
inside the same jitted step from data that is resident on the device
(``input: device``, the only input offered: JAX has no per-step host path
worth measuring here); bf16 compute with float32 parameters; loss and
correct predictions summed on the device and read once per epoch.

Data parallelism (``gpus > 1``) is ``jit`` over a ``jax.sharding.Mesh`` (no
pmap): the data is sharded on its batch axis (each device holds its own rows
and gathers its own part of every batch), parameters and optimiser state are
replicated, and XLA's SPMD partitioner inserts the gradient all-reduce.
workload.batch_size is per device; images per second are global.
EDGEBENCH_VIRTUAL_CPU_DEVICES=1 runs the mesh on CPU devices (CI, with
XLA_FLAGS=--xla_force_host_platform_device_count=N).

The models are runner/jax_models.py, matched to keras_models.py. Streamed
datasets (ImageNet folders) and fp16 are not offered (Unsupported).
"""

import os
import threading

from . import datasets, jax_models, protocol
from .backend import Backend, Loaded
from .catalogue import DATASETS
from .errors import Unsupported
from .keras3 import configure_memory, one_device_data_parallel

SEED = 0


def jax_accelerators(kind):
    """(count, sentence) of the JAX devices of `kind` ('gpu' or 'cpu')."""
    import jax

    try:
        found = jax.devices(kind)
    except RuntimeError:  # no such platform in this jaxlib
        found = []
    everything = jax.devices()
    if kind == "gpu" and not found:
        return 0, "JAX %s sees platform %s only (devices: %s)" % (
            jax.__version__, ", ".join(sorted(set(d.platform for d in everything))),
            ", ".join(str(d) for d in everything))
    return len(found), "JAX %s sees %d %s device(s): %s" % (
        jax.__version__, len(found), kind, ", ".join(str(d) for d in found) or "none")


class Completions(object):
    """Batch ends at the time each step's result is ready, not when it was dispatched.

    jit dispatch is asynchronous and JAX does not throttle it, so a loop that
    reported a batch at dispatch would time the Python loop (the steps then
    all "end" together at the epoch's sync). One thread waits for each step's
    loss in order and reports it to the timer (``threaded``, as Keras's async
    callbacks do), leaving the dispatching thread free to queue the next step.
    """

    def __init__(self, timer, images):
        import queue

        self.timer = timer
        self.images = images
        self.queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="jax-completions")
        self.thread.daemon = True
        self.thread.start()

    def _run(self):
        while True:
            loss = self.queue.get()
            try:
                if loss is None:
                    return
                loss.block_until_ready()
                self.timer.batch_end(images=self.images, loss=loss, threaded=True)
            finally:
                self.queue.task_done()

    def put(self, loss):
        self.queue.put(loss)

    def drain(self):
        """Wait until every queued step has been reported."""
        self.queue.join()

    def close(self):
        self.queue.put(None)
        self.thread.join()


class JaxBackend(Backend):
    requirements = (("jax", ("jax",)), ("jaxlib", ("jaxlib",)), ("flax", ("flax",)), ("optax", ("optax",)))
    inputs = ("device",)

    def __init__(self, ctx):
        Backend.__init__(self, ctx)
        self.jax = None
        self.pending = None  # the newest result of a dispatched step: what a sync waits for
        self.devices = []
        self.mesh = None

    def check(self):
        ctx = self.ctx
        if datasets.is_streamed(ctx.dataset, ctx.synthetic):
            raise Unsupported("native JAX trains on in-memory or synthetic data only (set workload.synthetic)",
                              field="workload.dataset")
        if ctx.precision not in ("fp32", "bf16"):
            raise Unsupported("native JAX runs fp32 or bf16 (no fp16 loss scaling here)", field="precision")
        if ctx.data_format == "channels_first":
            raise Unsupported("native JAX (Flax) convolutions take NHWC: channels_last only", field="data_format")
        if ctx.compile is False:
            raise Unsupported("native JAX always compiles its step with jax.jit (XLA)", field="compile")

    def setup(self):
        self.memory_desc = configure_memory("jax", self.ctx)
        import jax

        self.jax = jax

    def versions(self):
        import flax
        import jaxlib
        import numpy
        import optax

        return {"jax": self.jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
                "optax": optax.__version__, "numpy": numpy.__version__}

    def device_kind(self):
        return "cpu" if os.environ.get("EDGEBENCH_VIRTUAL_CPU_DEVICES") == "1" else "gpu"

    def accelerators(self):
        return jax_accelerators(self.device_kind())

    def place(self):
        jax, ctx = self.jax, self.ctx
        if ctx.gpus > 1 or (ctx.gpus == 1 and one_device_data_parallel()):
            self.devices = jax.devices(self.device_kind())[:ctx.gpus]
            self.mesh = jax.sharding.Mesh(self.devices, ("batch",))
            ctx.replicas = len(self.devices)
            ctx.placement = "jit over a Mesh of %d %s devices (batch-sharded data, replicated parameters)" % (
                len(self.devices), self.device_kind())
        else:
            self.devices = [jax.devices()[0]]

    def timer_sync(self):
        return self._sync

    def _sync(self):
        if self.pending is not None:
            self.jax.block_until_ready(self.pending)

    def _sharding(self, ndim, sharded):
        """NamedSharding over the mesh: the first axis over 'batch' (sharded) or replicated; None: one device."""
        if self.mesh is None:
            return None
        from jax.sharding import NamedSharding, PartitionSpec

        if not sharded:
            return NamedSharding(self.mesh, PartitionSpec())  # replicated, any rank
        return NamedSharding(self.mesh, PartitionSpec("batch", *((None,) * (ndim - 1))))

    def load(self):
        """The data on the device(s) once, as (devices, rows per device, ...): each device its own rows."""
        import numpy as np

        jax, ctx = self.jax, self.ctx
        x, y, source = datasets.load(ctx.dataset, ctx.dataset_root, ctx.synthetic, ctx.samples)
        n_dev = len(self.devices)
        pbs = ctx.per_device_batch_size
        gbs = pbs * n_dev
        nb = len(x) // gbs
        if nb < 1:
            raise Unsupported("workload.batch_size %d x %d devices exceeds the %d samples available" % (
                pbs, n_dev, len(x)), field="workload.batch_size")
        rows = nb * pbs
        xs = np.ascontiguousarray(x[:rows * n_dev]).reshape((n_dev, rows, *tuple(x.shape[1:])))
        ys = np.asarray(y[:rows * n_dev], dtype="int32").reshape((n_dev, rows))
        if self.mesh is None:
            self.xd, self.yd = jax.device_put(xs, self.devices[0]), jax.device_put(ys, self.devices[0])
        else:
            self.xd = jax.device_put(xs, self._sharding(xs.ndim, True))
            self.yd = jax.device_put(ys, self._sharding(ys.ndim, True))
        jax.block_until_ready((self.xd, self.yd))
        self.rows, self.nb, self.pbs = rows, nb, pbs
        self.rng = np.random.RandomState(SEED)
        self.data_desc = "device-resident (%s, %.0f MB%s), gathered inside the jitted step" % (
            "sharded over %d devices" % n_dev if self.mesh is not None else "on %s" % self.devices[0],
            (x[:rows * n_dev].nbytes + ys.nbytes) / 1e6, "" if n_dev == 1 else ", %d rows each" % rows)
        return Loaded(source, rows * n_dev)

    def _dtype(self):
        import jax.numpy as jnp

        return jnp.bfloat16 if self.ctx.precision == "bf16" else jnp.float32

    def build(self):
        """A fresh model and its jitted step functions (compiled at the first call, in the warm-up epoch)."""
        import jax.numpy as jnp
        import optax

        jax, ctx = self.jax, self.ctx
        wl = ctx.workload
        info = DATASETS[ctx.dataset]
        name = wl["model"]
        model = jax_models.build(name, info["classes"], self._dtype())
        h, w, c = info["shape"]
        variables = model.init(jax.random.PRNGKey(SEED), jnp.zeros((1, h, w, c), jnp.float32), train=False)
        params = variables["params"]
        batch_stats = variables.get("batch_stats", {})
        tx = jax_models.optimizer(wl["optimizer"], wl["learning_rate"])
        opt_state = tx.init(params)
        state = (params, batch_stats, opt_state)
        has_bn = bool(batch_stats)

        def gather(xd, yd, rows):
            xb = jnp.take(xd, rows, axis=1)
            yb = jnp.take(yd, rows, axis=1)
            return xb.reshape((-1, *xb.shape[2:])), yb.reshape((-1,))

        def loss_fn(params, batch_stats, xb, yb):
            variables = {"params": params}
            if has_bn:
                variables["batch_stats"] = batch_stats
                logits, updates = model.apply(variables, xb, train=True, mutable=["batch_stats"])
                new_stats = updates["batch_stats"]
            else:
                logits, new_stats = model.apply(variables, xb, train=True), batch_stats
            logits = logits.astype(jnp.float32)  # the softmax in float32, as keras_models does under mixed
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
            loss = loss + jax_models.l2_penalty(name, params)
            return loss, (logits, new_stats)

        def train_step(state, totals, xd, yd, rows):
            params, batch_stats, opt_state = state
            xb, yb = gather(xd, yd, rows)
            (loss, (logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, batch_stats, xb, yb)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            correct = jnp.sum(jnp.argmax(logits, axis=-1) == yb)
            totals = (totals[0] + loss, totals[1] + correct)
            return (params, new_stats, opt_state), totals, loss

        def infer_step(state, xd, yd, rows):
            params, batch_stats, _ = state
            xb, _ = gather(xd, yd, rows)
            variables = {"params": params}
            if has_bn:
                variables["batch_stats"] = batch_stats
            return model.apply(variables, xb, train=False)

        if self.mesh is not None:
            replicated = self._sharding(1, False)
            state = jax.device_put(state, replicated)
            data_x, data_y = self._sharding(self.xd.ndim, True), self._sharding(self.yd.ndim, True)
            self.step = jax.jit(train_step, donate_argnums=(0, 1),
                                in_shardings=(replicated, replicated, data_x, data_y, replicated),
                                out_shardings=(replicated, replicated, replicated))
            self.predict = jax.jit(infer_step, in_shardings=(replicated, data_x, data_y, replicated),
                                   out_shardings=self._sharding(2, True))
        else:
            state = jax.device_put(state, self.devices[0])
            self.step = jax.jit(train_step, donate_argnums=(0, 1))
            self.predict = jax.jit(infer_step)
        self.n_params = sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
        return state

    def _zeros(self):
        import jax.numpy as jnp

        totals = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
        if self.mesh is not None:
            return self.jax.device_put(totals, self._sharding(1, False))
        return self.jax.device_put(totals, self.devices[0])

    def _epoch_rows(self):
        """This epoch's row indices per batch, (batches, per-device batch) int32: a fresh permutation."""
        perm = self.rng.permutation(self.rows)[:self.nb * self.pbs].astype("int32")
        return perm.reshape(self.nb, self.pbs)

    def _steps(self):
        return self.ctx.steps_per_epoch or self.nb

    def train(self, model, timer):
        state = model
        gbs = self.ctx.global_batch_size
        steps = self._steps()
        done = Completions(timer, gbs)
        try:
            for epoch in timer.epoch_numbers():
                timer.epoch_begin(epoch)
                table = self._epoch_rows()
                totals = self._zeros()
                for i in range(steps):
                    state, totals, loss = self.step(state, totals, self.xd, self.yd, table[i % self.nb])
                    self.pending = loss
                    done.put(loss)
                loss_sum, correct = (float(v) for v in totals)  # waits for the epoch's last step
                done.drain()
                self.pending = None
                timer.epoch_end(loss=loss_sum / steps, accuracy=correct / float(steps * gbs))
        finally:
            done.close()
        last = timer.epoch_stats[-1] if timer.epoch_stats else {}
        return last.get("loss"), last.get("accuracy")

    def infer(self, model, timer):
        """Per-batch latency with a sync after every batch; warm-up passes excluded."""
        steps = self._steps()
        for epoch in timer.epoch_numbers():
            timer.epoch_begin(epoch)
            table = self._epoch_rows()
            for i in range(steps):
                self.jax.block_until_ready(self.predict(model, self.xd, self.yd, table[i % self.nb]))
                timer.batch_end()
            timer.epoch_end()

    def knobs(self):
        jax = self.jax
        knobs = {
            "device": self.ctx.placement or str(self.devices[0]),
            "precision": "bf16 compute, float32 parameters" if self.ctx.precision == "bf16" else "fp32",
            "compile": "jax.jit (XLA), state donated",
            "data_format": "channels_last (NHWC)",
            "data": self.data_desc,
            "input": "device",
            "memory": self.memory_desc,
            "default_backend": jax.default_backend(),
            "parameters": str(getattr(self, "n_params", 0)),
        }
        if os.environ.get("XLA_FLAGS"):
            knobs["xla_flags"] = os.environ["XLA_FLAGS"]
        try:
            stats = self.devices[0].memory_stats() or {}
        except Exception:  # noqa: BLE001 - not every platform reports memory
            stats = {}
        if "peak_bytes_in_use" in stats:
            knobs["peak_allocated_bytes"] = str(stats["peak_bytes_in_use"])
        return knobs

    def devices_used(self):
        jax = self.jax
        platform = jax.default_backend() if self.mesh is None else self.devices[0].platform
        kind = "cpu" if platform == "cpu" else ("gpu" if platform in ("gpu", "cuda", "rocm") else "other")
        return protocol.devices_used("jax", kind, [str(d) for d in self.devices],
                                     "JAX %s (Flax), %s" % (jax.__version__, self.ctx.placement or
                                                            "one device: %s" % self.devices[0]))
