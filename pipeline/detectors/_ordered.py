"""Hold a subject's events until the watermark says they are complete, then hand them out
in event-time order.

Sequence rules (bursts, ratios, "denials then an approval") depend on order. Batches
arrive in whatever order the producers and stage-1 workers interleaved them, so
rules that consumed events on arrival would see a late event after its successors on
one run and before them on a replay. Released in (event_time, event_id) order once
the watermark passes them, the same events always give the same findings.

An event at or before the last released watermark arrived later than the allowed
lateness (or is a redelivery of one already consumed): it is skipped here; the
engine counts late events, and single-event rules still see them.
"""

from __future__ import annotations

from typing import Any

from pipeline.detectors.base import Context, Event, State

#: Compact record kept per held event: [event_time, event_id, *detector fields] (a
#: list, not an object: one is kept per held event; ``time_of``/``id_of`` read it, and
#: ``kinds`` hands the hooks a named ``Record`` built from it).
Held = list[Any]

#: Bound on held records per subject; past it the oldest are released early.
MAX_HELD = 5000


def time_of(record: Held) -> int:
    """A held record's event time."""
    return int(record[0])


def id_of(record: Held) -> str:
    """A held record's event id."""
    return str(record[1])


def _order(record: Held) -> tuple[int, str]:
    return time_of(record), id_of(record)


def hold(state: State, events: list[Event], *fields: str) -> None:
    """Queue ``[event_time, event_id, *event[fields]]`` for each new event."""
    done = state.get("released_to")
    held: list[Held] = state.setdefault("held", [])
    known = {id_of(r) for r in held}
    for event in events:
        t, event_id = int(event["event_time"]), str(event["event_id"])
        if (done is not None and t <= done) or event_id in known:
            continue
        known.add(event_id)
        held.append([t, event_id, *(event.get(f) for f in fields)])
    held.sort(key=_order)


def release(ctx: Context, state: State) -> list[Held]:
    """Records the watermark has passed, oldest first; also those beyond ``MAX_HELD``."""
    held: list[Held] = state.get("held", [])
    ready = 0
    while ready < len(held) and time_of(held[ready]) <= ctx.watermark:
        ready += 1
    ready = max(ready, len(held) - MAX_HELD)
    out, state["held"] = held[:ready], held[ready:]
    done = max([ctx.watermark, *(time_of(r) for r in out)])
    state["released_to"] = max(done, int(state.get("released_to", done)))
    return out


def next_held(state: State) -> int | None:
    """Event time of the oldest record still held (the timer to ask for), else None."""
    held: list[Held] = state.get("held", [])
    return time_of(held[0]) if held else None
