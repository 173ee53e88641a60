"""Where native torch runs: a Placement per process (runner/torch_native.py).

SingleDevice (the CPU, or cuda:0), or Distributed for ``gpus > 1``:
DistributedDataParallel with one process per GPU (NCCL; gloo on the CPU). The
runner process becomes rank 0 and starts ranks 1..N-1 as child processes of
its own (same process group, so cancelling kills them all), from the same job
file (RunContext.job_path); their protocol output goes to /dev/null, only
rank 0 speaks.
"""

import os
import socket
import subprocess
import sys


class SingleDevice(object):
    """One process on one device (the CPU, or cuda:0)."""

    world_size = 1
    rank = 0

    def __init__(self, torch, device):
        self.torch = torch
        self.device = device
        self.is_cuda = device.type == "cuda"

    def sync(self):
        if self.is_cuda:
            self.torch.cuda.synchronize(self.device)

    def timer_sync(self):
        """What RunTimer calls before it reads the clock (None on the CPU: nothing is queued)."""
        return self.sync if self.is_cuda else None

    def wrap(self, model):
        return model

    def shard(self, order):
        return order

    def reduce_sum(self, tensor):
        return tensor

    def describe(self):
        return str(self.device)


class Distributed(SingleDevice):
    """One process per device under torch.distributed (DistributedDataParallel)."""

    def __init__(self, torch, device, rank, world_size):
        SingleDevice.__init__(self, torch, device)
        self.rank = rank
        self.world_size = world_size

    def timer_sync(self):
        # an epoch ends when every rank has finished its share
        def sync():
            self.sync()
            self.torch.distributed.barrier()

        return sync

    def wrap(self, model):
        from torch.nn.parallel import DistributedDataParallel

        if self.is_cuda:
            return DistributedDataParallel(model, device_ids=[self.device.index])
        return DistributedDataParallel(model)

    def shard(self, order):
        return order[self.rank::self.world_size]

    def reduce_sum(self, tensor):
        self.torch.distributed.all_reduce(tensor)
        return tensor

    def describe(self):
        backend = self.torch.distributed.get_backend()
        return "DistributedDataParallel, %d processes (%s), rank %d on %s" % (
            self.world_size, backend, self.rank, self.device)


def world_size_for(ctx):
    """Processes to train with: gpus, or EDGEBENCH_CPU_WORLD_SIZE on the CPU (CI's gloo test)."""
    if ctx.gpus == 0:
        return int(os.environ.get("EDGEBENCH_CPU_WORLD_SIZE", "1"))
    return ctx.gpus


def placement_for(torch, ctx):
    """The Placement of this process (rank EDGEBENCH_RANK of a world > 1); the GPU check is done."""
    gpus = ctx.gpus
    world = world_size_for(ctx)
    if world > 1:
        rank = int(os.environ["EDGEBENCH_RANK"])
        if gpus:
            device = torch.device("cuda", rank)
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        torch.distributed.init_process_group("nccl" if gpus else "gloo", rank=rank, world_size=world)
        return Distributed(torch, device, rank, world)
    if gpus == 0:
        return SingleDevice(torch, torch.device("cpu"))
    return SingleDevice(torch, torch.device("cuda", 0))


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def launch_ranks(ctx, world):
    """Rank 0 (this process) starts ranks 1..world-1 with the same job; returns their Popen objects."""
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    os.environ["EDGEBENCH_RANK"] = "0"
    procs = []
    for rank in range(1, world):
        env = dict(os.environ, EDGEBENCH_RANK=str(rank))
        procs.append(subprocess.Popen(
            # __package__: "runner" in the agent's private copy and the images;
            # the same job file: every rank reads the same spec
            [sys.executable, "-m", __package__, "--job", ctx.job_path, "--dataset-root", ctx.dataset_root],
            env=env, stdout=subprocess.DEVNULL))
    return procs


def torch_accelerators():
    """(CUDA devices torch sees, a sentence in torch's terms)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count:
        names = ", ".join("cuda:%d %s" % (i, torch.cuda.get_device_name(i)) for i in range(count))
        return count, "torch %s sees %d CUDA device(s): %s" % (torch.__version__, count, names)
    build = ("CUDA %s build" % torch.version.cuda) if torch.version.cuda else "a CPU-only build"
    return 0, "torch %s (%s) sees no CUDA device" % (torch.__version__, build)
