"""JSON-lines protocol from runner to agent.

The runner moves the real stdout aside at start-up so that framework noise
(progress bars, prints) cannot corrupt the protocol: fd 1 then points at
stderr, and protocol lines go to the saved descriptor.
"""

import json
import os
import sys
import threading
import time


class Emitter(object):
    def __init__(self, fd):
        self._out = os.fdopen(fd, "w", 1)
        self._lock = threading.Lock()  # batch hooks may emit from Keras's callback threads

    @classmethod
    def take_stdout(cls):
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)  # anything printed from now on lands on stderr
        return cls(saved)

    def emit(self, type_, **fields):
        fields["type"] = type_
        fields["t"] = time.time()
        line = json.dumps(fields, allow_nan=False, default=_default) + "\n"
        with self._lock:
            self._out.write(line)
            self._out.flush()


def _default(obj):
    # numpy scalars and the like
    for attr in ("item", "tolist"):
        if hasattr(obj, attr):
            return getattr(obj, attr)()
    return str(obj)
