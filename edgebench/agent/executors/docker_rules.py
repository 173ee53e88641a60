"""The docker executor's rules, no engine needed: which images may run (the
allowlist), which GPUs a runner container is given, and what an image's labels
and digest say (executors/docker.py uses them; tests check them without Docker)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from edgebench.agent.config import BackendConfig, DockerBackend
from edgebench.agent.executors.base import ExecutorError
from edgebench.agent.validation import Rejection
from edgebench.schemas import JobSpec

if TYPE_CHECKING:
    from docker.models.images import Image


class ImageNotAllowed(ExecutorError):
    pass


# -- allowlist ---------------------------------------------------------------------
def normalize_image_ref(ref: str) -> str:
    """``name`` -> ``name:latest``; references with a tag or digest are kept."""
    last = ref.rsplit("/", 1)[-1]
    if "@" in ref or ":" in last:
        return ref
    return f"{ref}:latest"


def image_allowed(image: str, allowlist: Sequence[str]) -> bool:
    """Whether ``image`` matches an allowlist entry: an exact reference (a
    missing tag means ``latest``) or a shell-style pattern such as
    ``registry.site/edgebench/*:0.1.*``. An empty allowlist allows nothing."""
    ref = normalize_image_ref(image)
    return any(ref == normalize_image_ref(entry) or fnmatchcase(ref, entry) for entry in allowlist)


def check_image_allowed(image: str, allowlist: Sequence[str]) -> None:
    if not image_allowed(image, allowlist):
        listed = ", ".join(allowlist) if allowlist else "it is empty"
        raise ImageNotAllowed(f"image {image!r} is not on the agent's image_allowlist ({listed})")


def check_job_image(job: JobSpec, backends: Mapping[str, BackendConfig], allowlist: Sequence[str]) -> None:
    """Raise a Rejection (field ``backend``) when the job's backend runs in an
    image that the agent's allowlist does not name."""
    cfg = backends.get(job.backend.value)
    if isinstance(cfg, DockerBackend) and not image_allowed(cfg.image, allowlist):
        raise Rejection(f"backend {job.backend.value!r} runs image {cfg.image!r}, which is not on this "
                        "agent's image_allowlist", "backend")


# -- GPUs ----------------------------------------------------------------------------
def gpu_request(env: Mapping[str, str],
                uuids: Callable[[list[str]], list[str] | None] | None = None) -> tuple[list[Any], dict[str, str]]:
    """The device request for the GPUs named by the job environment's
    CUDA_VISIBLE_DEVICES (as the agent chose them), and the environment
    overrides for inside the container.

    The agent numbers GPUs as NVML shows them to it. When the agent itself runs
    in a container that was given only some of the host's GPUs, those numbers
    are not the host's, and the engine reads device ids as host numbers; so
    indices are sent as GPU UUIDs, which mean the same everywhere (``uuids``
    maps them; NVML by default, the indices stay when NVML is absent).
    Inside the runner container the toolkit exposes only the requested GPUs,
    numbered from 0, so CUDA_VISIBLE_DEVICES is renumbered; an empty value (a
    CPU job) means no device request at all.
    """
    from docker.types import DeviceRequest

    visible = env.get("CUDA_VISIBLE_DEVICES")
    if not visible:
        return [], {}
    if visible == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])], {}
    ids = [part.strip() for part in visible.split(",") if part.strip()]
    if all(i.isdigit() for i in ids):
        ids = (uuids or _nvml_uuids)(ids) or ids
    inside = ",".join(str(i) for i in range(len(ids)))
    return [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])], {"CUDA_VISIBLE_DEVICES": inside}


def _nvml_uuids(indices: list[str]) -> list[str] | None:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver, no library: keep the indices
        return None
    try:
        out = []
        for index in indices:
            uuid = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(int(index)))
            out.append(uuid.decode() if isinstance(uuid, bytes) else str(uuid))
        return out
    except Exception:  # noqa: BLE001 - an index NVML does not know: let the engine say so
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def frameworks_from_label(label: str) -> dict[str, str]:
    """``"keras==3.15.1 jax[cuda12]==0.10.2"`` -> ``{"keras": "3.15.1", "jax": "0.10.2"}``."""
    out: dict[str, str] = {}
    for req in label.split():
        name, sep, version = req.partition("==")
        if sep:
            out[name.split("[", 1)[0]] = version
    return out


def image_digest(image: Image) -> str:
    """The registry digest (``name@sha256:...``) when the image came from a
    registry, else its content-addressed id (``sha256:...``) for local builds."""
    digests = image.attrs.get("RepoDigests") or []
    return str(digests[0]) if digests else str(image.id)
