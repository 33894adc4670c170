"""A watchdog for stage 1's input partitions: lag that nothing reads is a stall.

Three soak runs on the embedded broker once stopped reading one input partition
for good, with no error line (README, "State over days"). A partition with records
left that is neither held by watermark alignment nor read for ``stall_s`` is a
stall whatever its cause: the watchdog says so once, with the consumer's view of the
partition (so the cause can be read from the log), counts it on ``/metrics``
(``govpipe_input_stalls_total``) and lets the caller try to resume it.

Pure bookkeeping (the caller passes the clock and each partition's view), so it is
tested without Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Progress:
    read: int | None
    since: float
    stalled: bool = False


class InputWatch:
    def __init__(self, stall_s: float = 60.0) -> None:
        self.stall_s = stall_s
        self._parts: dict[int, _Progress] = {}
        #: stalls seen, by input partition (an episode counts once)
        self.stalls: dict[int, int] = {}

    def check(
        self,
        now: float,
        read: dict[int, int | None],
        lag: dict[int, int | None],
        held: set[int],
    ) -> list[int]:
        """Partitions that just became stalled: records left (``lag``), not held by
        alignment (``held``), and ``read`` (last offset read) unchanged for
        ``stall_s``. Partitions absent from ``read`` are forgotten (revoked)."""
        for gone in set(self._parts) - set(read):
            del self._parts[gone]
        out: list[int] = []
        for p, offset in read.items():
            state = self._parts.get(p)
            if state is None or state.read != offset:
                self._parts[p] = _Progress(offset, now)
                continue
            waiting = bool(lag.get(p)) and p not in held
            if not waiting:
                state.since, state.stalled = now, False
                continue
            if not state.stalled and now - state.since >= self.stall_s:
                state.stalled = True
                self.stalls[p] = self.stalls.get(p, 0) + 1
                out.append(p)
        return out
