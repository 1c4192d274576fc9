"""``make bench``: the stage's figures, measured on a real broker and the local server.

Every scenario runs ``processor run`` as its own process (as in production) on
fresh topics, and reads its figures from the outside:

* throughput from the output topic's end offsets, polled every 20 ms, between
  10% and 90% of the outputs, so start-up, group joining and the tail are not
  counted;
* CPU from ``/proc/<pid>/stat`` over the same window, per event or per lookup,
  and the cores that makes; how busy the busiest thread was (running, or
  runnable and waiting for a CPU, from ``schedstat``): a run with a backlog whose
  busiest thread was busy less than 0.85 of the time, held by nothing it is meant
  to respect, while at least 0.15 of the machine's CPU was idle (``/proc/stat``),
  is flagged idle-bound;
* peak memory from ``VmHWM`` (the peak resident set) in ``/proc/<pid>/status``,
  and the peaks of ``VmRSS`` in the first and second half of the outputs;
* latency from the broker's append times of each input and its output.

The cached path runs analytics.js-shaped events of three sizes (about 0.4, 1.5
and 6 kB), the bare loop the same events. The broker is ``KAFKA_BOOTSTRAP_SERVERS``
when set, else a local one of ``--kafka-version``. Figures that depend on a shared
machine's speed are given as ratios measured in the same run. Results go to a
table on stdout and to ``bench-results.json``. This is a benchmark, not a test:
nothing fails on a slow figure; the table says which targets were met.

    python -m processor.devkit.bench [--quick] [--only NAME ...] [--json FILE]
        [--kafka-version 3.9.1] [--env PROCESSOR_KAFKA_CONSUMER_...=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from processor.devkit.bench_rig import KEY, Bench, kafka, machine, say
from processor.devkit.bench_scenarios import SCENARIOS, table
from processor.devkit.broker import KAFKA_VERSION
from processor.devkit.clearbit_server import ClearbitServer


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith(("PROCESSOR_", "CLEARBIT_")):
        raise argparse.ArgumentTypeError(f"expected PROCESSOR_...=VALUE, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a first look")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="some scenarios")
    parser.add_argument("--json", default="bench-results.json", help="where figures go")
    parser.add_argument("--kafka-version", default=KAFKA_VERSION,
                        help="the local broker's Apache Kafka release (%(default)s; 3.x works "
                             "too), unless KAFKA_BOOTSTRAP_SERVERS names a cluster")
    parser.add_argument("--env", type=_setting, action="append", default=[],
                        metavar="NAME=VALUE",
                        help="a setting for every stage and bare loop of the run (repeatable)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    report: dict[str, Any] = {"machine": machine(), "quick": args.quick, "scenarios": {},
                              "env": dict(args.env)}
    say(f"bench: {report['machine']['date']}, {report['machine']['cores']} cores, "
        f"{'quick' if args.quick else 'full'} sizes; process logs in {workdir}")
    with kafka(args.kafka_version) as (bootstrap, broker), ClearbitServer(key=KEY) as clearbit:
        report["broker"] = broker
        say(f"broker: {broker}" + (f"; settings {report['env']}" if args.env else ""))
        bench = Bench(bootstrap, clearbit, workdir, stage_env=dict(args.env))
        for name in args.only or list(SCENARIOS):
            say(f"\n== {name}")
            clearbit.reset()
            started = time.monotonic()
            try:
                report["scenarios"][name] = SCENARIOS[name](bench, args.quick)
            except Exception as error:  # noqa: BLE001 - report it and go on with the others
                report["scenarios"][name] = {"error": f"{type(error).__name__}: {error}"}
            say(f"   ({time.monotonic() - started:.0f}s)")
    Path(args.json).write_text(json.dumps(report, indent=2))
    say("\n" + table(report))
    say(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
