"""Keep every outgoing event under a size cap.

Mosquitto drops the connection of an MQTT 5 client that publishes more than
its ``message_size_limit``; an outbox row over the limit would then be sent
again after every reconnect and block every event behind it. So the agent
never stores such a row: an event over ``max_event_bytes`` loses, in order,
the result's time series, as much of the log tail as needed, the per-epoch
statistics, and at last the result itself (the headline numbers of a result
are small, so the last step is for pathological cases only). What was dropped
is said in the event's ``reason`` and, while a result remains, in its
``knobs["event_trimmed"]``, so the stored result shows it too.
"""

from __future__ import annotations

from collections.abc import Callable

from edgebench.schemas import Envelope, JobEvent
from edgebench.schemas.envelope import encode

_REASON_MAX = 4000  # JobEvent.reason's max_length


def encode_event(event: JobEvent, sender: str, max_bytes: int) -> bytes:
    """The envelope bytes of ``event``, trimmed as described above to fit max_bytes."""

    def enc(ev: JobEvent) -> bytes:
        return encode(Envelope.of(sender=sender, body=ev))

    payload = enc(event)
    if len(payload) <= max_bytes:
        return payload
    original = len(payload)
    dropped: list[str] = []
    steps: list[tuple[str, Callable[[JobEvent], JobEvent | None]]] = [
        ("result.timeseries", _drop_timeseries),
        ("log_tail", lambda ev: _shorten_log_tail(ev, len(enc(ev)) - max_bytes)),
        ("result.runs.epochs", _drop_epochs),
        ("result", lambda ev: ev.model_copy(update={"result": None}) if ev.result is not None else None),
    ]
    for name, step in steps:
        smaller = step(event)
        if smaller is None:
            continue
        event = smaller
        dropped.append(name)
        payload = enc(_marked(event, dropped, original, max_bytes))
        if len(payload) <= max_bytes:
            return payload
    # only the reason is left to shorten (it is at most 4000 characters)
    event = _marked(event, dropped, original, max_bytes)
    return enc(event.model_copy(update={"reason": (event.reason or "")[:200], "log_tail": None}))


def _drop_timeseries(ev: JobEvent) -> JobEvent | None:
    if ev.result is None or ev.result.timeseries is None:
        return None
    return ev.model_copy(update={"result": ev.result.model_copy(update={"timeseries": None})})


def _shorten_log_tail(ev: JobEvent, overflow_bytes: int) -> JobEvent | None:
    if not ev.log_tail:
        return None
    tail = ev.log_tail.encode()
    # keep the end of the log (where the error is); 200 bytes of slack for the note
    keep = len(tail) - overflow_bytes - 200
    if keep <= 0:
        return ev.model_copy(update={"log_tail": None})
    return ev.model_copy(update={"log_tail": tail[-keep:].decode("utf-8", "ignore")})


def _drop_epochs(ev: JobEvent) -> JobEvent | None:
    res = ev.result
    if res is None or not any(r.epochs for r in res.runs):
        return None
    runs = [r.model_copy(update={"epochs": []}) for r in res.runs]
    return ev.model_copy(update={"result": res.model_copy(update={"runs": runs})})


def _marked(ev: JobEvent, dropped: list[str], original_bytes: int, max_bytes: int) -> JobEvent:
    note = (f"event of {original_bytes} bytes trimmed to fit max_event_bytes={max_bytes}: "
            f"dropped {', '.join(dropped)}")
    reason = f"{ev.reason[: _REASON_MAX - len(note) - 2]}; {note}" if ev.reason else note
    update: dict[str, object] = {"reason": reason}
    if ev.result is not None:
        knobs = {**ev.result.knobs, "event_trimmed": ",".join(dropped)}
        update["result"] = ev.result.model_copy(update={"knobs": knobs})
    return ev.model_copy(update=update)
