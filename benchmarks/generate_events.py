"""Deterministic usage-event files for the ingestion benchmark.

    python benchmarks/generate_events.py out.csv --events 2000000 --orgs 1000 \
        --malformed 0.001 --duplicates 0.01 --seed 42

Writes N events as CSV (header ``org_id,event_id,metric,value,occurred_at,properties``)
for K organizations ``org_00000 ...`` and the five metrics of ``CATALOG`` over one
month (``MONTH_START`` .. +30 days), in time order with small jitter, like a real
export. Same arguments, same bytes. ``--malformed`` adds unparseable lines and
``--duplicates`` repeats earlier events (a tenth of them with a changed value, i.e.
conflicting duplicates); both are extra lines on top of N.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
from pathlib import Path

MONTH_START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
MONTH_SECONDS = 31 * 24 * 3600

CATALOG: dict = {
    "version": 1,
    "metrics": [
        {"code": "api_calls", "name": "API calls", "aggregation": "count"},
        {"code": "storage_gb", "name": "Storage (GB)", "aggregation": "max"},
        {"code": "active_users", "name": "Active users", "aggregation": "unique_count", "unique_property": "user_id"},
        {"code": "payment_volume", "name": "Payment volume", "aggregation": "sum", "allow_negative": True},
        {"code": "instance_hours", "name": "Instance hours", "aggregation": "sum"},
    ],
    "plans": [
        {
            "code": "standard",
            "name": "Standard",
            "currency": "USD",
            "interval": "monthly",
            "charges": [
                {"code": "platform", "description": "Platform fee", "model": "flat", "amount": "20.00"},
                {
                    "code": "calls",
                    "description": "API calls",
                    "model": "per_unit",
                    "metric": "api_calls",
                    "unit_price": "0.0010",
                },
            ],
        }
    ],
}

HEADER = "org_id,event_id,metric,value,occurred_at,properties\n"


def org_ids(count: int) -> list[str]:
    return [f"org_{i:05d}" for i in range(count)]


def _event_id(rng: random.Random) -> str:
    """A random UUID-shaped id: the realistic, index-unfriendly case (no time order)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


def _value(rng: random.Random, metric: str) -> str:
    if metric == "api_calls":
        return "1"
    if metric == "storage_gb":
        return f"{rng.randrange(0, 5_000_000) / 1000:.3f}"
    if metric == "active_users":
        return "1"
    if metric == "payment_volume":
        cents = rng.randrange(-2_000, 500_000)
        return f"{cents // 100}.{cents % 100:02d}" if cents >= 0 else f"-{-cents // 100}.{-cents % 100:02d}"
    return f"{rng.randrange(1, 40) / 4}"


def _properties(rng: random.Random, metric: str) -> str:
    if metric == "active_users":
        return '"{""user_id"": ""u' + str(rng.randrange(100_000)) + '""}"'
    if metric == "api_calls" and rng.random() < 0.5:
        return '"{""endpoint"": ""/v1/items"", ""status"": 200}"'
    return ""


_MALFORMED = (
    "this is not csv at all",
    'org_00001,"unterminated',
    "org_00001,evt,api_calls",
    "org_00001,evt,api_calls,1,2026-03-02T00:00:00Z,,extra,columns",
)


def write_events(
    out, *, events: int, orgs: int, seed: int = 42, malformed: float = 0.0, duplicates: float = 0.0
) -> dict[str, int]:
    """Write the CSV to the text stream ``out``; return counts of what was written."""
    rng = random.Random(seed)
    org_list = org_ids(orgs)
    metrics = [m["code"] for m in CATALOG["metrics"]]
    weights = [60, 5, 15, 10, 10]
    out.write(HEADER)
    recent: list[str] = []
    counts = {"events": 0, "malformed": 0, "duplicates": 0, "conflicts": 0}
    step = MONTH_SECONDS / max(events, 1)
    lines: list[str] = []
    for i in range(events):
        metric = rng.choices(metrics, weights)[0]
        second = min(MONTH_SECONDS - 1, max(0, i * step + rng.uniform(-60, 60)))
        when = MONTH_START + dt.timedelta(seconds=int(second), milliseconds=rng.randrange(1000))
        line = (
            f"{org_list[rng.randrange(orgs)]},{_event_id(rng)},"
            f"{metric},{_value(rng, metric)},{when.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z,"
            f"{_properties(rng, metric)}\n"
        )
        lines.append(line)
        counts["events"] += 1
        if duplicates and rng.random() < duplicates and recent:
            repeat = rng.choice(recent)
            if rng.random() < 0.1:
                head, value, tail = _split_value(repeat)
                repeat = f"{head}{value}9{tail}" if "." in value else f"{head}{value}.5{tail}"
                counts["conflicts"] += 1
            else:
                counts["duplicates"] += 1
            lines.append(repeat)
        if malformed and rng.random() < malformed:
            lines.append(rng.choice(_MALFORMED) + "\n")
            counts["malformed"] += 1
        recent.append(line)
        if len(recent) > 1000:
            recent = recent[500:]
        if len(lines) >= 10_000:
            out.write("".join(lines))
            lines.clear()
    out.write("".join(lines))
    return counts


def _split_value(line: str) -> tuple[str, str, str]:
    fields = line.split(",", 4)
    head = ",".join(fields[:3]) + ","
    return head, fields[3], "," + fields[4]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="CSV path, or - for stdout")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--orgs", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--malformed", type=float, default=0.0, help="fraction of extra bad lines")
    parser.add_argument("--duplicates", type=float, default=0.0, help="fraction of repeated events")
    args = parser.parse_args(argv)
    if args.output == "-":
        counts = write_events(
            sys.stdout,
            events=args.events,
            orgs=args.orgs,
            seed=args.seed,
            malformed=args.malformed,
            duplicates=args.duplicates,
        )
    else:
        with Path(args.output).open("w", encoding="utf-8", newline="") as out:
            counts = write_events(
                out,
                events=args.events,
                orgs=args.orgs,
                seed=args.seed,
                malformed=args.malformed,
                duplicates=args.duplicates,
            )
    print(json.dumps(counts), file=sys.stderr)


if __name__ == "__main__":
    main()
