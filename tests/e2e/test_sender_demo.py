"""The sending part of ``make run`` (``sender_demo.send_conversions``) on the session's
broker: what it prints is what the platforms got."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from processor.devkit.conversion_samples import AUDIENCES, sample_conversion
from processor.devkit.sender_demo import send_conversions
from tests.harness import produce


def test_the_demo_sends_every_conversion_and_shows_what_arrived(
        kafka_bootstrap: str, kafka_topics: Callable[..., str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    topic = kafka_topics("outbox", 3)
    records = [sample_conversion(0, "both_7d", salt=topic), sample_conversion(1, "meta_7d",
                                                                              salt=topic)]
    produce(kafka_bootstrap, topic, [(r["conversion_id"].encode(), orjson.dumps(r))
                                     for r in records])
    audiences = tmp_path / "audiences.yaml"
    audiences.write_text(AUDIENCES)
    send_conversions(kafka_bootstrap, topic, audiences, timeout=60)
    out = capsys.readouterr().out
    assert "Results on conversions.sent (3)" in out
    assert out.count("accepted") >= 3
    for record in records:
        assert f"event_id={record['conversion_id']}" in out
    assert f"transactionId={records[0]['conversion_id']}" in out
    assert "processor conversions send: exit code 0" in out
