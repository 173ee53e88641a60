"""Entry point: ``python -m runner --job JOB.json --dataset-root DIR``.

Exit status 0 after a result, 2 after a typed error line; anything else is a
crash that the agent reports with the stderr tail.
"""

import argparse
import json
import os
import sys
import traceback

from .errors import Unsupported, classify
from .protocol import Emitter


def _backend_module(backend, spec=None):
    if backend in ("onnxruntime", "openvino", "litert", "tensorrt") or (
            backend == "torch" and spec is not None and spec.get("inference")):
        # deployment runtimes, and torch under LoadGen (docs/INFERENCE.md)
        from .inference import run as inference_run

        return inference_run
    if backend in ("keras-jax", "keras-torch", "keras-tensorflow"):
        from . import keras3

        return keras3
    if backend in ("keras-mxnet", "keras-tensorflow1"):
        from . import legacy

        return legacy
    if backend == "torch":
        from . import torch_native

        return torch_native
    if backend == "sleep":
        from . import sleep

        return sleep
    raise Unsupported("no runner for backend %r" % backend)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="runner")
    parser.add_argument("--job", required=True, help="job spec JSON file")
    parser.add_argument("--dataset-root", default=".")
    args = parser.parse_args(argv)
    emitter = Emitter.take_stdout()
    with open(args.job) as fh:
        spec = json.load(fh)
    spec["_job_path"] = os.path.abspath(args.job)
    try:
        _backend_module(spec["backend"], spec).run(spec, emitter, args.dataset_root)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        err = classify(exc)
        traceback.print_exc(file=sys.stderr)
        emitter.emit("error", error_type=err.error_type, message=str(err)[:4000])
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
