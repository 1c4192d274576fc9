"""The benchmark's arithmetic: the measuring window and the table (the runs themselves
are ``make bench``, not tests)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from processor.core.enrichment.mapping import to_traits
from processor.devkit.bare_loop import enriched_output
from processor.devkit.bench_conversions import table as conversions_table
from processor.devkit.bench_rig import ProcessWatch, Progress, code_at
from processor.devkit.bench_scenarios import idle_bound, table
from processor.devkit.clearbit_records import combined_body
from processor.devkit.samples import analytics_identify, person_email


def progress_with(points: list[tuple[float, int]]) -> Progress:
    progress = Progress.__new__(Progress)
    progress.points = points
    return progress


def test_the_window_runs_from_10_to_90_percent_of_the_outputs() -> None:
    # 1,000 records: 0 until t=5 (start-up), then 100 a second, then a slow tail.
    points = [(float(t), 0) for t in range(6)]
    points += [(5.0 + s, 100 * s) for s in range(1, 10)]
    points += [(20.0, 950), (30.0, 1000)]
    start, end, records = progress_with(points).window()
    assert (start, end, records) == (6.0, 14.0, 800)


def test_cpu_between_uses_the_samples_at_or_before_each_moment() -> None:
    watch = ProcessWatch(pid=0)
    watch.samples = [(10.0, 1.0), (11.0, 1.5), (12.0, 2.5), (13.0, 2.6)]
    assert watch.cpu_between(11.0, 12.5) == 1.0
    assert watch.cpu_between(9.0, 13.0) == 1.6


def test_the_table_says_which_targets_were_met_and_which_scenario_failed() -> None:
    figures: dict[str, Any] = {"events_per_s": 10, "cpu_us_per_event": 1.0}
    report = {
        "machine": {"date": "2026-11-23 10:00 UTC", "cores": 2, "python": "3.11.7"},
        "quick": False,
        "scenarios": {
            "cached": {"bare_loop": figures, "bare_loop_5kB_outputs": figures,
                       "stage": figures, "ratio": 0.5, "ratio_to_same_size_outputs": 0.7,
                       "target": ">= 0.6", "met": False},
            "rate-limited": {"events": 10, "distinct_emails": 1, "limit_per_min": 600,
                             "http_requests": 1, "http_429": 0, "achieved_per_min": 599.0,
                             "of_limit": 0.998, "target": ">= 0.97 x R, zero 429",
                             "met": True},
            "latency": {"error": "TimeoutError: only 5 of 10 outputs after 60s"},
        },
    }
    lines = table(report).splitlines()
    assert lines[0] == "Benchmark, 2026-11-23 10:00 UTC, 2 cores, Python 3.11.7"
    assert lines[4].startswith("| cached | stage 10/s")
    assert lines[4].endswith("| >= 0.6 | no |")
    assert "**0.998x R**" in lines[5]
    assert lines[5].endswith("| yes |")
    assert lines[6] == "| latency | failed: TimeoutError: only 5 of 10 outputs after 60s | | no |"


def test_idle_bound_runs_are_flagged_and_listed() -> None:
    busy = {"events_per_s": 20000, "cpu_us_per_event": 40.0, "cores": 0.8, "busy": 0.97,
            "idle_bound": False}
    idle = {"events_per_s": 9000, "cpu_us_per_event": 50.0, "cores": 0.45, "busy": 0.5,
            "machine_idle": 0.41, "idle_bound": True}
    report = {
        "machine": {"date": "2026-12-01 10:00 UTC", "cores": 2, "python": "3.11.7"},
        "quick": True, "broker": "local Apache Kafka 3.9.1",
        "scenarios": {
            "cached": {"sizes": {"medium": {"event_bytes": 1474, "stage": idle,
                                            "bare_loop": busy, "ratio": 0.45}},
                       "stage": idle, "bare_loop": busy, "ratio": 0.45,
                       "idle_bound": ["medium stage"], "target": ">= 0.6", "met": False},
        },
    }
    lines = table(report).splitlines()
    assert lines[0].endswith("Python 3.11.7, local Apache Kafka 3.9.1 (quick sizes)")
    assert ("1474 B events: stage 9000/s (50.0 us CPU/event, 0.45 cores, busiest thread "
            "0.5 busy, machine 0.41 idle, ") in lines[4]
    assert "**idle-bound**) vs bare loop 20000/s (40.0 us CPU/event, 0.8 cores, busiest " \
        "thread 0.97 busy)" in lines[4]
    assert lines[-1] == ("Idle-bound (busiest thread busy and cores used below 0.85, with a "
                         "backlog, while at least 0.15 of the machine's CPU was idle): "
                         "cached (medium stage)")


def test_idle_bound_takes_both_the_busiest_thread_and_the_cores() -> None:
    assert idle_bound(busy=0.5, cores=0.45)
    # Waiting for a CPU on a shared machine: busy, though it got little of one.
    assert not idle_bound(busy=0.97, cores=0.45)
    # Two Python threads taking turns on the interpreter's lock: a core used.
    assert not idle_bound(busy=0.7, cores=0.91)
    # Two processes sharing 1.17 cores while the machine had CPU to spare.
    assert idle_bound(busy=0.43, cores=1.17, processes=2, spare=0.3)
    # The same on a machine with no CPU to spare: two stages and the broker on two
    # cores wait on each other, CPU-bound rather than idle.
    assert not idle_bound(busy=0.43, cores=1.17, processes=2, spare=0.05)


def test_a_thread_that_waited_for_a_cpu_counts_as_busy() -> None:
    watch = ProcessWatch(pid=0)
    # 10 s of wall time: the loop (1) 4 s on a CPU and 5.5 s waiting for one; another
    # thread (2) 3 s busy; a thread (3) that started in the window, 1 s.
    watch.threads = [(0.0, {1: 20.0, 2: 1.0}), (5.0, {1: 25.0, 2: 2.0}),
                     (10.0, {1: 29.5, 2: 4.0, 3: 1.0})]
    assert watch.busiest_thread_between(0.0, 10.0) == 9.5
    assert watch.busiest_thread_between(5.0, 10.0) == 4.5


def test_the_machine_idle_share_is_read_over_the_window() -> None:
    watch = ProcessWatch(pid=0)
    # 200 ticks a second on 2 cores, idle 50 of the first second's and 10 of the second's.
    watch.machine_ticks = [(0.0, 1000), (1.0, 1200), (2.0, 1400)]
    watch.idle_ticks = [(0.0, 400), (1.0, 450), (2.0, 460)]
    assert watch.machine_idle_between(0.0, 2.0) == 60 / 400
    assert watch.machine_idle_between(1.0, 2.0) == 10 / 200
    assert ProcessWatch(pid=0).machine_idle_between(0.0, 1.0) == 0.0


def test_the_cached_row_gives_the_peers_ratios() -> None:
    run = {"events_per_s": 20000, "cpu_us_per_event": 40.0, "cores": 1.0, "busy": 0.97,
           "idle_bound": False}
    peers = {"stage": run, "bare_enriched": {**run, "events_per_s": 40000},
             "pool": {**run, "events_per_s": 10000}, "stage_to_bare_enriched": 0.5,
             "stage_to_pool": 2.0}
    report: dict[str, Any] = {
        "machine": {"date": "2026-12-01 10:00 UTC", "cores": 2, "python": "3.11.7"},
        "quick": False,
        "scenarios": {"cached": {"sizes": {"medium": {"event_bytes": 1474, "stage": run,
                                                      "bare_loop": run, "ratio": 1.0}},
                                 "stage": run, "bare_loop": run, "ratio": 1.0, "peers": peers,
                                 "idle_bound": [], "target": ">= 0.6", "met": True}},
    }
    row = table(report).splitlines()[4]
    assert "bare loop writing the stage's outputs 40000/s" in row
    assert "stage **0.5x**" in row
    assert "32-thread pool 10000/s" in row
    assert "stage **2.0x**" in row
    assert "Quix Streams not run" not in row
    report["scenarios"]["cached"]["peers"] = {**peers, "quix": {**run, "events_per_s": 5000},
                                              "stage_to_quix": 4.0}
    assert "Quix Streams 5000/s (40.0 us CPU/event" in table(report).splitlines()[4]
    assert "stage **4.0x**" in table(report).splitlines()[4]
    report["scenarios"]["cached"]["peers"] = {**peers, "quix_missing": ".venv-quix is missing"}
    assert "Quix Streams not run: .venv-quix is missing" in table(report).splitlines()[4]
    report["scenarios"]["cached"]["peers"] = {
        **peers, "before": {**run, "cpu_us_per_event": 80.0}, "cpu_to_before": 0.5,
        "bare_enriched_cpu_to_before": 0.4}
    assert ("CPU per event against the stage before issue 14 (5f4e6b5, 20000/s (80.0 us "
            "CPU/event, 1.0 cores, busiest thread 0.97 busy)): stage **0.5x** (target <= "
            "0.5x), the bare loop writing the stage's outputs 0.4x"
            ) in table(report).splitlines()[4]
    report["scenarios"]["cached"]["peers"] = {**peers, "before_missing": "git archive failed"}
    assert "the stage before issue 14 not run: git archive failed" in table(report).splitlines()[4]


def test_another_version_of_the_code_is_taken_from_the_history(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "processor").mkdir(parents=True)
    (repo / "processor" / "__main__.py").write_text("print('then')\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "then"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()
    (repo / "processor" / "__main__.py").write_text("print('now')\n")
    source = code_at(commit, tmp_path / "work", repo)
    assert (source / "processor" / "__main__.py").read_text() == "print('then')\n"
    assert code_at(commit, tmp_path / "work", repo) == source
    # A commit the checkout lacks (a shallow clone): the reason, for the table.
    with pytest.raises(RuntimeError, match=r"git archive 0000000 failed: .*0000000"):
        code_at("0000000", tmp_path / "work", repo)


def test_the_enriched_bare_loop_writes_the_traits_the_stage_writes() -> None:
    email = person_email(7)
    event = analytics_identify(1, email, user_id="user-7", message_id="m-1", size="medium")
    out = orjson.loads(enriched_output(event, {}))
    body = orjson.loads(combined_body(email))
    assert out["traits"] == {"email": email, **to_traits(body["person"], body["company"])}
    assert (out["type"], out["userId"], out["messageId"]) == ("identify", "user-7", "m-1")
    assert len(orjson.dumps(out)) > 3 * len(orjson.dumps(event))


def test_the_page_path_is_compared_with_a_bare_loop_through_a_second_topic() -> None:
    run = {"events_per_s": 10000, "cpu_us_per_event": 90.0, "cores": 1.0,
           "main_thread_running": 0.9, "main_thread_starved": 0.1, "peak_rss_mb": 200.0,
           "peak_rss_mb_halves": [199.0, 200.0]}
    figures = {
        "sizes": [100, 1000], "ratio_size": 1000, "page_path": run,
        "bare_loop": {"events_per_s": 50000.0, "cpu_us_per_event": 15.0, "cores": 1.1},
        "bare_loop_runs": [{"events_per_s": 50000}],
        "bare_two_hops": {"events_per_s": 25000, "cpu_us_per_event": 30.0},
        "ratio_to_two_hops": 0.4, "by_size": {"100": run, "1000": run}, "ratio": 0.2,
        "cpu_ratio": 6.0, "ratio_met": False, "rss_ratio_large_to_small": 1.0,
        "rss_met": True, "restore_met": True, "cpu_count": 2, "env": {},
        "restore": {"records": 1000, "seconds": 0.01, "records_per_s": 100000, "cores": 1.5,
                    "peak_rss_mb": 150.0},
        "load_average": [1.0, 1.2],
    }
    lines = conversions_table(figures).splitlines()
    assert lines[1].startswith("  ratio to the bare loop: 0.2x by rate")
    assert lines[2] == ("  the bare loop through a second topic (the page path's records in and "
                        "out): 25,000/s, 30.0 us; the stage 0.4x its rate")
