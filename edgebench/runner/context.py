"""RunContext: everything one run of the runner knows, passed explicitly.

It replaces the private keys that used to travel inside the wire dict
(``spec["_build"]``, ``spec["_job_path"]``, ...): the job spec as read from
JOB.json (never modified), where the datasets and the job file are, the
emitter, and the typed fields every backend reads. A backend that spreads a
job over several devices sets ``replicas`` (data-parallel replicas, each taking
``workload.batch_size`` images per step) and ``placement`` (a sentence).
"""

from .errors import Unsupported


class RunContext(object):
    def __init__(self, spec, dataset_root, job_path, emitter):
        self.spec = spec
        self.dataset_root = dataset_root
        self.job_path = job_path  # DDP ranks start from the same file
        self.emitter = emitter
        self.backend = spec["backend"]
        self.mode = spec.get("mode", "train")
        self.workload = spec["workload"]
        self.gpus = int(spec.get("gpus") or 0)
        self.precision = spec.get("precision") or "fp32"
        self.data_format = spec.get("data_format")  # None: the backend's default
        self.compile = spec.get("compile")  # None: the backend's default
        self.input = spec.get("input")  # where in-memory data is batched: host, device; None: the default
        self.memory_policy = spec.get("memory_policy") or "default"
        self.memory_fraction = spec.get("memory_fraction")
        self.warmup_epochs = int(spec.get("warmup_epochs", 1))
        self.repeats = int(spec.get("repeats", 1))
        # the shortest window the job accepts (None on the wire, or absent: no minimum)
        self.min_batches = int(spec.get("min_batches") or 0)
        self.min_window_s = float(spec.get("min_window_s") or 0.0)
        self.replicas = 1
        self.placement = ""

    # -- the workload -------------------------------------------------------------
    @property
    def infer(self):
        return self.mode == "infer"

    @property
    def epochs(self):
        return int(self.workload["epochs"])

    @property
    def per_device_batch_size(self):
        return int(self.workload["batch_size"])

    @property
    def global_batch_size(self):
        """Images per step over every replica: what img/s counts."""
        return self.per_device_batch_size * self.replicas

    @property
    def dataset(self):
        return self.workload["dataset"]

    @property
    def synthetic(self):
        return bool(self.workload.get("synthetic", False))

    @property
    def samples(self):
        return self.workload.get("samples")

    @property
    def steps_per_epoch(self):
        return self.workload.get("steps_per_epoch")

    def check_measured(self):
        """Raise Unsupported when no epoch would be measured (the schema allows it for inference)."""
        if self.warmup_epochs >= self.epochs:
            raise Unsupported("workload.epochs (%d) must exceed warmup_epochs (%d) so that one pass is "
                              "measured (mode %s)" % (self.epochs, self.warmup_epochs, self.mode),
                              field="warmup_epochs")
