"""Entry point: ``python -m runner --job JOB.json --dataset-root DIR``.

Exit status 0 after a result, 2 after a typed error line; anything else is a
crash that the agent reports with the stderr tail.
"""

import argparse
import json
import os
import sys
import traceback

from . import protocol, skeleton
from .context import RunContext
from .errors import classify
from .registry import backend_class


def main(argv=None):
    parser = argparse.ArgumentParser(prog="runner")
    parser.add_argument("--job", required=True, help="job spec JSON file")
    parser.add_argument("--dataset-root", default=".")
    args = parser.parse_args(argv)
    emitter = protocol.Emitter.take_stdout()
    with open(args.job) as fh:
        spec = json.load(fh)
    try:
        ctx = RunContext(spec, args.dataset_root, os.path.abspath(args.job), emitter)
        skeleton.run(ctx, backend_class(ctx.backend, spec))
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        err = classify(exc)
        traceback.print_exc(file=sys.stderr)
        emitter.send(protocol.error(err.error_type, str(err)))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
