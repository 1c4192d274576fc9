"""The keyed state's figures: restore rate from a changelog and peak memory by key count.

For each size (100k and 1M distinct keys of ~300 B; 20k and 100k with ``--quick``) a
changelog partition is filled, then a fresh process restores it onto an empty disk
through ``StateDirectory`` (as a stage would on a new machine), reads and writes keys
at random, iterates the whole store, closes cleanly and reopens. That process reports:

* the restore rate (records/s) and the cores it used meanwhile (its CPU seconds over
  wall seconds; the broker's CPU is not counted);
* its peak resident set (``VmHWM``), which should not grow with the number of keys;
* the reopen time after the clean close (only the checkpoint's tail is read).

For comparison, the same keys and values held in a Python dict, in a process of its
own. This is a benchmark, not a test: nothing fails on a slow figure.

    python -m processor.devkit.bench_state [--quick] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from processor.devkit.broker import LocalKafka, create_topics

VALUE_BYTES = 300
_POOL = 1024


def _value(index: int, pool: list[bytes]) -> bytes:
    """~300 B of text-like bytes, distinct per key (as JSON state would be)."""
    return pool[index % _POOL] + b"%012d" % index


def _pool(seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    return [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789:,{}\"")
                  for _ in range(VALUE_BYTES - 12)) for _ in range(_POOL)]


def _key(index: int) -> bytes:
    return b"person-%010d" % index


def fill_changelog(bootstrap: str, topic: str, count: int) -> float:
    """Write ``count`` distinct keys to partition 0 of ``topic``; returns the seconds."""
    pool = _pool()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50,
                         "batch.size": 1_000_000, "compression.type": "lz4",
                         "queue.buffering.max.messages": 500_000, "acks": "all"})
    started = time.monotonic()
    for index in range(count):
        while True:
            try:
                producer.produce(topic, _value(index, pool), _key(index), 0)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
    return time.monotonic() - started


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the measured processes ---------------------------------------------------------------


def _store_child(bootstrap: str, changelog: str, input_topic: str, count: int) -> dict[str, Any]:
    from processor.adapters.changelog import ChangelogReader  # noqa: PLC0415
    from processor.adapters.state_directory import StateDirectory  # noqa: PLC0415
    from processor.runtime.state import StoreSpec  # noqa: PLC0415

    spec = StoreSpec("bench", changelog, input_topic)
    with tempfile.TemporaryDirectory(prefix="bench-state-") as root:
        directory = StateDirectory(Path(root), [spec],
                                   ChangelogReader({"bootstrap.servers": bootstrap}))
        cpu, wall = time.process_time(), time.monotonic()
        (restored,) = directory.open([(input_topic, 0)])
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        store = directory.store("bench", 0)
        rng = random.Random(11)
        pool = _pool()
        reads = 100_000
        started = time.monotonic()
        missing = sum(store.get(_key(rng.randrange(count))) is None for _ in range(reads))
        read_seconds = time.monotonic() - started
        for index in range(reads // 2):
            store.put(_key(rng.randrange(count)), _value(index, pool))
        iterated = sum(1 for _ in store.items())
        cache = directory.cache_usage()
        directory.close_all(clean=True)
        reopen = time.monotonic()
        (again,) = directory.open([(input_topic, 0)])
        reopen = time.monotonic() - reopen
        directory.close_all(clean=True)
        disk = sum(f.stat().st_size for f in Path(root).rglob("*") if f.is_file())
    return {"records": restored.records, "restore_seconds": wall, "restore_cpu_seconds": cpu,
            "missing": missing, "iterated": iterated, "gets_per_s": reads / read_seconds,
            "reopen_seconds": reopen, "reopen_records": again.records,
            "cache_mb": cache / 2**20, "disk_mb": disk / 2**20, "peak_rss_mb": _peak_rss_mb()}


def _dict_child(count: int) -> dict[str, Any]:
    pool = _pool()
    state = {_key(index): _value(index, pool) for index in range(count)}
    return {"keys": len(state), "peak_rss_mb": _peak_rss_mb()}


def _child(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "processor.devkit.bench_state", "--child",
                           *args], capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the figures --------------------------------------------------------------------------


def state_figures(bootstrap: str, quick: bool) -> dict[str, Any]:
    """Restore rate and peak RSS by key count, as a dict (the figures are described in
    this module's docstring)."""
    sizes = (20_000, 100_000) if quick else (100_000, 1_000_000)
    load_before = os.getloadavg()[0]
    run = uuid.uuid4().hex[:8]
    by_size: dict[str, Any] = {}
    for count in sizes:
        input_topic, changelog = f"bench-state-{run}-{count}", f"bench-state-{run}-{count}-log"
        create_topics(bootstrap, {input_topic: 1})
        create_topics(bootstrap, {changelog: 1}, config={"cleanup.policy": "compact"})
        fill = fill_changelog(bootstrap, changelog, count)
        figures = _child("store", bootstrap, changelog, input_topic, str(count))
        figures["fill_seconds"] = fill
        by_size[str(count)] = figures
    small, large = (by_size[str(size)] for size in sizes)
    baseline = _child("dict", str(sizes[-1]))
    return {
        "sizes": list(sizes),
        "restore_records_per_s": large["records"] / large["restore_seconds"],
        "restore_cores": large["restore_cpu_seconds"] / large["restore_seconds"],
        "peak_rss_mb": {size: figures["peak_rss_mb"] for size, figures in by_size.items()},
        "rss_ratio_large_to_small": large["peak_rss_mb"] / small["peak_rss_mb"],
        "dict_peak_rss_mb": baseline["peak_rss_mb"],
        "by_size": by_size,
        "cpu_count": os.cpu_count(),
        # Other processes' demand on the same cores (1-minute load), before and after.
        "load_average": [load_before, os.getloadavg()[0]],
        "consistent": all(row["missing"] == 0 and row["iterated"] == row["records"]
                          for row in by_size.values()),
    }


def table(figures: dict[str, Any]) -> str:
    small, large = (str(size) for size in figures["sizes"])
    before, after = figures["load_average"]
    lines = [f"restore: {figures['restore_records_per_s']:,.0f} records/s from a {int(large):,}"
             f"-record changelog, {figures['restore_cores']:.2f} cores of "
             f"{figures['cpu_count']} used (target >= 100,000/s); load average "
             f"{before:.1f} then {after:.1f}"]
    for size, row in figures["by_size"].items():
        lines.append(f"{int(size):>9,} keys: peak RSS {row['peak_rss_mb']:6.1f} MB, restore "
                     f"{row['records'] / row['restore_seconds']:>9,.0f}/s, gets "
                     f"{row['gets_per_s']:>9,.0f}/s, reopen {row['reopen_seconds']:.2f}s "
                     f"({row['reopen_records']} records), disk {row['disk_mb']:.0f} MB")
    lines.append(f"RSS {large} keys / {small} keys: {figures['rss_ratio_large_to_small']:.2f} "
                 f"(flat: ~1; target < 300 MB); a dict of {int(large):,} keys: "
                 f"{figures['dict_peak_rss_mb']:.0f} MB")
    if not figures["consistent"]:
        lines.append("INCONSISTENT: a restored store lacked keys it was given")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_state", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20k and 100k keys")
    parser.add_argument("--bootstrap", help="a broker to use (default: start a local one)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        result = (_store_child(rest[0], rest[1], rest[2], int(rest[3])) if kind == "store"
                  else _dict_child(int(rest[0])))
        print(json.dumps(result))
        return 0
    if args.bootstrap:
        figures = state_figures(args.bootstrap, args.quick)
    else:
        with LocalKafka() as broker:
            figures = state_figures(broker.bootstrap_servers, args.quick)
    print(table(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
