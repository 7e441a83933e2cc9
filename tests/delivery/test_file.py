"""File destinations: local (temporary name + atomic rename) and S3 (moto server on loopback); no
reader ever sees a partial file under its final name."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient

from overture.db.context import AppContext
from overture.delivery import Destination, Message, send_batch, write_file
from overture.delivery.adapters.file import files_root
from overture.delivery.egress import EgressGuard
from overture.delivery.service import get_destination
from overture.errors import Invalid
from tests.conftest import WorkspaceFixture
from tests.delivery.conftest import S3Server, create_destination, dest_url


def _file_dest(ctx: AppContext, client: TestClient, ws: WorkspaceFixture, **config: Any) -> Destination:
    d = create_destination(client, ws, "file", config)
    with ctx.transaction(write=False) as session:
        return get_destination(session, d["id"])


def _rows(n: int) -> list[dict[str, Any]]:
    return [
        {"user_id": f"u{i}", "score": i * 1.5, "tags": ["a", "b"], "vip": i % 2 == 0, "note": None}
        for i in range(n)
    ]


# -- local -----------------------------------------------------------------------------------------


def test_write_file__local_csv__complete_file_under_final_name(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture
) -> None:
    dest = _file_dest(ctx, client, workspace, url=f"exports/{workspace.id}", format="csv")
    path = write_file(ctx, dest, _rows(3), "offers.csv")
    assert path == str(files_root(ctx) / "exports" / workspace.id / "offers.csv")
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text())))
    assert rows[0] == {"user_id": "u0", "score": "0.0", "tags": '["a","b"]', "vip": "true", "note": ""}
    assert len(rows) == 3
    assert os.listdir(Path(path).parent) == ["offers.csv"]  # no temporary file left behind


def test_write_file__local__rename_is_the_only_way_the_final_name_appears(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = _file_dest(ctx, client, workspace, url=f"atomic/{workspace.id}", format="jsonl")
    directory = files_root(ctx) / "atomic" / workspace.id
    seen: list[tuple[list[str], int]] = []

    def watching_rows() -> Iterator[dict[str, Any]]:
        for i in range(1000):
            if i == 500:  # half-way through writing: the final name must not exist yet
                seen.append((sorted(os.listdir(directory)), 0))
            yield {"i": i}

    real_replace = os.replace

    def spy_replace(src: Any, dst: Any) -> None:
        # At the rename the temporary file is complete and hidden; the final name is still absent
        assert Path(src).name.startswith(".") and Path(src).parent == Path(dst).parent
        assert not Path(dst).exists()
        seen.append((sorted(os.listdir(directory)), len(Path(src).read_bytes().splitlines())))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy_replace)
    write_file(ctx, dest, watching_rows(), "big.jsonl")

    (during, _), (at_rename, lines) = seen
    assert "big.jsonl" not in during and len(during) == 1 and during[0].startswith(".big.jsonl.")
    assert lines == 1000 and "big.jsonl" not in at_rename
    assert sorted(os.listdir(directory)) == ["big.jsonl"]


def test_write_file__failure_mid_write__no_final_file_and_no_temp(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture
) -> None:
    dest = _file_dest(ctx, client, workspace, url=f"fail/{workspace.id}")

    def broken() -> Iterator[dict[str, Any]]:
        yield {"a": 1}
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError):
        write_file(ctx, dest, broken(), "out.csv")
    assert os.listdir(files_root(ctx) / "fail" / workspace.id) == []


def test_write_file__overwrite_same_name__replaced_whole(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture
) -> None:
    dest = _file_dest(ctx, client, workspace, url=f"again/{workspace.id}", format="jsonl")
    write_file(ctx, dest, _rows(5), "x.jsonl")
    path = write_file(ctx, dest, _rows(2), "x.jsonl")
    assert len(Path(path).read_text().splitlines()) == 2


def test_write_file__duckdb_relation_and_prepared_file(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, tmp_path: Path
) -> None:
    csv_dest = _file_dest(ctx, client, workspace, url=f"duck/{workspace.id}", format="csv")
    json_dest = _file_dest(ctx, client, workspace, url=f"duck/{workspace.id}", format="jsonl")
    rel = duckdb.sql("SELECT range AS id, 'x' || range AS label FROM range(1000)")
    path = write_file(ctx, csv_dest, rel, "rel.csv")
    lines = Path(path).read_text().splitlines()
    assert lines[0] == "id,label" and lines[1] == "0,x0" and len(lines) == 1001
    path = write_file(ctx, json_dest, rel, "rel.jsonl")
    assert json.loads(Path(path).read_text().splitlines()[-1]) == {"id": 999, "label": "x999"}
    prepared = tmp_path / "made-elsewhere.csv"
    prepared.write_text("a,b\n1,2\n")
    path = write_file(ctx, csv_dest, prepared, "copied.csv")
    assert Path(path).read_text() == "a,b\n1,2\n"


@pytest.mark.parametrize("name", ["../escape.csv", "a/b.csv", ".hidden", "", "x" * 300])
def test_write_file__bad_name__invalid(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, name: str
) -> None:
    dest = _file_dest(ctx, client, workspace, url=f"names/{workspace.id}")
    with pytest.raises(Invalid):
        write_file(ctx, dest, _rows(1), name)


def test_send_batch__local__one_part_per_batch_and_resend_overwrites(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture
) -> None:
    dest = _file_dest(ctx, client, workspace, url=f"outbox/{workspace.id}", format="csv")
    batch1 = [Message(f"k{i}", {"user_id": f"u{i}", "offer": "A"}) for i in range(3)]
    batch2 = [Message("k9", {"user_id": "u9", "extra": {"x": 1}})]
    assert {o.status for o in send_batch(ctx, dest, batch1)} == {"sent"}
    assert {o.status for o in send_batch(ctx, dest, batch2)} == {"sent"}
    # When the dispatcher re-sends batch 1 (e.g. after a crash before recording it)
    send_batch(ctx, dest, [Message(m.idempotency_key, m.payload, possible_duplicate=True) for m in batch1])
    directory = files_root(ctx) / "outbox" / workspace.id
    parts = sorted(os.listdir(directory))
    assert len(parts) == 2 and all(p.startswith("part-") and p.endswith(".csv") for p in parts)
    rows = [row for p in parts for row in csv.DictReader(io.StringIO((directory / p).read_text()))]
    assert sorted(r["idempotency_key"] for r in rows) == ["k0", "k1", "k2", "k9"]
    assert next(r for r in rows if r["idempotency_key"] == "k9")["extra"] == '{"x":1}'


def test_test_endpoint__file__writes_a_part(
    client: TestClient, workspace: WorkspaceFixture, ctx: AppContext
) -> None:
    d = create_destination(client, workspace, "file", {"url": f"t/{workspace.id}", "format": "jsonl"})
    r = client.post(dest_url(workspace, f"/{d['id']}/test"), headers=workspace.headers)
    assert r.status_code == 200 and r.json()["status"] == "sent"
    (part,) = os.listdir(files_root(ctx) / "t" / workspace.id)
    line = json.loads((files_root(ctx) / "t" / workspace.id / part).read_text())
    assert line["type"] == "overture.test" and line["idempotency_key"] == r.json()["idempotency_key"]


# -- S3 ------------------------------------------------------------------------------------------


def test_write_file__s3__object_complete_under_final_name_only_after_upload(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, s3_server: S3Server
) -> None:
    prefix = f"exports/{workspace.id}"
    dest = _file_dest(
        ctx,
        client,
        workspace,
        url=f"s3://{s3_server.bucket}/{prefix}",
        format="csv",
        storage_options=s3_server.storage_options(),
    )
    observed: list[list[str]] = []

    def rows() -> Iterator[dict[str, Any]]:
        for i in range(20_000):
            if i == 10_000:  # half-way: nothing of this file may be visible in the bucket
                observed.append([k for k in s3_server.object_keys() if k.startswith(prefix)])
            yield {"user_id": f"u{i}", "offer": "A" if i % 2 else "B"}

    url = write_file(ctx, dest, rows(), "offers.csv")

    assert url == f"s3://{s3_server.bucket}/{prefix}/offers.csv"
    assert observed == [[]]
    assert [k for k in s3_server.object_keys() if k.startswith(prefix)] == [f"{prefix}/offers.csv"]
    body = s3_server.read(f"{prefix}/offers.csv").decode()
    lines = body.splitlines()
    assert lines[0] == "user_id,offer" and lines[-1] == "u19999,A" and len(lines) == 20_001


def test_write_file__s3_failure_mid_write__nothing_visible(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, s3_server: S3Server
) -> None:
    prefix = f"broken/{workspace.id}"
    dest = _file_dest(
        ctx,
        client,
        workspace,
        url=f"s3://{s3_server.bucket}/{prefix}",
        storage_options=s3_server.storage_options(),
    )

    def broken() -> Iterator[dict[str, Any]]:
        yield {"a": 1}
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError):
        write_file(ctx, dest, broken(), "out.csv")
    assert [k for k in s3_server.object_keys() if k.startswith(prefix)] == []
    assert os.listdir(ctx.settings.home / "tmp") == []


def test_send_batch__s3__part_per_batch_resend_overwrites(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, s3_server: S3Server
) -> None:
    prefix = f"outbox/{workspace.id}"
    dest = _file_dest(
        ctx,
        client,
        workspace,
        url=f"s3://{s3_server.bucket}/{prefix}/",
        format="jsonl",
        storage_options=s3_server.storage_options(),
    )
    batch = [Message(f"k{i}", {"user_id": f"u{i}"}) for i in range(10)]
    assert {o.status for o in send_batch(ctx, dest, batch)} == {"sent"}
    assert {o.status for o in send_batch(ctx, dest, batch)} == {"sent"}
    (key,) = [k for k in s3_server.object_keys() if k.startswith(prefix)]
    lines = [json.loads(line) for line in s3_server.read(key).decode().splitlines()]
    assert [line["idempotency_key"] for line in lines] == [m.idempotency_key for m in batch]


def test_send_batch__s3_unreachable__retry(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, s3_server: S3Server
) -> None:
    from tests.delivery.conftest import free_port

    options = {
        **s3_server.storage_options(),
        "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{free_port()}"},
        "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
    }
    dest = _file_dest(ctx, client, workspace, url=f"s3://{s3_server.bucket}/down", storage_options=options)
    outcomes = send_batch(ctx, dest, [Message("a", {"x": 1}), Message("b", {"x": 2})])
    assert [o.status for o in outcomes] == ["retry", "retry"]


def test_send_batch__s3_endpoint_forbidden_at_send__failed(
    ctx: AppContext,
    client: TestClient,
    workspace: WorkspaceFixture,
    s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"guarded/{workspace.id}"
    dest = _file_dest(
        ctx,
        client,
        workspace,
        url=f"s3://{s3_server.bucket}/{prefix}",
        storage_options=s3_server.storage_options(),
    )
    monkeypatch.setitem(ctx.services, "delivery.egress", EgressGuard([]))
    outcomes = send_batch(ctx, dest, [Message("a", {"x": 1})])
    assert outcomes[0].status == "failed" and "egress refused" in (outcomes[0].error or "")
    assert [k for k in s3_server.object_keys() if k.startswith(prefix)] == []


def test_write_file__cells_and_lines_follow_the_one_encoder(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture
) -> None:
    from datetime import UTC, datetime, timedelta, timezone
    from decimal import Decimal

    from overture.core.encode import to_json, to_text

    row = {
        "amount": Decimal("1.50"),
        "raw": b"\x01\xff",
        "naive": datetime(2026, 1, 2, 3, 4, 5),
        "paris": datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1))),
        "nested": {"at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "n": Decimal("2")},
        "none": None,
    }
    csv_dest = _file_dest(ctx, client, workspace, url=f"enc/{workspace.id}", format="csv")
    (cells,) = csv.DictReader(io.StringIO(Path(write_file(ctx, csv_dest, [row], "e.csv")).read_text()))
    assert cells == {k: to_text(v) for k, v in row.items()}
    assert cells["amount"] == "1.5" and cells["raw"] == "01ff" and cells["paris"] == "2026-01-02T03:04:05Z"
    assert cells["naive"] == "2026-01-02T03:04:05Z" and cells["none"] == ""
    jsonl_dest = _file_dest(ctx, client, workspace, url=f"enc/{workspace.id}", format="jsonl")
    line = json.loads(Path(write_file(ctx, jsonl_dest, [row], "e.jsonl")).read_text())
    assert line == to_json(row)
    assert line["nested"] == {"at": "2026-01-02T03:04:05Z", "n": 2}
