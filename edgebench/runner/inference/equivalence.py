"""Does the runtime compute what the reference framework computes for the same weights?

The reference batch (export.reference_inputs, seeded) goes through the runtime, and its
outputs are compared with the reference framework's, stored with the artifact:

- ``max_rel_err`` = max |out - ref| / max |ref|: the error relative to the outputs' scale,
  so that logits (torch exports) and probabilities (Keras exports) share one tolerance;
- top-1 agreement over every sample, and over the *decisive* ones: samples whose reference
  top-1 leads its runner-up by more than the tolerance (on the catalogue's untrained
  weights most outputs are near-ties, where a faithful int8 model may flip the order).

A run passes when ``max_rel_err <= tolerance_rel`` and the decisive agreement reaches
``min_top1_agreement`` (TOLERANCES, per precision; fp32 differs from its reference by
kernel choice and summation order only). A failed check is kept in the result and the
report never ranks the run ("fast but wrong never wins").
"""

# precision -> (max relative error, min top-1 agreement on decisive samples)
TOLERANCES = {
    "fp32": (1e-3, 1.0),
    "bf16": (5e-2, 0.95),  # 8 mantissa bits: ~0.4 % per operation before accumulation
    "fp16": (1e-2, 0.99),
    "int8": (1.5e-1, 0.9),
}


def tolerance(precision):
    return TOLERANCES.get(precision, TOLERANCES["fp32"])


def compare(outputs, reference, precision, description):
    """The Equivalence record (a dict) of outputs against reference for this precision."""
    import numpy as np

    out = np.asarray(outputs, dtype="float64").reshape(len(reference), -1)
    ref = np.asarray(reference, dtype="float64").reshape(len(reference), -1)
    tol_rel, min_agree = tolerance(precision)
    if out.shape != ref.shape:
        return _failed(description, len(ref), tol_rel, min_agree,
                       "output shape %s differs from the reference's %s" % (out.shape, ref.shape))
    if not np.all(np.isfinite(out)):
        return _failed(description, len(ref), tol_rel, min_agree, "the runtime's outputs are not all finite")
    diff = np.abs(out - ref)
    scale = float(np.max(np.abs(ref))) or 1.0
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = max_abs / scale
    agree = out.argmax(1) == ref.argmax(1)
    ordered = np.sort(ref, axis=1)
    margin = (ordered[:, -1] - ordered[:, -2]) / scale if ref.shape[1] > 1 else np.ones(len(ref))
    decisive = margin > tol_rel
    n_dec = int(decisive.sum())
    agree_dec = float(agree[decisive].mean()) if n_dec else None
    passed = max_rel <= tol_rel and (agree_dec is None or agree_dec >= min_agree)
    why = []
    if max_rel > tol_rel:
        why.append("max relative error %.3g exceeds %.3g" % (max_rel, tol_rel))
    if agree_dec is not None and agree_dec < min_agree:
        why.append("top-1 agreement on decisive samples %.3f is below %.3f" % (agree_dec, min_agree))
    return {
        "reference": description[:300],
        "samples": int(len(ref)),
        "top1_agreement": float(agree.mean()) if len(ref) else 0.0,
        "decisive_samples": n_dec,
        "top1_agreement_decisive": agree_dec,
        "max_abs_err": max_abs,
        "max_rel_err": max_rel,
        "mean_abs_err": float(diff.mean()) if diff.size else 0.0,
        "tolerance_rel": tol_rel,
        "min_top1_agreement": min_agree,
        "passed": bool(passed),
        "detail": "; ".join(why)[:1000],
    }


def _failed(description, n, tol_rel, min_agree, why):
    return {"reference": description[:300], "samples": int(n), "top1_agreement": 0.0, "decisive_samples": 0,
            "top1_agreement_decisive": None, "max_abs_err": 0.0, "max_rel_err": 0.0, "mean_abs_err": 0.0,
            "tolerance_rel": tol_rel, "min_top1_agreement": min_agree, "passed": False, "detail": why[:1000]}


def top1_accuracy(predict, x, y, batch_size):
    """Real top-1 of ``predict`` on labelled samples (outside any timed window)."""
    import numpy as np

    correct = 0
    for k in range(0, len(x), batch_size):
        out = np.asarray(predict(x[k:k + batch_size]))
        correct += int((out.reshape(len(out), -1).argmax(1) == y[k:k + batch_size]).sum())
    return correct / float(len(x)) if len(x) else 0.0
