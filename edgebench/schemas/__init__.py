"""The edgebench message contract (pydantic v2).

Every message that crosses the broker is an :class:`~schemas.envelope.Envelope`
whose ``body`` is one of the models below. The models are strict: unknown
fields and wrong types are validation errors, so an agent can answer a bad job
with a REJECTED event naming the offending field.
"""

from edgebench.schemas.envelope import SCHEMA_VERSION, Envelope, decode, encode
from edgebench.schemas.events import TERMINAL_STATES, UNKNOWN_JOB_ID, ErrorType, JobEvent, JobState, Progress
from edgebench.schemas.job import (
    Backend,
    CancelRequest,
    DataFormat,
    InputPlacement,
    JobSpec,
    MemoryPolicy,
    Mode,
    Precision,
    ReplayRequest,
    Workload,
)
from edgebench.schemas.result import EpochStat, Fingerprint, Result, ThroughputSummary
from edgebench.schemas.status import AgentStatus, BackendInfo, GpuInfo

__all__ = [
    "SCHEMA_VERSION",
    "TERMINAL_STATES",
    "UNKNOWN_JOB_ID",
    "AgentStatus",
    "Backend",
    "BackendInfo",
    "CancelRequest",
    "DataFormat",
    "Envelope",
    "EpochStat",
    "ErrorType",
    "Fingerprint",
    "GpuInfo",
    "InputPlacement",
    "JobEvent",
    "JobSpec",
    "JobState",
    "MemoryPolicy",
    "Mode",
    "Precision",
    "Progress",
    "ReplayRequest",
    "Result",
    "ThroughputSummary",
    "Workload",
    "decode",
    "encode",
]
