"""``make bench``'s delivery rows: conversions per second from the conversions topic to
the local Meta-compatible server, for a given answer latency, batch size and requests
in flight, against the bound those set: batch size x requests in flight / latency.

``processor conversions send`` runs as its own process on fresh topics, with a backlog
of Meta conversions waiting; the rate is read from the audit topic's end offsets
between 10% and 90% of the results (start-up and the tail left out), CPU from
``/proc`` over the same window. The server runs in this process, on the same cores.

    python -m processor.devkit.bench_delivery [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from processor.devkit.bench_rig import (
    ProcessWatch,
    Progress,
    Running,
    busiest_thread_share,
    cores_between,
    kafka,
    produce,
    say,
)
from processor.devkit.broker import create_topics
from processor.devkit.conversion_samples import AUDIENCES, sample_conversion, sender_environment
from processor.devkit.google_server import GoogleServer
from processor.devkit.meta_server import MetaServer


class Setup(NamedTuple):
    latency_ms: float
    batch: int
    in_flight: int
    conversions: int

    @property
    def bound_per_s(self) -> float:
        """What batching and concurrency allow at this latency, whatever the CPU."""
        return self.batch * self.in_flight / (self.latency_ms / 1000)


QUICK = (Setup(100, 50, 4, 8_000),)
FULL = (Setup(100, 50, 4, 20_000), Setup(100, 100, 8, 40_000), Setup(250, 500, 8, 60_000))


def _conversions(count: int, tag: str) -> Iterator[tuple[bytes, Any]]:
    now = time.time()
    for n in range(count):
        record = sample_conversion(n, "meta_7d", salt=tag, now=now)
        yield record["conversion_id"].encode(), record


def _one(bootstrap: str, meta: MetaServer, google: GoogleServer, setup: Setup,
         workdir: Path) -> dict[str, Any]:
    prefix = f"bench-delivery-{uuid.uuid4().hex[:6]}"
    topics = {"outbox": f"{prefix}-outbox", "delayed": f"{prefix}-delayed",
              "sent": f"{prefix}-sent", "dlq": f"{prefix}-dlq", "group": f"{prefix}-group"}
    create_topics(bootstrap, {topics["outbox"]: 3, topics["delayed"]: 3, topics["dlq"]: 1})
    create_topics(bootstrap, {topics["sent"]: 3},
                  config={"message.timestamp.type": "LogAppendTime"})
    audiences = workdir / "audiences.yaml"
    audiences.write_text(AUDIENCES)
    produce(bootstrap, topics["outbox"], _conversions(setup.conversions, prefix))
    meta.reset()
    meta.set_latency(setup.latency_ms)
    env = sender_environment(bootstrap, topics, str(audiences), meta, google,
                             META_BATCH_MAX=str(setup.batch),
                             PROCESSOR_CONV_MAX_IN_FLIGHT=str(setup.in_flight),
                             PROCESSOR_LOG_LEVEL="WARNING")
    log = workdir / f"{prefix}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "processor", "conversions", "send"],
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    watch = ProcessWatch(process.pid)
    watch.start()
    running = Running(process, watch, log)
    progress = Progress(bootstrap, topics["sent"])
    try:
        progress.follow(setup.conversions, timeout=600)
    finally:
        running.stop()
    start, end, results = progress.window()
    rate = results / (end - start)
    requests = [r for r in meta.requests(api="events") if r["status"] == 200]
    return {"latency_ms": setup.latency_ms, "batch": setup.batch,
            "in_flight": setup.in_flight, "conversions": setup.conversions,
            "conversions_per_s": round(rate),
            "bound_per_s": round(setup.bound_per_s),
            "share_of_bound": round(rate / setup.bound_per_s, 2),
            "cpu_us_per_conversion": round(watch.cpu_between(start, end) / results * 1e6, 1),
            # Cores the sender used over the window, and how busy its busiest thread was:
            # near 1, the sender (not the bound) set the rate.
            "cores_used": round(cores_between([running], start, end), 2),
            "busiest_thread": round(busiest_thread_share([running], start, end), 2),
            "mean_batch": round(sum(r["events"] for r in requests) / max(1, len(requests)), 1),
            "unique_at_meta": len(meta.events()), "cores": os.cpu_count()}


def delivery_figures(bootstrap: str, quick: bool) -> dict[str, Any]:
    """The delivery rows for ``make bench`` (``quick``: one small setup)."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    rows = []
    with MetaServer() as meta, GoogleServer() as google:
        for setup in QUICK if quick else FULL:
            say(f"   delivery: {setup.conversions} conversions, {setup.latency_ms:.0f} ms, "
                f"batch {setup.batch}, {setup.in_flight} in flight")
            rows.append(_one(bootstrap, meta, google, setup, workdir))
    return {"rows": rows, "cores": os.cpu_count(), "logs": str(workdir)}


def table(figures: dict[str, Any]) -> str:
    lines = ["latency  batch  in flight  conversions/s  bound/s  share  cpu µs/conv  "
             "cores used  busiest thread"]
    for row in figures["rows"]:
        lines.append(f"{row['latency_ms']:>5.0f}ms  {row['batch']:>5}  {row['in_flight']:>9}  "
                     f"{row['conversions_per_s']:>13}  {row['bound_per_s']:>7}  "
                     f"{row['share_of_bound']:>5.2f}  {row['cpu_us_per_conversion']:>11}  "
                     f"{row['cores_used']:>10}  {row['busiest_thread']:>14}")
    lines.append(f"({figures['cores']} cores on the machine; the server in this process "
                 "shares them)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_delivery", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    with kafka() as (bootstrap, _broker):
        figures = delivery_figures(bootstrap, args.quick)
    say(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    say(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
