"""Typed runner errors; their names travel as the error_type of a FAILED event.

The names are a subset of edgebench.schemas.ErrorType (a test keeps them in
step); RunnerCrash, Interrupted, Lost and Expired are the agent's own.
"""


class RunnerError(Exception):
    error_type = "BackendError"

    def __init__(self, message, field=None):
        # a job field the error is about goes first: "gpus: ..." (the REJECTED convention)
        self.field = field
        Exception.__init__(self, "%s: %s" % (field, message) if field else message)


class DataMissing(RunnerError):
    error_type = "DataMissing"


class OutOfMemory(RunnerError):
    error_type = "OOM"


class Unsupported(RunnerError):
    """What this backend cannot do here; ``field`` names the job field."""

    error_type = "Unsupported"


class Invalid(RunnerError):
    """Something the job names is not what it claims (a corrupt or unknown model artifact)."""

    error_type = "Invalid"


ERROR_TYPES = (RunnerError.error_type, DataMissing.error_type, OutOfMemory.error_type, Unsupported.error_type,
               Invalid.error_type)

_OOM_MARKERS = (
    "out of memory",
    "resource_exhausted",
    "resourceexhausted",
    "oom when allocating",
    "cudnn_status_alloc_failed",
    "cuda_error_out_of_memory",
    "failed to allocate",
)
# exception types that mean OOM whatever their text says (torch.cuda.OutOfMemoryError)
_OOM_TYPES = ("OutOfMemoryError",)


def classify(exc):
    """Map a framework exception to a RunnerError subclass instance."""
    if isinstance(exc, RunnerError):
        return exc
    if isinstance(exc, MemoryError):
        return OutOfMemory("host memory exhausted: %s" % (exc,))
    text = ("%s: %s" % (type(exc).__name__, exc)).lower()
    if type(exc).__name__ in _OOM_TYPES or any(marker in text for marker in _OOM_MARKERS):
        return OutOfMemory("%s: %s" % (type(exc).__name__, str(exc)[:2000]))
    return RunnerError("%s: %s" % (type(exc).__name__, str(exc)[:2000]))
