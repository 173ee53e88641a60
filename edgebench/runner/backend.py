"""The interface every runner backend implements; runner/skeleton.py drives it.

A backend is one class in one module of this package, named in the catalogue
(runner/registry.py). It knows one framework; the skeleton owns everything
else: the protocol messages and their order, the repeats, the measured window
(runner/timing.py), the GPU check, and error reporting. Lifecycle of one run,
with the methods a backend provides (those marked * have a default here)::

    backend = Cls(ctx)            # ctx: runner/context.py RunContext
    backend.check()             * raise Unsupported(reason, field=...) for what it cannot do;
                                  runs before any framework import
    backend.setup()             * import the framework, apply what it reads at import
    backend.versions()            {library: version}, sent in ``hello``
    backend.accelerators()      * (count, sentence): the accelerators the framework sees;
                                  the skeleton refuses ``gpus`` > count (Unsupported, field gpus);
                                  count None: it cannot tell (a runtime's GPU provider)
    backend.place()             * spread over devices: set ctx.replicas and ctx.placement
    backend.load()                a Loaded(source, samples); keeps the data itself
    for each repeat:
        backend.build()           a fresh model (anything train/infer accept)
        backend.train(model, timer) -> (loss, accuracy)   or
        backend.infer(model, timer)
    backend.knobs()             * {name: value}: what was in force, as the framework reports it
    backend.devices_used()        protocol.devices_used(...): where the job actually ran
    backend.close()             * always called, also after an error

``train`` and ``infer`` run the epochs of one repeat through the RunTimer they
are given: ``for epoch in timer.epoch_numbers(): timer.epoch_begin(epoch);
... timer.batch_end() per batch ...; timer.epoch_end(loss, accuracy)`` (a
framework loop such as Keras ``fit`` does the same from a callback, see
keras_common.py). The timer decides how many epochs are measured, so a loop
never counts epochs itself. ``timer_sync()`` gives the callable that waits for
the device (None where nothing is queued).

``inputs``: the values of the job's ``input`` knob the backend honours (where
in-memory data is batched: ``host`` or ``device``); the skeleton refuses any
other (Unsupported, field input). None on the wire is the backend's default.

Class attributes used without a run: ``requirements`` (modules the probe looks
for, with the distributions that carry their versions) and
:meth:`probe_problems`, for runner/probe.py. Optional ``hello`` fields:
``shims`` and ``keras_home`` (the legacy stacks). ``extends_window``: False for
a backend whose timings mean nothing (``sleep``), whose jobs then run exactly
the epochs they ask for whatever window minimum they state.

A backend whose timing an external harness decides (MLPerf LoadGen,
runner/inference) sets ``drives_run`` and implements :meth:`run_job` instead
(after the same GPU check): it sends the same messages through
runner/protocol.py in the same order, one harness run per repeat as the
measured window.

Everything here must stay Python 3.6 compatible and import nothing but the
standard library at module level.
"""

import collections

Loaded = collections.namedtuple("Loaded", "source samples")


class Backend(object):
    # (module, (distribution names that may carry its version, ...)), for runner/probe.py
    requirements = ()
    # optional hello fields
    shims = None
    keras_home = None
    # the window grows to the job's min_batches / min_window_s (runner/timing.py)
    extends_window = True
    # JobSpec.input values honoured (where in-memory data is batched)
    inputs = ("host",)

    def __init__(self, ctx):
        self.ctx = ctx

    # True: run_job() drives the whole run (runner/inference under LoadGen)
    drives_run = False

    @classmethod
    def probe_problems(cls, versions):
        """What is wrong with the versions the probe found ({module: version}); [] when nothing."""
        return []

    @classmethod
    def probe_extra(cls, versions):
        """More for the probe's answer where available (``providers``, ``detail``); may add to versions."""
        return {}

    def run_job(self):
        raise NotImplementedError

    def check(self):
        pass

    def setup(self):
        pass

    def versions(self):
        raise NotImplementedError

    def accelerators(self):
        return 0, "%s runs on the CPU only" % self.ctx.backend

    def place(self):
        pass

    def timer_sync(self):
        return None

    def load(self):
        raise NotImplementedError

    def build(self):
        raise NotImplementedError

    def train(self, model, timer):
        raise NotImplementedError

    def infer(self, model, timer):
        raise NotImplementedError

    def knobs(self):
        return {}

    def devices_used(self):
        raise NotImplementedError

    def close(self):
        pass
