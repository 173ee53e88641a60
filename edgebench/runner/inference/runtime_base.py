"""What every inference runtime adapter is: the system under test of one LoadGen run (runtimes.py has one
adapter per runtime, torch_runtime.py the torch module, keras_jax.py Keras on JAX)."""

class Runtime(object):
    name = "runtime"
    layout = "NCHW"
    static_batch = False  # True: a new batch shape recompiles; the harness pads Offline's last batch

    def __init__(self, settings, precision, artifact, gpus=0):
        self.settings = settings or {}
        self.precision = precision
        self.artifact = artifact
        self.gpus = gpus

    def versions(self):
        return {}

    def load(self, batch_sizes):
        """Build or compile for the batch sizes the scenario will send (others still work)."""

    def stage(self, samples):
        """The query samples where this runtime reads them (before timing, as MLPerf's QSL loads
        them); the SUT indexes what this returns. Default: the host array itself."""
        return samples

    def predict(self, x):
        raise NotImplementedError

    def predict_many(self, batches, done):
        for k, x in enumerate(batches):
            self.predict(x)
            done(k)

    def knobs(self):
        return {}

    def provider(self):
        return ""

    def devices_used(self):
        return {"framework": self.name, "kind": "cpu", "devices": ["cpu"], "detail": ""}

    def model_info(self):
        return self.artifact.info()

    def close(self):
        pass
