"""No credential of the sender ever leaves it but in the headers and form it is meant
for: not in its logs (at DEBUG), its metrics, any URL it requests, the audit topic or
the dead letters, whatever happens (acceptances, rejections, a renewed Google token, a
5xx, a refusal that stops it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

from processor.devkit.google_server import DEFAULT_CLIENT_ID, GoogleServer
from processor.devkit.meta_server import MetaServer
from tests.e2e.chaos import Processor
from tests.harness import produce, read_all, wait_for
from tests.promtools import free_port
from tests.senders import conversion, make_names, outbox_items, results, sender_env

SECRETS = {"META_ACCESS_TOKEN": "EAAGmetaSecret7f3a9",
           "GOOGLE_OAUTH_CLIENT_SECRET": "gcsSecret51b2",
           "GOOGLE_OAUTH_REFRESH_TOKEN": "refreshSecret9c4d",
           "GOOGLE_ADS_DEVELOPER_TOKEN": "devtokSecret22e8"}


def test_no_secret_in_logs_metrics_urls_audit_or_dead_letters(
        kafka_bootstrap: str, kafka_topics: Callable[..., str], unique_name: str,
        tmp_path: Path) -> None:
    names = make_names(kafka_topics, unique_name, tmp_path)
    port = free_port()
    with (MetaServer(token=SECRETS["META_ACCESS_TOKEN"]) as meta,
          GoogleServer(client_secret=SECRETS["GOOGLE_OAUTH_CLIENT_SECRET"],
                       refresh_token=SECRETS["GOOGLE_OAUTH_REFRESH_TOKEN"],
                       developer_token=SECRETS["GOOGLE_ADS_DEVELOPER_TOKEN"]) as google):
        env = sender_env(kafka_bootstrap, names, meta, google, **SECRETS,
                         GOOGLE_OAUTH_CLIENT_ID=DEFAULT_CLIENT_ID,
                         PROCESSOR_LOG_LEVEL="DEBUG", PROCESSOR_METRICS_PORT=str(port),
                         PROCESSOR_METRICS_HOST="127.0.0.1", PROCESSOR_CONV_FATAL_LINGER="5s",
                         PROCESSOR_CONV_LINGER="300ms")
        process = Processor(env, command=("conversions", "send"))
        first = [conversion(i) for i in range(20)] + [conversion(i, "ads_30d", salt="ads")
                                                       for i in range(5)]
        meta.fail(400, code=100, error_subcode=2804001, event_ids=[first[3]["conversion_id"]])
        google.fail(reason="INVALID_USER_IDENTIFIER", event_ids=[first[22]["conversion_id"]])
        produce(kafka_bootstrap, names.outbox, outbox_items(first))
        process.start()
        try:
            results(kafka_bootstrap, names, until=lambda r: len(r.audit) >= 45, timeout=60)
            # A revoked Google token (renewed) and a Meta 5xx (retried).
            google.configure(revoke_tokens=True)
            meta.fail(500, api="events", times=1)
            second = [conversion(i, salt="second") for i in range(10)]
            produce(kafka_bootstrap, names.outbox, outbox_items(second))
            results(kafka_bootstrap, names, until=lambda r: len(r.audit) >= 65, timeout=60)
            scrapes = [httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text]
            # Then Meta refuses the token: the sender stops, after its linger.
            meta.configure(token="a-new-token")  # noqa: S106 - the fake's, no secret
            produce(kafka_bootstrap, names.outbox, outbox_items(
                [conversion(i, "meta_7d", salt="third") for i in range(5)]))

            def stopped() -> bool:
                scrapes.append(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
                return 'conversions_destination_stopped{destination="meta"} 1.0' in scrapes[-1]

            wait_for(stopped, 30, "the stop to show in /metrics")
            assert process.process is not None
            assert process.process.wait(30) == 3
        finally:
            process.stop_quietly()
        logs = process.logs()
        assert "meta refused the sender (meta_190" in logs
        assert "audience(s) meta_7d" in logs
        assert any(r.get("bearer") == "expired" or r.get("bearer") == "invalid"
                   for r in google.requests(api="datamanager"))  # the renewal really happened
        # (A scripted 5xx answers before the token is looked at: no "auth" then.)
        assert {r.get("auth", "header") for r in meta.requests(api="events")} == {"header"}
        assert not any(r.get("findings") for r in meta.requests())
        server_logs = orjson.dumps([*meta.requests(), *google.requests()]).decode()
    topics = read_all(kafka_bootstrap, [names.sent, names.dlq])
    assert {m.topic() for m in topics} == {names.sent, names.dlq}
    written = "\n".join(
        f"{m.key()!r} {m.value()!r} {m.headers()!r}" for m in topics)
    places = {"logs": logs, "metrics": "\n".join(scrapes), "request URLs": server_logs,
              "audit and dead letters": written}
    for variable, secret in SECRETS.items():
        for place, text in places.items():
            assert secret not in text, f"{variable} found in the {place}"
