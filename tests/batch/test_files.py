"""Run files: CSV and JSON, columns and personalization, byte-for-byte determinism, S3 upload success
and failure (a local moto server), and a worker killed mid-run."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from overture.batch import output
from overture.clock import FrozenClock
from overture.delivery.adapters.file import files_root
from overture.runtime import jobs
from tests.batch.conftest import Api, World
from tests.delivery.conftest import S3Server


def _flow(api: Api, world: World) -> str:
    a = api.offer(
        "Gold",
        category="cards",
        priority=3,
        channels=[world.channel_id],
        creatives=[
            {"name": "gold-mail", "channelId": world.channel_id, "content": "Hello"},
            {"name": "generic"},
        ],
        eligibility={"field": "plan", "operator": "in", "value": ["pro", "enterprise"]},
        propensity={"type": "logistic", "intercept": -3, "weights": {"ltv": 0.05, "vip": 0.5}},
    )
    b = api.offer(
        "Saver", category="savings", priority=1, propensity={"type": "column", "column": "churn_score"}
    )
    return api.flow(world.model_id, offerIds=[a, b], maxOffersPerCustomer=2)


def test_csv__default_columns_and_download(api: Api, world: World) -> None:
    c = api.campaign(_flow(api, world), world.segment_id)
    run = api.run(c["id"])
    assert run["status"] == "completed", run
    body = api.file(c["id"], run["id"])
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert list(rows[0]) == ["customer_id", "offer_name", "channel", "score", "creative"]
    gold = [r for r in rows if r["offer_name"] == "Gold"]
    assert gold and all(r["creative"] == "gold-mail" and r["channel"] == "file" for r in gold)
    assert all(0 <= float(r["score"]) <= 1 for r in rows)
    f = run["file"]
    assert f["format"] == "csv" and f["rows"] == len(rows) and f["bytes"] == len(body)
    assert f["sha256"] == hashlib.sha256(body).hexdigest()
    assert f["downloadUrl"].endswith(f"/batch-campaigns/{c['id']}/runs/{run['id']}/file")
    # customers in key order, ranks 1..n within each
    keys = [(r["customer_id"]) for r in rows]
    assert keys == sorted(keys)


def test_json__every_column_and_personalization(api: Api, world: World) -> None:
    c = api.campaign(
        _flow(api, world),
        world.segment_id,
        fileOutput={
            "format": "json",
            "columns": [
                "customer_id",
                "offer_id",
                "offer_name",
                "channel",
                "creative",
                "score",
                "rank",
                "category",
                "priority",
                "personalization",
            ],
            "includePersonalization": True,
        },
    )
    run = api.run(c["id"])
    assert run["status"] == "completed", run
    records = json.loads(api.file(c["id"], run["id"]))
    assert len(records) == run["file"]["rows"]
    gold = next(r for r in records if r["offer_name"] == "Gold")
    assert set(gold) == {
        "customer_id",
        "offer_id",
        "offer_name",
        "channel",
        "creative",
        "score",
        "rank",
        "category",
        "priority",
        "personalization",
    }
    assert gold["category"] == "cards" and gold["priority"] == 3 and gold["rank"] in (1, 2)
    assert set(gold["personalization"]) == {"plan", "ltv", "vip"}
    saver = next(r for r in records if r["offer_name"] == "Saver")
    assert set(saver["personalization"]) == {"churn_score"}
    assert saver["channel"] == "file" and saver["creative"] is None


def test_same_data_same_bytes(api: Api, world: World) -> None:
    flow = _flow(api, world)
    c = api.campaign(flow, world.segment_id, volumeConstraints={"maxPerOffer": 6})
    first = api.run(c["id"])
    second = api.run(c["id"])
    assert first["file"]["sha256"] == second["file"]["sha256"]
    assert api.file(c["id"], first["id"]) == api.file(c["id"], second["id"])


def _s3_channel(api: Api, s3: S3Server) -> str:
    dest = api.post(
        "/destinations",
        {
            "name": f"s3-{id(s3)}-{api.ws.id[:6]}",
            "type": "file",
            "config": {"url": f"s3://{s3.bucket}/unused", "storage_options": s3.storage_options()},
        },
    )
    return api.channel("s3 files", destination_id=dest["id"])


def test_s3__uploaded_under_the_rendered_path(
    api: Api, world: World, s3_server: S3Server, frozen_clock: FrozenClock
) -> None:
    # 23:30 UTC on Jan 31 is already Feb 1 in Tokyo: {run_date} is the date in the schedule's zone
    frozen_clock.set(datetime(2026, 1, 31, 23, 30, tzinfo=UTC))
    channel = _s3_channel(api, s3_server)
    c = api.campaign(
        _flow(api, world),
        world.segment_id,
        channelIds=[channel, world.channel_id],
        schedule={"type": "daily", "scheduleTime": "09:00", "scheduleTimezone": "Asia/Tokyo"},
        fileOutput={
            "destination": "s3",
            "s3Path": f"s3://{s3_server.bucket}/campaigns/{{campaign_id}}/{{run_date}}/",
        },
    )
    run = api.run(c["id"])
    assert run["status"] == "completed", run
    key = f"campaigns/{c['id']}/2026-02-01/{run['id']}.csv"
    assert run["file"]["path"] == f"s3://{s3_server.bucket}/{key}"
    assert s3_server.read(key) == api.file(c["id"], run["id"])


def test_s3__failure_is_completed_with_errors_and_the_file_stays(
    api: Api, world: World, s3_server: S3Server
) -> None:
    channel = _s3_channel(api, s3_server)
    c = api.campaign(
        _flow(api, world),
        world.segment_id,
        channelIds=[channel],
        fileOutput={"destination": "s3", "s3Path": "s3://no-such-bucket-here/{run_date}/"},
    )
    run = api.run(c["id"])
    assert run["status"] == "completed_with_errors", run
    assert "S3 upload failed" in run["error"]
    assert run["results"]["recommended"] > 0
    body = api.file(c["id"], run["id"])
    assert hashlib.sha256(body).hexdigest() == run["file"]["sha256"]


def test_s3__needs_a_channel_with_an_s3_destination(api: Api, world: World) -> None:
    r = api.post(
        "/batch-campaigns",
        {
            "name": "c",
            "decisionFlowId": _flow(api, world),
            "segmentId": world.segment_id,
            "fileOutput": {"destination": "s3", "s3Path": "s3://bucket/x/"},
        },
        expect=None,
    )
    assert r.status_code == 422 and r.json()["field"] == "fileOutput.destination"


class Killed(BaseException):
    """Stands for the process dying: nothing in the worker catches it."""


def _kill_while_writing(monkeypatch: pytest.MonkeyPatch, times: list[int]) -> None:
    real = output.write_output

    def dying(source: Any, plan: Any, path: Path) -> None:
        if times[0] > 0:
            times[0] -= 1
            path.write_bytes(b"customer_id,offer_name\nc00000,Gol")  # half a file
            raise Killed()
        real(source, plan, path)

    monkeypatch.setattr(output, "write_output", dying)


def test_killed_mid_run__no_half_file_then_resumed(
    api: Api, world: World, frozen_clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = api.campaign(_flow(api, world), world.segment_id)
    expected = api.run(reference["id"])["file"]["sha256"]
    c = api.campaign(_flow(api, world), world.segment_id)
    _kill_while_writing(monkeypatch, [1])
    run = api.post(f"/batch-campaigns/{c['id']}/runs")
    with pytest.raises(Killed):
        jobs.drain(api.ctx)
    during = api.get(f"/batch-campaigns/{c['id']}/runs/{run['id']}")
    assert during["status"] == "running" and during["file"] is None and during["results"] is None
    api.get(f"/batch-campaigns/{c['id']}/runs/{run['id']}/file", expect=404)
    final_dir = files_root(api.ctx) / "batch" / api.ws.id / c["id"]
    assert not (final_dir / f"{run['id']}.csv").exists()
    frozen_clock.advance(timedelta(minutes=2))  # the dead worker's lease runs out
    jobs.drain(api.ctx)
    done = api.get(f"/batch-campaigns/{c['id']}/runs/{run['id']}")
    assert done["status"] == "completed", done
    assert done["file"]["sha256"] == expected  # the same file a run without a crash writes


def test_killed_on_every_attempt__failed_with_a_clear_error(
    api: Api, world: World, frozen_clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = api.campaign(_flow(api, world), world.segment_id)
    _kill_while_writing(monkeypatch, [99])
    run = api.post(f"/batch-campaigns/{c['id']}/runs")
    for _ in range(3):
        with pytest.raises(Killed):
            jobs.drain(api.ctx)
        frozen_clock.advance(timedelta(minutes=2))
    jobs.drain(api.ctx)  # the last attempt's lease ran out: the job is dead
    failed = api.get(f"/batch-campaigns/{c['id']}/runs/{run['id']}")
    assert failed["status"] == "failed" and "lost" in failed["error"]
    assert failed["file"] is None
    api.get(f"/batch-campaigns/{c['id']}/runs/{run['id']}/file", expect=404)


def test_a_broken_model_fails_the_run_with_the_reason(api: Api, world: World) -> None:
    from overture.data.source import get_source

    c = api.campaign(_flow(api, world), world.segment_id)
    with get_source(api.ctx).begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {world.table} DROP COLUMN churn_score")
    run = api.run(c["id"])
    assert run["status"] == "failed" and "churn_score" in run["error"], run
    api.get(f"/batch-campaigns/{c['id']}/runs/{run['id']}/customers", expect=409)


def test_s3__refused_by_the_egress_guard_at_upload(
    api: Api, world: World, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from overture.delivery.egress import EgressGuard

    channel = _s3_channel(api, s3_server)  # saved while loopback was allowed
    c = api.campaign(
        _flow(api, world),
        world.segment_id,
        channelIds=[channel],
        fileOutput={"destination": "s3", "s3Path": f"s3://{s3_server.bucket}/guarded/"},
    )
    monkeypatch.setitem(api.ctx.services, "delivery.egress", EgressGuard([]))  # a production guard
    run = api.run(c["id"])
    assert run["status"] == "completed_with_errors", run
    assert "S3 upload failed" in run["error"] and "endpoint_url" in run["error"]
    assert not [k for k in s3_server.object_keys() if k.startswith("guarded/")]
    api.file(c["id"], run["id"])
