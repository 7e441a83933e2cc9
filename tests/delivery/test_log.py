"""Log destinations: messages land in the Python log and a JSON-lines file under OVERTURE_HOME."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

from overture.db.context import AppContext
from overture.delivery import Message, send_batch
from overture.delivery.adapters.base import Target
from overture.delivery.adapters.log import log_path
from overture.delivery.service import get_destination
from tests.conftest import WorkspaceFixture
from tests.delivery.conftest import create_destination


def test_send__log__jsonl_file_and_log_records(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture, caplog: pytest.LogCaptureFixture
) -> None:
    d = create_destination(client, workspace, "log", {"level": "warning"})
    with ctx.transaction(write=False) as session:
        row = get_destination(session, d["id"])
    messages = [Message("a", {"n": 1}), Message("b", {"n": 2}, possible_duplicate=True, attempt=2)]
    with caplog.at_level(logging.WARNING, logger="overture.delivery.log"):
        outcomes = send_batch(ctx, row, messages)
    assert [o.status for o in outcomes] == ["sent", "sent"]
    lines = [json.loads(x) for x in log_path(ctx, Target.of(row)).read_text().splitlines()]
    assert [(x["idempotency_key"], x["payload"], x["possible_duplicate"], x["attempt"]) for x in lines] == [
        ("a", {"n": 1}, False, 1),
        ("b", {"n": 2}, True, 2),
    ]
    assert sum("destination" in r.getMessage() for r in caplog.records) == 2


def test_send__log_without_file__only_logged(
    ctx: AppContext, client: TestClient, workspace: WorkspaceFixture
) -> None:
    d = create_destination(client, workspace, "log", {"file": False})
    with ctx.transaction(write=False) as session:
        row = get_destination(session, d["id"])
    assert send_batch(ctx, row, [Message("a", {})])[0].status == "sent"
    assert not log_path(ctx, Target.of(row)).exists()
