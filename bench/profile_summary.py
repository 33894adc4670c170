"""Where a whole worker's time goes, from py-spy's collapsed stacks (prints a table).

  py-spy record --pid PID --format raw --output FILE   (or bench/responsiveness.py --profile)
  python bench/profile_summary.py before.txt [after.txt ...]

Each sample goes to one step: the most specific one any frame of its stack belongs to
(stage 2's internal-record decode before stage 2's judging, the detectors before the
rest of stage 2, and so on down to faust's runtime). Idle samples are not in py-spy's
output unless asked for, so the shares are of the time the process was on a CPU.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

#: (step, substrings of a frame), most specific first.
STEPS: list[tuple[str, tuple[str, ...]]] = [
    ("stage 2: decode internal records", ("decode_subject_batch",)),
    ("stage 2: state serialisation + changelog", ("unit_writes", "tablelog.py")),
    ("stage 2: detectors", ("pipeline/detectors/",)),
    ("stage 2: evidence dossiers", ("pipeline/flow/dossiers.py", "pipeline/evidence/")),
    ("stage 2: outcomes + metric windows", ("pipeline/flow/outcomes.py", "pipeline/metrics/")),
    ("stage 2: records, dedup, timers, outputs", ("pipeline/flow/stage2", "flow/expiry.py")),
    ("stage 1: redact", ("pipeline/redact.py",)),
    ("stage 1: enrich (Redis, cache)", ("pipeline/enrichment/",)),
    (
        "stage 1: decode + validate",
        ("pipeline/flow/validate.py", "pipeline/avro_reader.py", "pipeline/codec.py"),
    ),
    ("stage 1: route + encode internal records", ("pipeline/flow/route.py",)),
    ("stage 1: other", ("pipeline/flow/stage1.py", "pipeline/flow/watermarks.py")),
    ("produce (aiokafka producer, sends)", ("aiokafka/producer", "enqueue (")),
    ("faust + aiokafka consumer (fetch, streams, acks, commits)", ("faust/", "aiokafka/")),
    ("web server (/metrics)", ("aiohttp/", "observability.py")),
    ("mode timers, asyncio, other", ("",)),
]


def step_of(stack: str) -> str:
    frames = stack.split(";")
    for step, needles in STEPS:
        if any(n in frame for frame in frames for n in needles):
            return step
    return STEPS[-1][0]


def summarise(path: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[step_of(stack)] += int(n)
    return counts


def main() -> int:
    paths = [Path(p) for p in sys.argv[1:]]
    if not paths:
        print(__doc__)
        return 2
    tables = [summarise(p) for p in paths]
    totals = [sum(t.values()) or 1 for t in tables]
    print("| step | " + " | ".join(p.stem for p in paths) + " |")
    print("|---|" + "---|" * len(paths))
    for step, _ in STEPS:
        cells = [f"{100 * t[step] / total:.0f}%" for t, total in zip(tables, totals, strict=True)]
        print(f"| {step} | " + " | ".join(cells) + " |")
    print("| samples | " + " | ".join(f"{sum(t.values()):,}" for t in tables) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
