"""A user's model on the wire (issue 19, docs/MODELS.md): what a job says about the model file it runs.

The controller resolves ``name@version`` or a digest from its model registry into a
:class:`ModelArtifactRef` and puts it in ``JobSpec.model_artifact``. Everything here is
typed and bounded: the agent derives every local path from the digest, never from the
message, and nothing is loaded before the file's sha256 equals ``digest``. A signed job
(docs/SECURITY.md) covers the whole reference, digest and location included.

Additive to the contract: a job without ``model_artifact`` is what it was before.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from edgebench.schemas.base import Count64, Identifier, Int, Sha256, StrictModel, Timestamp, exact_pattern_schema

# the formats edgebench loads without running code from the file: no pickle, ever
ArtifactFormat = Literal["onnx", "keras", "pt2"]
# a delivered file may be large, never unbounded: 64 GiB (an agent's own cap is smaller, 500 MB by default)
MAX_ARTIFACT_BYTES = 64 * 1024**3

URL_PATTERN = r"^https?://[!-~]{1,2040}$"  # printable ASCII, no space: nothing to smuggle into a log line
Url = Annotated[str, StringConstraints(pattern=URL_PATTERN), exact_pattern_schema(URL_PATTERN)]
TOKEN_PATTERN = r"^[A-Za-z0-9._~+/=-]{1,4096}$"  # a JWT or another bearer token
Token = Annotated[str, StringConstraints(pattern=TOKEN_PATTERN), exact_pattern_schema(TOKEN_PATTERN)]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_./:-]{0,199}$"  # an ONNX input or a Keras layer name
TensorName = Annotated[str, StringConstraints(pattern=NAME_PATTERN), exact_pattern_schema(NAME_PATTERN)]


class InputSignature(StrictModel):
    """The model's one input, per sample (without the batch dimension)."""

    name: TensorName = "input"
    shape: list[Annotated[Int, Field(ge=1, le=1 << 20)]] = Field(min_length=1, max_length=8)
    dtype: Literal["float32", "float16", "uint8", "int32", "int64"] = "float32"
    layout: Literal["NCHW", "NHWC", "flat"] = Field(
        default="NHWC", description="How image data is laid out for the model (NCHW: channels first).")


class ArtifactLocation(StrictModel):
    """Where the agent fetches the file. ``directory``: the agent's own shared directory
    (agent.yaml ``artifacts.shared_dir``), at ``sha256/<digest>``: the job carries no path."""

    kind: Literal["http", "oci", "directory"]
    url: Url | None = Field(default=None, description="http: a per-job URL signed by the controller (HMAC, "
                            "expiring); oci: the registry's blob URL, /v2/<repository>/blobs/sha256:<digest>.")
    token: Token | None = Field(default=None, description="oci: a bearer token scoped to pull this repository.")
    expires_at: Timestamp | None = Field(default=None, description="When the URL or token stops working.")


class ModelArtifactRef(StrictModel):
    """A registered model file, resolved for one job."""

    name: Identifier
    version: Identifier
    digest: Sha256
    format: ArtifactFormat
    size_bytes: Count64 = Field(le=MAX_ARTIFACT_BYTES)
    input: InputSignature
    classes: Int = Field(ge=1, le=1_000_000, description="Outputs of the classifier (the last axis).")
    location: ArtifactLocation
