"""Typed runner errors; their names travel as the error_type of a FAILED event."""


class RunnerError(Exception):
    error_type = "BackendError"


class DataMissing(RunnerError):
    error_type = "DataMissing"


class OutOfMemory(RunnerError):
    error_type = "OOM"


class Unsupported(RunnerError):
    error_type = "Unsupported"


_OOM_MARKERS = (
    "out of memory",
    "resource_exhausted",
    "resourceexhausted",
    "oom when allocating",
    "cudnn_status_alloc_failed",
    "cuda_error_out_of_memory",
    "failed to allocate",
)


def classify(exc):
    """Map a framework exception to a RunnerError subclass instance."""
    if isinstance(exc, RunnerError):
        return exc
    if isinstance(exc, MemoryError):
        return OutOfMemory("host memory exhausted: %s" % (exc,))
    text = ("%s: %s" % (type(exc).__name__, exc)).lower()
    for marker in _OOM_MARKERS:
        if marker in text:
            return OutOfMemory("%s: %s" % (type(exc).__name__, str(exc)[:2000]))
    return RunnerError("%s: %s" % (type(exc).__name__, str(exc)[:2000]))
