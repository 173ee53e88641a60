"""Device-resident input for Keras 3 ``fit`` (JobSpec ``input: device``).

Keras ``fit`` on NumPy arrays slices every batch on the host and copies it to
the device: 256 x 224 x 224 x 3 float32 is 154 MB a step, about 20 GB/s at
3,200 img/s on an H200 (docs/PERFORMANCE.md). Here in-memory and synthetic
arrays are copied to the device once, and each step's batch is gathered there:

- JAX: the arrays live as one ``jax.Array`` of shape (devices, samples per
  device, ...), sharded on its first axis over the devices of the job's
  ``keras.distribution.DataParallel`` (one device without one). A jitted
  gather takes the same rows on every device and merges the first two axes,
  so each batch comes out sharded exactly as Keras lays out a data batch
  (``distribution.get_data_layout``): Keras's own ``device_put`` of it is then
  a no-op and no batch crosses between devices.
- torch: tensors on Keras's device, indexed there.
- TensorFlow: a ``tf.data`` pipeline with ``prefetch_to_device`` on a single
  GPU (TF's documented way; its dataset ops run on the host, so the copy is
  overlapped with compute rather than removed); under MirroredStrategy Keras
  distributes the dataset itself.

Every epoch draws a new permutation (a seeded NumPy generator on the host,
pbs int32 indices per step, about 1 KB), as ``fit(shuffle=True)`` does on the
host path, so both paths see the same kind of batches.

The framework is imported inside functions, as everywhere in runner/.
"""

SEED = 0


def device_dataset(keras, backend, x, y, batch_size, steps, distributed=False):
    """(what fit takes, batches per epoch, its description) for arrays x, y made resident on the device.

    steps: batches per epoch (cycling over the data), or None for one pass.
    distributed: a TensorFlow strategy will distribute the dataset (no prefetch_to_device).
    """
    nb = len(x) // batch_size
    steps = steps or nb
    if backend == "jax":
        data, desc = _jax(keras, x, y, batch_size, steps)
    elif backend == "torch":
        data, desc = _torch(keras, x, y, batch_size, steps)
    elif backend == "tensorflow":
        data, desc = _tensorflow(x, y, batch_size, distributed)
    else:
        raise ValueError("no device input for Keras backend %r" % backend)
    return data, steps, desc


def _base(keras):
    return getattr(keras.utils, "PyDataset", None) or keras.utils.Sequence


class _Permutations(object):
    """Row indices per batch, redrawn each epoch: (steps, per_device_batch) int32."""

    def __init__(self, rows, per_device_batch, steps):
        import numpy as np

        self.np = np
        self.rows = rows
        self.pbs = per_device_batch
        self.steps = steps
        self.rng = np.random.RandomState(SEED)
        self.nb = rows // per_device_batch
        self.table = None
        self.redraw()

    def redraw(self):
        perm = self.rng.permutation(self.rows)[:self.nb * self.pbs].astype("int32")
        self.table = perm.reshape(self.nb, self.pbs)

    def rows_for(self, i):
        return self.table[i % self.nb]


def _jax(keras, x, y, batch_size, steps):
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec

    distribution = keras.distribution.distribution()
    if distribution is not None:
        batch_layout = distribution.get_data_layout((batch_size, *tuple(x.shape[1:]))).backend_layout
        mesh = batch_layout.mesh
        axis = distribution.batch_dim_name
        n_dev = mesh.shape[axis]
    else:
        mesh, axis, n_dev = None, None, 1
    if batch_size % n_dev:
        raise ValueError("global batch %d does not split over %d devices" % (batch_size, n_dev))
    pbs = batch_size // n_dev
    per_dev = (len(x) // batch_size) * pbs  # rows each device holds: whole batches only
    xs = x[:per_dev * n_dev].reshape((n_dev, per_dev, *tuple(x.shape[1:])))
    ys = y[:per_dev * n_dev].reshape((n_dev, per_dev, *tuple(y.shape[1:])))

    def take(xd, yd, rows):
        xb = jnp.take(xd, rows, axis=1)
        yb = jnp.take(yd, rows, axis=1)
        return xb.reshape((-1, *xb.shape[2:])), yb.reshape((-1, *yb.shape[2:]))

    if mesh is None:
        # Uncommitted (no device named): committed batches made Keras's train step compile a second time
        # in the first measured epoch (measured: first measured epoch 5 img/s, the next 25, on the CPU; on
        # an H200 the device input read half the host input's img/s, 1,439 vs 3,198). Uncommitted arrays
        # live on the default device all the same.
        device = jax.devices()[0]
        xd, yd = jax.device_put(xs), jax.device_put(ys)
        gather = jax.jit(take)
        where = "on %s" % device
    else:
        def spec(ndim, first):
            return NamedSharding(mesh, PartitionSpec(*((first,) + (None,) * (ndim - 1))))

        xd = jax.device_put(xs, spec(xs.ndim, axis))
        yd = jax.device_put(ys, spec(ys.ndim, axis))
        gather = jax.jit(take, in_shardings=(spec(xs.ndim, axis), spec(ys.ndim, axis), spec(1, None)),
                         out_shardings=(spec(x.ndim, axis), spec(y.ndim, axis)))
        where = "sharded over %d devices (%d rows each)" % (n_dev, per_dev)
    jax.block_until_ready((xd, yd))
    perms = _Permutations(per_dev, pbs, steps)

    class Resident(_base(keras)):
        def __len__(self):
            return steps

        def __getitem__(self, i):
            return gather(xd, yd, perms.rows_for(i))

        def on_epoch_begin(self):
            perms.redraw()

    return Resident(), "device-resident (jax.Array %s, %.0f MB, gathered per step)" % (
        where, (x.nbytes + y.nbytes) / 1e6)


def _torch(keras, x, y, batch_size, steps):
    import torch
    from keras.src.backend.torch.core import get_device

    device = get_device()
    n = (len(x) // batch_size) * batch_size
    xd = torch.from_numpy(x[:n]).to(device)
    yd = torch.from_numpy(y[:n]).to(device)
    perms = _Permutations(n, batch_size, steps)
    table = {}

    def rows(i):
        key = i % perms.nb
        if key not in table:  # one small index tensor per batch and epoch, made on the device
            table[key] = torch.from_numpy(perms.rows_for(i)).long().to(device)
        return table[key]

    class Resident(_base(keras)):
        def __len__(self):
            return steps

        def __getitem__(self, i):
            idx = rows(i)
            return xd.index_select(0, idx), yd.index_select(0, idx)

        def on_epoch_begin(self):
            perms.redraw()
            table.clear()

    return Resident(), "device-resident (torch tensors on %s, %.0f MB, indexed per step)" % (
        device, (x.nbytes + y.nbytes) / 1e6)


def _tensorflow(x, y, batch_size, distributed):
    import tensorflow as tf

    n = (len(x) // batch_size) * batch_size
    ds = tf.data.Dataset.from_tensor_slices((x[:n], y[:n]))
    ds = ds.shuffle(n, seed=SEED, reshuffle_each_iteration=True).batch(batch_size, drop_remainder=True)
    ds = ds.repeat()
    gpus = tf.config.list_logical_devices("GPU")
    if gpus and not distributed:
        ds = ds.apply(tf.data.experimental.prefetch_to_device(gpus[0].name, buffer_size=2))
        where = "prefetch_to_device(%s), copy overlapped" % gpus[0].name
    else:
        ds = ds.prefetch(2)
        where = "prefetch(2)" + (", distributed by the strategy" if distributed else " on the host (no GPU)")
    return ds, "tf.data from memory, %s" % where
