"""The delivery pool against scripted in-process clients (real thread, event loop on a
fake clock: holds and backoffs take no real time)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest

from processor.core.backoff import Backoff
from processor.core.conversions.audit import Status
from processor.core.conversions.record import read_record
from processor.core.conversions.sending import Account, Api, Destination
from processor.core.conversions.verdicts import Kind, Verdict
from processor.core.errors import UnexpectedError
from processor.stages.sender.batches import Batch, Item
from processor.stages.sender.pool import DeliveryPolicy, DeliveryPool, Result
from tests.fakes import FakeClock, FakeTimeLoop
from tests.senders import conversion

CLOCK = FakeClock(wall=time.time())
META = Account(Destination.META, Api.META, "1")
ADS = Account(Destination.GOOGLE, Api.ADS, "2")
Script = Callable[[list[str], int], Verdict]  # (ids in the request, call number) -> verdict
OK = Verdict(Kind.ACCEPTED, "200", ref="trace")


class FakeClient:
    def __init__(self, script: Script, destination: Destination = Destination.META,
                 latency: float = 0.0) -> None:
        self.destination = destination
        self.script = script
        self.latency = latency
        self.calls: list[tuple[float, list[str]]] = []
        self.concurrent = self.peak = 0

    async def send(self, account: Account, payloads: list[dict[str, Any]],
                   test: bool) -> Verdict:
        ids = [p["id"] for p in payloads]
        self.calls.append((CLOCK.monotonic(), ids))
        self.concurrent += 1
        self.peak = max(self.peak, self.concurrent)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            return self.script(ids, len(self.calls))
        finally:
            self.concurrent -= 1

    async def aclose(self) -> None:
        pass


class Sensor:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, int]] = []
        self.retries: list[tuple[str, str]] = []

    def request(self, destination: str, status: str, seconds: float, events: int) -> None:
        self.requests.append((destination, status, events))

    def retry(self, destination: str, reason: str) -> None:
        self.retries.append((destination, reason))

    def circuit(self, destination: str, state: int) -> None:
        pass


def items(count: int, account: Account = META, **fields: Any) -> list[Item]:
    audience = "meta_7d" if account.destination is Destination.META else "ads_30d"
    found = []
    for n in range(count):
        record = read_record(conversion(n, audience, **fields))
        found.append(Item(record, account, {"id": record.conversion_id}, ("em",)))
    return found


def run(client: FakeClient, batches: list[list[Item]], timeout: float = 10.0,
        **policy: Any) -> tuple[dict[str, Result], DeliveryPool, Sensor]:
    sensor = Sensor()
    options: dict[str, Any] = {"backoff": Backoff(base=0.5, cap=8.0), **policy}
    pool = DeliveryPool(lambda: [client], DeliveryPolicy(**options), CLOCK,
                        sensor,  # type: ignore[arg-type]
                        loop_factory=lambda: FakeTimeLoop(CLOCK))
    pool.start()
    wanted = sum(len(b) for b in batches)
    found: dict[str, Result] = {}
    try:
        for batch in batches:
            pool.submit(Batch(batch[0].account, list(batch)))
        deadline = time.monotonic() + timeout
        while len(found) < wanted and pool.refusal is None and time.monotonic() < deadline:
            found.update((r.item.conversion.conversion_id, r) for r in pool.take_completed())
            time.sleep(0.005)
    finally:
        pool.stop()
    return found, pool, sensor


def test_a_request_refused_for_one_event_is_split_until_it_is_alone() -> None:
    batch = items(64)
    bad = batch[41].conversion.conversion_id
    client = FakeClient(lambda ids, _: Verdict(Kind.REJECTED, "400", "meta_100_2804001")
                        if bad in ids else OK)
    found, _, _ = run(client, [batch])
    assert found.pop(bad)[1:3] == (Status.REJECTED, "meta_100_2804001")
    assert {r.status for r in found.values()} == {Status.ACCEPTED}
    assert len(client.calls) <= 1 + 2 * 6
    assert len(client.calls[0][1]) == 64


def test_several_bad_events_cost_more_requests_but_only_they_are_rejected() -> None:
    batch = items(40)
    bad = {batch[i].conversion.conversion_id for i in (0, 13, 39)}
    client = FakeClient(lambda ids, _: Verdict(Kind.REJECTED, "400", "meta_100")
                        if bad & set(ids) else OK)
    found, _, _ = run(client, [batch])
    assert {i for i, r in found.items() if r.status is Status.REJECTED} == bad
    assert len(client.calls) <= 1 + 3 * 2 * 6


def test_throttling_holds_the_lane_probes_one_at_a_time_and_rejects_nothing() -> None:
    until = CLOCK.monotonic() + 120  # two minutes of "slow down"
    client = FakeClient(lambda ids, _: Verdict(Kind.THROTTLED, "400", "meta_17")
                        if CLOCK.monotonic() < until else OK, latency=0.05)
    batches = [items(5, salt=str(b)) for b in range(10)]
    found, _, sensor = run(client, batches, retry_deadline=5.0, max_in_flight=4)
    assert {r.status for r in found.values()} == {Status.ACCEPTED}
    assert len(found) == 50
    throttled = [t for t, _ in client.calls if t < until]
    # Waits of 1 s doubling up to 30 s between probes: a handful of requests, not hundreds.
    assert 4 <= len(throttled) <= 14
    gaps = [b - a for a, b in itertools.pairwise(throttled)]
    assert max(gaps) <= 30 + 1
    assert gaps[-1] > gaps[0]
    assert client.calls[-1][0] - until < 31  # back soon after it ended
    assert ("meta", "throttled") in sensor.retries


def test_a_retry_after_is_followed() -> None:
    client = FakeClient(lambda ids, n: Verdict(Kind.THROTTLED, "429", "google_resource_"
                                               "exhausted", retry_after=12.0) if n == 1 else OK,
                        destination=Destination.GOOGLE)
    found, _, _ = run(client, [items(3, ADS)])
    assert {r.status for r in found.values()} == {Status.ACCEPTED}
    (first, _), (second, _) = client.calls
    assert 12.0 <= second - first < 13.0


def test_transient_failures_retry_with_growing_waits_then_give_up_at_the_deadline() -> None:
    client = FakeClient(lambda ids, _: Verdict(Kind.TRANSIENT, "503", "meta_2"))
    found, _, _ = run(client, [items(3)], retry_deadline=30.0, breaker_threshold=1000)
    assert {(r.status, r.reason, r.code) for r in found.values()} == {
        (Status.REJECTED, "retries_exhausted", "meta_2")}
    times = [t for t, _ in client.calls]
    assert times[-1] - times[0] < 30.0
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[-1] > gaps[0]  # backoff: later waits are longer


def test_a_transient_failure_that_passes_is_accepted() -> None:
    client = FakeClient(lambda ids, n: Verdict(Kind.TRANSIENT, "500", "meta_1")
                        if n <= 3 else OK)
    found, _, _ = run(client, [items(4)])
    assert {r.status for r in found.values()} == {Status.ACCEPTED}
    assert len(client.calls) == 4


def test_google_ads_rows_each_get_their_own_effect() -> None:
    batch = items(5, ADS)
    row = {Kind.ACCEPTED: OK, Kind.DUPLICATE: Verdict(Kind.DUPLICATE, "200",
                                                      "google_order_id_already_in_use"),
           Kind.REJECTED: Verdict(Kind.REJECTED, "200", "google_click_not_found"),
           Kind.TOO_RECENT: Verdict(Kind.TOO_RECENT, "200", "google_too_recent_event"),
           Kind.TRANSIENT: Verdict(Kind.TRANSIENT, "200", "google_internal_error")}
    kinds = list(row)

    def script(ids: list[str], n: int) -> Verdict:
        if n == 1:
            return Verdict(Kind.ROWS, "200", rows=tuple(row[k] for k in kinds))
        return Verdict(Kind.ROWS, "200", rows=(OK,) * len(ids))

    client = FakeClient(script, Destination.GOOGLE)
    found, _, _ = run(client, [batch])
    assert [(found[i.conversion.conversion_id].status) for i in batch] == [
        Status.ACCEPTED, Status.DUPLICATE, Status.REJECTED, None, Status.ACCEPTED]
    assert found[batch[3].conversion.conversion_id].reason == "google_too_recent_event"
    # Only the transient row went again, alone.
    assert [ids for _, ids in client.calls][1:] == [[batch[4].conversion.conversion_id]]


def test_a_refusal_stops_the_lane_and_leaves_the_batch_without_results() -> None:
    client = FakeClient(lambda ids, _: Verdict(Kind.REFUSED, "400", "meta_190",
                                               message="Invalid OAuth access token"))
    found, pool, _ = run(client, [items(5), items(5, salt="more")], max_in_flight=1)
    assert found == {}
    assert pool.refusal is not None
    destination, error = pool.refusal
    assert destination is Destination.META
    assert str(error).startswith("meta refused the sender (meta_190: Invalid OAuth")
    assert "meta pixel 1 for audience(s) meta_7d" in str(error)
    assert len(client.calls) == 1  # nothing more went out on that lane


def test_an_event_that_aged_past_metas_limit_while_waiting_is_left_out() -> None:
    old = items(1, entry_ts=int(CLOCK.time()) - 7 * 86_400)
    fresh = items(3, salt="fresh")
    client = FakeClient(lambda ids, _: OK)
    found, _, _ = run(client, [old + fresh])
    assert found[old[0].conversion.conversion_id][1:3] == (Status.SKIPPED, "meta_too_old")
    assert [len(ids) for _, ids in client.calls] == [3]


@pytest.mark.parametrize("in_flight", [1, 4])
def test_requests_in_flight_are_bounded(in_flight: int) -> None:
    client = FakeClient(lambda ids, _: OK, latency=0.5)
    found, _, _ = run(client, [items(2, salt=str(b)) for b in range(12)],
                      max_in_flight=in_flight)
    assert len(found) == 24
    assert client.peak == in_flight


def test_clients_that_cannot_be_built_fail_the_start() -> None:
    def broken() -> list[FakeClient]:
        raise OSError("no such certificate file")

    pool = DeliveryPool(broken, DeliveryPolicy(), CLOCK, Sensor(),  # type: ignore[arg-type]
                        loop_factory=lambda: FakeTimeLoop(CLOCK))
    with pytest.raises(UnexpectedError, match="building the ad platforms' clients"):
        pool.start()
    pool.stop()  # nothing left running
