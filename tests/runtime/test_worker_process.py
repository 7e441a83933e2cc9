"""The runtime as processes run it: `overture worker --once`, `overture worker` stopping on SIGTERM,
and the embedded runtime that `overture serve` starts and stops with the app."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from overture.api.app import create_app
from overture.auth import service as auth_service
from overture.config import Settings
from overture.db import migrate
from overture.db.context import AppContext
from overture.delivery.models import Destination
from overture.runtime.jobs import JobContext, enqueue_job, job_handler
from overture.runtime.models import Job, JobStatus, OutboxMessage, OutboxStatus
from overture.runtime.outbox import OutboxItem, enqueue

OVERTURE = str(Path(sys.executable).parent / "overture")
RAN: list[str] = []


@job_handler("test.process.embedded")
def _embedded(ctx: AppContext, job: JobContext) -> None:
    RAN.append(job.id)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVERTURE_")}
    env["OVERTURE_HOME"] = str(home)
    return env


def _home_context(home: Path, run_workers: bool = False) -> AppContext:
    ctx = AppContext.from_settings(Settings(home=home, run_workers=run_workers, worker_concurrency=1))
    migrate.upgrade(ctx.settings.resolved_database_url, ctx.engine)
    return ctx


def test_worker_once__dispatches_due_messages__prints_counts(tmp_path: Path) -> None:
    # Given 25 messages owed to a log destination in a fresh home,
    ctx = _home_context(tmp_path)
    with ctx.transaction() as session:
        ws, _, _ = auth_service.bootstrap_workspace(session, "cli")
        dest = Destination(workspace_id=ws.id, name="log", type="log", config={})
        session.add(dest)
        session.flush()
        enqueue(session, [OutboxItem(ws.id, dest.id, f"k{i}", {"i": i}, "test") for i in range(25)])
    # When `overture worker --once --json` runs,
    out = subprocess.run(
        [OVERTURE, "worker", "--once", "--json"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then it sent them all and said so in one JSON object.
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "slots_fired": 0,
        "jobs_run": 0,
        "messages_processed": 25,
        "rows_pruned": 0,
    }
    with ctx.transaction(write=False) as session:
        statuses = session.execute(sa.select(OutboxMessage.status).distinct()).scalars().all()
    assert statuses == [OutboxStatus.SENT]
    ctx.close()


def test_worker__sigterm__stops_gracefully_exit_0(tmp_path: Path) -> None:
    _home_context(tmp_path).close()
    proc = subprocess.Popen(
        [OVERTURE, "worker", "--concurrency", "2"], env=_env(tmp_path), stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "worker running" in line, line
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert "SIGTERM" in proc.stderr.read()


def test_embedded_runtime__starts_with_app__runs_jobs__stops_on_shutdown(tmp_path: Path) -> None:
    ctx = _home_context(tmp_path, run_workers=True)
    before = {t.name for t in threading.enumerate()}
    with TestClient(create_app(ctx, run_migrations=False)) as client:
        assert client.get("/healthz").status_code == 200
        with ctx.transaction() as session:
            job_id = enqueue_job(session, "test.process.embedded", {})
        deadline = time.monotonic() + 20
        while job_id not in RAN and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job_id in RAN
        running = {t.name for t in threading.enumerate()} - before
        assert any("scheduler" in n for n in running) and any("outbox" in n for n in running)
    # After shutdown no runtime thread is left and the job is recorded as done.
    time.sleep(0.2)
    left = {t.name for t in threading.enumerate()} - before
    assert not any(n.startswith("overture-") and ("job" in n or "scheduler" in n) for n in left), left
    with ctx.transaction(write=False) as session:
        assert session.get_one(Job, job_id).status == JobStatus.SUCCEEDED
    ctx.close()
