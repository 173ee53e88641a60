"""Native PyTorch: the hand-tuned reference loop that the Keras backends are measured against.

Best practice, each knob reported as it was in force: channels_last memory
format on CUDA (channels_first on the CPU unless the job asks), autocast for
bf16/fp16 with a GradScaler for fp16, optional torch.compile, cudnn.benchmark,
fused optimisers where the build has them, in-memory data resident on the
device, streamed batches pinned by the loader's threads and copied
non_blocking. Optimisers use Keras's default hyper-parameters (Adam and
RMSprop epsilon 1e-7, RMSprop rho 0.9) so the comparison with Keras is fair.

Where the model runs is a Placement (runner/torch_placement.py): one device,
or DistributedDataParallel with one process per GPU for ``gpus > 1``; the
batches come from runner/torch_data.py. workload.batch_size is per process
(per GPU); images per second are global.
"""

import os

from . import datasets, protocol, torch_models
from .backend import Backend, Loaded
from .catalogue import DATASETS
from .errors import Unsupported
from .torch_data import InMemory, Streamed
from .torch_placement import launch_ranks, placement_for, torch_accelerators, world_size_for

# Keras's defaults (keras.optimizers.Adam / RMSprop), not torch's (1e-8, alpha 0.99).
KERAS_ADAM = {"betas": (0.9, 0.999), "eps": 1e-7}
KERAS_RMSPROP = {"alpha": 0.9, "eps": 1e-7, "momentum": 0.0, "centered": False}


def library_versions(torch, streamed):
    versions = {"torch": torch.__version__}
    import numpy

    versions["numpy"] = numpy.__version__
    if torch.version.cuda:
        versions["cuda"] = torch.version.cuda
    if torch.backends.cudnn.is_available():
        versions["cudnn"] = str(torch.backends.cudnn.version())
    if streamed:
        try:
            import PIL

            versions["pillow"] = PIL.__version__
        except ImportError:
            pass
    return versions


def configure_memory(torch, placement, ctx):
    """Map the job's memory policy onto the CUDA caching allocator; return what is in force."""
    policy = ctx.memory_policy
    frac = ctx.memory_fraction
    if not placement.is_cuda:
        return "cpu: host memory (memory_policy %s does not apply)" % policy
    device = placement.device
    if policy in ("fraction", "preallocate"):
        torch.cuda.set_per_process_memory_fraction(float(frac), device)
        if policy == "preallocate":
            total = torch.cuda.get_device_properties(device).total_memory
            block = torch.empty(int(total * float(frac) * 0.95), dtype=torch.uint8, device=device)
            del block  # freed to the caching allocator, which keeps it reserved for this process
            return "torch: preallocated %.0f%% of device memory into the caching allocator" % (
                95 * float(frac))
        return "torch: caching allocator on demand, capped at fraction %s" % frac
    return "torch: caching allocator, on demand (memory_policy %s)" % policy


def optimizer_for(torch, name, groups, learning_rate, placement):
    """Keras-equivalent optimiser; fused kernels where the build supports them."""
    if name == "adam":
        cls, kwargs = torch.optim.Adam, dict(KERAS_ADAM)
    elif name == "rmsprop":
        cls, kwargs = torch.optim.RMSprop, dict(KERAS_RMSPROP)
    elif name == "sgd":
        cls, kwargs = torch.optim.SGD, {"momentum": 0.0}
    else:
        raise Unsupported("unknown optimizer %r" % name)
    for impl in ("fused", "foreach"):
        try:
            return cls(groups, lr=learning_rate, **dict(kwargs, **{impl: True})), impl
        except (RuntimeError, TypeError, ValueError):
            continue  # not in this build or not for this device
    return cls(groups, lr=learning_rate, **kwargs), "for-loop"


class Precision(object):
    """autocast + GradScaler for one precision setting."""

    DTYPES = {"bf16": "bfloat16", "fp16": "float16"}

    def __init__(self, torch, precision, device):
        self.torch = torch
        self.device_type = device.type
        self.dtype = getattr(torch, self.DTYPES[precision]) if precision in self.DTYPES else None
        self.scaler = None
        if precision == "fp16":
            self.scaler = torch.amp.GradScaler(device.type)

    def autocast(self):
        if self.dtype is None:
            return self.torch.autocast(self.device_type, enabled=False)
        return self.torch.autocast(self.device_type, dtype=self.dtype)

    def describe(self):
        if self.dtype is None:
            return "fp32 (no autocast)"
        return "autocast %s%s" % (self.dtype, ", GradScaler" if self.scaler else "")


class TorchBackend(Backend):
    requirements = (("torch", ("torch",)),)
    inputs = ("device",)  # in-memory data is resident on the device (torch_data.InMemory)

    def __init__(self, ctx):
        Backend.__init__(self, ctx)
        self.torch = None
        self.placement = None
        self.source = None
        self.ranks = []
        self.opt_impl = None

    def setup(self):
        import torch

        self.torch = torch

    def versions(self):
        ctx = self.ctx
        return library_versions(self.torch, datasets.is_streamed(ctx.dataset, ctx.synthetic))

    def accelerators(self):
        return torch_accelerators()

    def place(self):
        torch, ctx = self.torch, self.ctx
        world = world_size_for(ctx)
        if world > 1 and "EDGEBENCH_RANK" not in os.environ:
            self.ranks = launch_ranks(ctx, world)
        self.placement = placement = placement_for(torch, ctx)
        ctx.replicas = placement.world_size
        ctx.placement = placement.describe()
        self.memory_desc = configure_memory(torch, placement, ctx)
        if placement.is_cuda:
            # fixed shapes every step: let cuDNN pick its fastest algorithms once
            torch.backends.cudnn.benchmark = True
        torch.manual_seed(0)
        self.data_format = ctx.data_format or ("channels_last" if placement.is_cuda else "channels_first")
        self.memory_format = torch.channels_last if self.data_format == "channels_last" else torch.contiguous_format
        self.precision = Precision(torch, ctx.precision, placement.device)
        self.compiled = bool(ctx.compile)

    def timer_sync(self):
        return self.placement.timer_sync()

    def load(self):
        """In memory (resident on the device), or streamed (ImageNet folders)."""
        from . import imagenet

        torch, ctx, placement = self.torch, self.ctx, self.placement
        bs = ctx.per_device_batch_size
        if datasets.is_streamed(ctx.dataset, ctx.synthetic):
            stream = imagenet.ImageFolderStream(ctx.dataset_root, bs, samples=ctx.samples,
                                                rank=placement.rank, world_size=placement.world_size)
            if ctx.infer:
                # decoded up front so that latency is the model's alone
                x, y = imagenet.infer_arrays(stream, ctx.samples)
                self.source = InMemory(torch, placement, x, y, bs, self.memory_format)
                return Loaded("real", len(x))
            self.source = Streamed(torch, placement, stream, self.memory_format)
            return Loaded("real", stream.total_samples)
        x, y, source = datasets.load(ctx.dataset, ctx.dataset_root, ctx.synthetic, ctx.samples)
        if len(x) < bs:
            raise Unsupported("workload.batch_size %d exceeds the %d samples available" % (bs, len(x)))
        self.source = InMemory(torch, placement, x, y, bs, self.memory_format)
        return Loaded(source, len(x))

    def build(self):
        ctx, torch = self.ctx, self.torch
        info = DATASETS[ctx.dataset]
        model = torch_models.build(ctx.workload["model"], info["shape"], info["classes"])
        model = model.to(self.placement.device, memory_format=self.memory_format)
        if ctx.infer:
            model.eval()
            return torch.compile(model) if self.compiled else model
        wl = ctx.workload
        decayed = torch_models.l2_regularised(model, wl["model"])
        decayed_ids = set(id(p) for p in decayed)
        groups = [{"params": [p for p in model.parameters() if id(p) not in decayed_ids]}]
        if decayed:
            groups.append({"params": decayed, "weight_decay": torch_models.L2_WEIGHT_DECAY})
        opt, self.opt_impl = optimizer_for(torch, wl["optimizer"], groups, wl["learning_rate"], self.placement)
        net = self.placement.wrap(model)
        if self.compiled:
            net = torch.compile(net)
        net.train()
        return net, opt

    def _steps(self):
        steps = self.ctx.steps_per_epoch or self.source.n_batches
        if steps < 1:
            raise Unsupported("workload.batch_size %d exceeds the samples available"
                              % self.ctx.per_device_batch_size)
        return steps

    def train(self, model, timer):
        """Epochs of steps; loss and accuracy summed on the device, read once per epoch."""
        import torch.nn.functional as F

        torch, placement = self.torch, self.placement
        net, opt = model
        bs = self.ctx.per_device_batch_size
        global_bs = self.ctx.global_batch_size  # images per step, all ranks together
        scaler = self.precision.scaler
        steps = self._steps()
        batches = self.source.batches(shuffle=True)
        for epoch in timer.epoch_numbers():
            timer.epoch_begin(epoch)
            # summed on the device; read once per epoch so that no step waits for the GPU
            loss_sum = torch.zeros((), device=placement.device)
            correct = torch.zeros((), device=placement.device, dtype=torch.long)
            for _ in range(steps):
                xb, yb = next(batches)
                opt.zero_grad(set_to_none=True)
                with self.precision.autocast():
                    out = net(xb)
                    loss = F.cross_entropy(out, yb)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
                loss_sum += loss.detach()
                correct += (out.detach().argmax(1) == yb).sum()
                # a tensor: RunTimer reads it (a device sync) only when it emits progress, ~1/s
                timer.batch_end(images=global_bs, loss=loss.detach())
            totals = placement.reduce_sum(torch.stack([loss_sum.float(), correct.float()])).tolist()
            n_batches = steps * placement.world_size
            timer.epoch_end(loss=totals[0] / n_batches, accuracy=totals[1] / (n_batches * bs))
        last = timer.epoch_stats[-1] if timer.epoch_stats else {}
        return last.get("loss"), last.get("accuracy")

    def infer(self, model, timer):
        """Per-batch latency with a device sync after every batch; warm-up passes excluded."""
        steps = self._steps()
        batches = self.source.batches(shuffle=False)
        with self.torch.inference_mode():
            for epoch in timer.epoch_numbers():
                timer.epoch_begin(epoch)
                for _ in range(steps):
                    xb, _ = next(batches)
                    with self.precision.autocast():
                        model(xb)
                    self.placement.sync()
                    timer.batch_end()
                timer.epoch_end()

    def knobs(self):
        torch, placement = self.torch, self.placement
        knobs = {
            "device": placement.describe() if placement.world_size > 1 else str(placement.device),
            "data_format": self.data_format,
            "memory_format": "channels_last" if self.data_format == "channels_last" else "contiguous (NCHW)",
            "precision": self.precision.describe(),
            "compile": "torch.compile (default mode)" if self.compiled else "eager",
            "torch_threads": str(torch.get_num_threads()),
            "data": self.source.describe(),
            "memory": self.memory_desc,
        }
        if placement.is_cuda:
            knobs["cudnn_benchmark"] = str(bool(torch.backends.cudnn.benchmark))
            # whether fp32 convolutions and matmuls may use TF32 differs per framework: say which
            knobs["tf32_matmul"] = str(bool(torch.backends.cuda.matmul.allow_tf32))
            knobs["tf32_cudnn"] = str(bool(torch.backends.cudnn.allow_tf32))
        if self.opt_impl is not None:
            knobs["optimizer_impl"] = self.opt_impl
        if placement.is_cuda:
            knobs["peak_allocated_bytes"] = str(torch.cuda.max_memory_allocated(placement.device))
            knobs["peak_reserved_bytes"] = str(torch.cuda.max_memory_reserved(placement.device))
        return knobs

    def devices_used(self):
        placement = self.placement
        # one process per device: rank r on cuda:r (SingleDevice: cuda:0), or every rank on the CPU
        devices = ["cuda:%d" % i for i in range(placement.world_size)] if placement.is_cuda else ["cpu"]
        return protocol.devices_used("torch", "gpu" if placement.is_cuda else "cpu", devices,
                                     "torch %s; %s" % (self.torch.__version__, placement.describe()))

    def close(self):
        torch = self.torch
        if self.source is not None and hasattr(self.source, "close"):
            self.source.close()
        if torch is not None and self.placement is not None and self.placement.world_size > 1 \
                and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        failed = [proc.returncode for proc in self.ranks if proc.wait() != 0]
        if failed:
            raise Unsupported("DDP rank exited with status %d (its stderr is in the job log)" % failed[0])
