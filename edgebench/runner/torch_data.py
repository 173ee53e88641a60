"""Batches for native torch: in memory on the device, or streamed from image folders."""


class InMemory(object):
    """Samples held as one NCHW tensor on the training device (host memory on the CPU)."""

    def __init__(self, torch, placement, x, y, batch_size, memory_format, seed=0):
        self.torch = torch
        self.placement = placement
        device = placement.device
        # NHWC numpy seen as NCHW is already channels_last in memory: to() keeps the format asked
        xt = torch.from_numpy(x).permute(0, 3, 1, 2)
        self.x = xt.to(device).contiguous(memory_format=memory_format)
        self.y = torch.from_numpy(y).to(device=device, dtype=torch.long)
        self.batch_size = batch_size
        self.memory_format = memory_format
        # each rank takes every world_size-th sample of a shared permutation
        self.n_batches = len(x) // (batch_size * placement.world_size)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def describe(self):
        return "resident on %s" % self.placement.device

    def batches(self, shuffle):
        """Endless full batches; a fresh permutation per pass when shuffling (as Keras fit does)."""
        torch = self.torch
        bs = self.batch_size
        n = self.n_batches * bs * self.placement.world_size
        while True:
            if shuffle:
                order = torch.randperm(len(self.x), device=self.x.device, generator=self.generator)[:n]
                order = self.placement.shard(order)
                for k in range(self.n_batches):
                    idx = order[k * bs:(k + 1) * bs]
                    yield (self.x.index_select(0, idx).contiguous(memory_format=self.memory_format),
                           self.y.index_select(0, idx))
            else:
                for k in range(self.n_batches):
                    yield self.x[k * bs:(k + 1) * bs], self.y[k * bs:(k + 1) * bs]


class Streamed(object):
    """Batches from runner/imagenet.py; pinned in its worker threads, copied non_blocking."""

    def __init__(self, torch, placement, stream, memory_format):
        self.torch = torch
        self.placement = placement
        self.stream = stream
        self.memory_format = memory_format
        self.n_batches = max(1, len(stream) // stream.batch_size)  # the stream wraps around
        pin = placement.is_cuda

        def to_tensors(x, y):
            xt = torch.from_numpy(x).permute(0, 3, 1, 2)
            yt = torch.from_numpy(y).long()
            if pin:
                xt, yt = xt.pin_memory(), yt.pin_memory()
            return xt, yt

        stream.transform = to_tensors

    def describe(self):
        how = "pinned host batches, non_blocking copies" if self.placement.is_cuda else "host batches"
        return "streamed (%s), %s" % (self.stream.describe(), how)

    def batches(self, shuffle):
        device = self.placement.device
        for xt, yt in self.stream:
            yield (xt.to(device, non_blocking=True).contiguous(memory_format=self.memory_format),
                   yt.to(device, non_blocking=True))

    def close(self):
        self.stream.close()
