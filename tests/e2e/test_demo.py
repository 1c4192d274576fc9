"""The conversions part of ``make run`` as the demo runs it: ``processor run`` and
``processor conversions`` as processes on the real broker, and what the user reads."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from processor.devkit.clearbit_server import ClearbitServer
from processor.devkit.conversions_demo import LoopTopics, run_loop
from tests.e2e.chaos import Processor, processor_env
from tests.harness import Names


def test_the_demo_loop_shows_one_conversion_with_both_click_ids_and_no_raw_email(
        kafka_bootstrap: str, names: Names, clearbit: ClearbitServer, unique_name: str,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enrichment = Processor(processor_env(kafka_bootstrap, names, clearbit.url))
    topics = LoopTopics(names.input, names.output, events=f"{unique_name}-events",
                        output=f"{unique_name}-conv.outbox", dlq=f"{unique_name}-conv.dlq",
                        prefix=f"{unique_name}-conv")
    sent: list[tuple[str, str]] = []
    enrichment.start()
    try:
        result = run_loop(kafka_bootstrap, topics, tmp_path,
                          send=lambda bootstrap, topic: sent.append((bootstrap, topic)))
    finally:
        enrichment_code = enrichment.terminate()
    out = capsys.readouterr().out
    assert enrichment_code == 0, enrichment.logs()[-2000:]
    assert result.exit_code == 0
    story, conversion = result.story, result.conversion
    assert conversion is not None, out
    clicked_ms = story.clicked_at * 1000
    assert conversion["audience"] == "mql_midmarket_7d"  # needs a clearbit_ trait
    assert conversion["person_key"] == story.user_id
    assert conversion["entry_ts"] == story.mql_at
    assert conversion["clicks"]["google"] == {"type": "gclid", "value": story.gclid,
                                              "observed_at_ms": clicked_ms}
    fbc = f"fb.1.{clicked_ms}.{story.fbclid}"
    assert conversion["clicks"]["fbc"]["value"] == fbc
    assert story.email not in orjson.dumps(conversion).decode()
    # The part-2 hook gets the broker and the topic, once the conversion is there.
    assert sent == [(kafka_bootstrap, topics.output)]
    # What the user reads: the record, both clicks, the hashes, the counts, the exit.
    assert conversion["conversion_id"] in out
    assert f"gclid={story.gclid}" in out
    assert f"fbc={fbc} (built from the fbclid)" in out
    assert "2 d 23 h 58 min before the conversion" in out
    assert f"google email_address={conversion['matching']['google']['email_address']}" in out
    assert "raw email      none" in out
    assert story.email not in out
    assert 'conversions_entries_total{audience="mql_midmarket_7d"} 1.0' in out
    assert "conversions_identity_links_total 1.0" in out
    assert "processor conversions: exit code 0" in out
