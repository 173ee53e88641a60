"""Inference on deployment runtimes under the real MLPerf LoadGen.

One module per concern (docs/INFERENCE.md):

- ``artifacts``: the model cache on the box, keyed by sha256; nothing is loaded before its digest matches.
- ``export``: catalogue models to ONNX / LiteRT with the frameworks' own exporters, FP16 and INT8
  variants with the runtimes' own quantisers, and the reference outputs that travel with them.
- ``runtimes``: one adapter per runtime (ONNX Runtime, OpenVINO, LiteRT, TensorRT, torch).
- ``harness``: the LoadGen system under test and query sample library; LoadGen decides every timing.
- ``equivalence``: the runtime's outputs against the reference framework's, per-precision tolerances.
- ``rapl``: CPU package energy from powercap, read around LoadGen's timed run.
- ``run``: one job: load, check equivalence, run the scenario, emit the result.

Python 3.6 syntax like the rest of runner/, and no third-party import at module level; the
runtimes themselves need Python >= 3.10 (their wheels).
"""
